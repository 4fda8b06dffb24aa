"""The README's configuration table is the one the settings object makes."""

from __future__ import annotations

from pathlib import Path

from worker.config.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_table(), (
        "README configuration table is stale: paste the output of "
        "python -c 'from worker.config.settings import settings_table; print(settings_table())'"
    )


def test_readme_names_the_two_set_up_commands_at_the_top() -> None:
    top = README.read_text()[:1500]
    assert "make run" in top
    assert "make test" in top
