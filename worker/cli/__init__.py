"""The ``warmer`` command line and what it runs, at the top of the layers.

:mod:`main` holds the root command and registers every subcommand: one blob (:mod:`blobs`),
whole-store jobs (:mod:`jobs`), figures (:mod:`stats`), dead letters (:mod:`deadletter`), and the
long-running commands (:mod:`run`). Those run the receiver under uvicorn, in one process or
several (:mod:`serve`), receiver, worker and beat together (:mod:`up`), the child processes
they supervise (:mod:`processes`), and ``warmer demo`` (:mod:`demo`); :mod:`sentry` reports
their errors. :mod:`console` is the plumbing: results on stdout, everything else on stderr.
"""

from worker.cli.main import app, main

__all__ = ["app", "main"]
