"""The warmer's own processes for the tests: the demo's helpers, and one CLI run as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from worker.demo.services import warmer_process, webhook_ready

__all__ = ["run_warmer_json", "warmer_process", "webhook_ready"]


def run_warmer_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``warmer ARGS --json`` to the end; its JSON line (the last), or fail with stderr."""
    warmer = str(Path(sys.executable).with_name("warmer"))
    proc = subprocess.run(
        [warmer, *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
