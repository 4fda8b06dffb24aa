"""The registry's notification endpoint, one ASGI app (:mod:`webhook` assembles it):
``POST /events`` admits envelopes (:mod:`admission`), after reading the caller's token and the
body (:mod:`request`); requests arriving together leave as one task (:mod:`batcher`), and pulls
are added up in memory (:mod:`pulls`). The operators' routes (:mod:`ops`) serve health,
readiness and the figures for scrapers (:mod:`metrics`). :mod:`assembly` wires the app to the
Celery app and the warmer's clients; running it (uvicorn) is :mod:`worker.cli.serve`'s."""
