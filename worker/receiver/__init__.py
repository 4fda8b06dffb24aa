"""The registry's notification endpoint: the ASGI app (:mod:`webhook`), request coalescing
(:mod:`batcher`), the figures for scrapers (:mod:`metrics`) and its wiring (:mod:`serve`)."""
