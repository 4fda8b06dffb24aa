"""The warmer's work, over a cache, a store and the state, whichever process runs it (a task, the
command line, the receiver): the cached blob service (:mod:`blobservice`, its answers in
:mod:`results`) and the one write path into the cache, where a delete always wins
(:mod:`writes`); what a batch of events does (:mod:`pipeline`); re-warm (:mod:`rewarm`),
reconcile (:mod:`reconcile`), and re-warming a cache emptied or restarted (:mod:`heal`); the
start-up check that the broker and the state Redis never evict (:mod:`eviction`); the clients
built from the settings (:mod:`clients`). No Celery and no web framework: the tasks and the
receiver above call it."""
