"""Registry cache warmer: keeps a Docker/OCI registry's Redis blob-descriptor cache warm.

The folders are the layers; imports run one way, from the top down (``make lint`` checks it):

    celery, __main__        the app of ``celery -A worker``; ``python -m worker``
    cli                     the ``warmer`` command, the processes it supervises, ``warmer demo``
    receiver | (tasks/)     the notification endpoint; Celery tasks, a few lines each
    celeryapp               the Celery app's factory, its task names and broker URLs
    core                    the work: the cached blob service, events, re-warm, reconcile, heal
    state | storage | cache the warmer's own Redis; the registry's storage; the registry's cache
    config                  settings, schedules, secrets, Redis and storage URLs, config.yml
    registry                what the registry defines: names, digests, manifests, events,
                            generations
    errors                  one hierarchy

The core and everything below it import neither Celery nor a web framework.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
