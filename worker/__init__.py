"""Registry cache warmer: keeps a Docker/OCI registry's Redis blob-descriptor cache warm.

Packages name the layers; imports run one way, from the top down (``make lint`` checks it):

    cli, demo, app          the command line, ``make demo``, the app of ``celery -A worker.app``
    (tasks/)                Celery tasks, a few lines each over a plain function
    receiver | celeryapp    the notification endpoint; the Celery app and its task names
    core                    the cached service, a batch of events, re-warm, reconcile
    state | storage | cache the warmer's own Redis; the registry's storage; its Redis cache
    registry                what the registry defines: names, digests, manifests, events
    settings | processes    configuration; helper processes
    registryfile            the registry's own config.yml, read for the settings
    connections | storageurl | versions  the Redis URLs; the storage URL; registry generations
    errors                  one hierarchy

The core and everything below it import neither Celery nor a web framework.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
