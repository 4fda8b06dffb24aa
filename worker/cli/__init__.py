"""The ``warmer`` command line (:mod:`worker.cli.app`)."""

from worker.cli.app import app, main

__all__ = ["app", "main"]
