"""The Makefile's entry points: `make run` installs what running needs, not the test tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


def _planned(target: str, tmp_path: Path) -> str:
    # -n: the commands make would run, for a fresh venv (a path where none exists yet).
    venv = f"VENV={tmp_path / 'venv'}"
    command = ["make", "-n", target, venv]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_the_project_without_its_test_extras(tmp_path: Path) -> None:
    planned = _planned("run", tmp_path)
    assert "pip install --quiet -e . -c constraints.txt" in planned
    assert "[test]" not in planned


def test_make_test_installs_the_test_extras(tmp_path: Path) -> None:
    assert "-e '.[test]'" in _planned("test", tmp_path)
