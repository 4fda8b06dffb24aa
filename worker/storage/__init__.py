"""The registry's storage, read-only: :class:`Store` is what the core uses, :mod:`paths` spells
every path, and each driver has a module (:mod:`filesystem`, :mod:`s3`)."""

from worker.storage.base import Store

__all__ = ["Store"]
