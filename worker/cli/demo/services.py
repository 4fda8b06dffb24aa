"""The warmer's own processes (receiver, worker) as a user starts them: for the demo and the
end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.cli.processes import background

__all__ = ["warmer_process", "webhook_ready"]


def _warmer() -> str:
    return str(Path(sys.executable).with_name("warmer"))


def webhook_ready(url: str) -> bool:
    """True once ``GET url/readyz`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return bool(json.load(resp)["status"] == "ready")
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def warmer_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``warmer ARGS`` in the background; stop it (SIGTERM, then SIGKILL) afterwards."""
    with background([_warmer(), *args], env, log, timeout=15) as proc:
        yield proc
