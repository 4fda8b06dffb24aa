"""Registry cache warmer: keeps a Docker/OCI registry's Redis blob-descriptor cache warm.

The core (:mod:`worker.cache`, :mod:`worker.store`, :mod:`worker.service`) imports neither
Celery nor a web framework; build it from :class:`worker.settings.Settings` with
:mod:`worker.clients`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
