"""``python -m worker``: the ``warmer`` command line."""

from worker.cli import main

main()
