"""The docs say what the code does: the settings table is the one the settings object makes, the
README starts with the two set-up commands, and every relative link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from worker.config.settingstable import settings_table


def _root() -> Path:
    # The repository's root, wherever this file sits in tests/.
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "pyproject.toml").is_file())


ROOT = _root()
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
#: Every Markdown file a reader follows links in.
PAGES = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where a ``[x](y)`` is no link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces
    to hyphens, a repeated one numbered."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_configuration_table_matches_the_settings() -> None:
    text = CONFIGURATION.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_table(), (
        "the settings table in docs/configuration.md is stale: paste the output of python -c "
        "'from worker.config.settingstable import settings_table; print(settings_table())'"
    )


def test_readme_names_the_two_set_up_commands_at_the_top() -> None:
    top = README.read_text()[:1500]
    assert "make run" in top
    assert "make test" in top


def test_every_relative_link_points_at_a_file_that_exists() -> None:
    broken = []
    for page in PAGES:
        for target in _LINK.findall(_prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / unquote(path)).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{where}: no heading makes #{anchor}")
    assert len(PAGES) > 2, "docs/*.md not found"
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_upgrade_order_is_the_one_task_messages_need() -> None:
    # A receiver's manifest push message has a fifth item (pushed_at) that a worker of the
    # previous release does not read (it dead-letters the message): the docs must not promise
    # compatibility across versions, and must say workers go first, and how to replay.
    for page in (ROOT / "docs" / "operations.md", ROOT / "docs" / "cache-keys.md"):
        text = " ".join(page.read_text().split())
        assert "compatible across minor versions" not in text, page.name
        assert "upgrade workers first" in text.lower(), page.name
    upgrading = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert "`warmer deadletter replay`" in upgrading
