"""``make demo``: first-pull misses with and without the warmer, and nothing left behind."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _demo_processes() -> list[str]:
    # Every process the demo starts has its temporary folder (warmer-demo-...) on its command
    # line: the registries' configs, redis-server's --dir, the warmer's storage root.
    out = subprocess.run(
        ["pgrep", "-af", "warmer-demo-"], capture_output=True, text=True, check=False
    )
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def test_demo_shows_the_misses_the_warmer_saves_and_cleans_up() -> None:
    before = set(Path(tempfile.gettempdir()).glob("warmer-demo-*"))
    warmer = str(Path(sys.executable).with_name("warmer"))
    proc = subprocess.run(
        [warmer, "demo"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    without = re.search(r"without the warmer\s+(\d+)\s+(\d+)\s+(\d+)", proc.stdout)
    with_ = re.search(r"with the warmer\s+(\d+)\s+(\d+)\s+(\d+)", proc.stdout)
    assert without is not None, proc.stdout
    assert with_ is not None, proc.stdout
    assert int(without[3]) > 0  # misses without the warmer
    assert int(with_[3]) == 0  # none with it
    assert "the warmer:" in proc.stdout
    assert _demo_processes() == []
    assert set(Path(tempfile.gettempdir()).glob("warmer-demo-*")) == before
