"""The ``warmer`` command line (:mod:`worker.cli.main`)."""

from worker.cli.main import app, main

__all__ = ["app", "main"]
