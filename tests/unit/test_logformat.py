"""One log format: a line of text or a JSON object, whoever logs (uvicorn and Celery too)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from worker.cli.main import _level
from worker.config.logformat import configure_logging
from worker.config.settings import load_settings


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_is_one_object_a_line_whoever_logs(
    restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "x"}
    )
    logging.getLogger("celery.apps.worker").warning("celery@host ready.")
    lines = capsys.readouterr().err.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["name"], r["message"]) for r in records] == [
        ("INFO", "uvicorn.error", "Started server process [7]"),
        ("WARNING", "celery.apps.worker", "celery@host ready."),
    ]
    assert all("time" in r and "color_message" not in r for r in records)


def test_text_is_time_level_logger_message(
    restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("WARNING", "text")
    logging.getLogger("worker.core").info("not shown")
    logging.getLogger("worker.core").warning("shown")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(" WARNING worker.core: shown")


@pytest.mark.parametrize(
    ("told", "command", "verbose", "level"),
    [
        (None, "stats", 0, "WARNING"),
        (None, "stats", 1, "INFO"),
        (None, "worker", 0, "INFO"),
        (None, "worker", 1, "DEBUG"),
        (None, "worker", 5, "DEBUG"),
        ("ERROR", "worker", 0, "ERROR"),
        ("ERROR", "fsck", 1, "WARNING"),
    ],
)
def test_the_level_is_the_setting_else_the_commands_then_verbose(
    told: str | None, command: str, verbose: int, level: str
) -> None:
    assert _level(told, command, verbose) == level


def test_levels_and_formats_are_taken_in_any_case() -> None:
    settings = load_settings(log_level="info", log_format="JSON")
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
