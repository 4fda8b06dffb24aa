"""What the command line prints is the text given: no markup read into it, no wrapping."""

from __future__ import annotations

import yaml

from worker.cli.console import err, out
from worker.cli.up import registry_snippet
from worker.config.settings import load_settings


def test_a_registry_snippet_prints_as_it_is_and_stays_valid_yaml() -> None:
    # rediss:// with a CA: `addrs: [host:port]` and `rootcas: [/path]` look like rich's tags;
    # read as markup, the first vanished (the registry crashed on the pasted snippet) and the
    # second crashed `warmer up`.
    settings = load_settings(
        redis_url="rediss://cache.example.com:6380/3", storage_root="/srv/registry"
    )
    snippet = registry_snippet(settings, "127.0.0.1", 8000, show_token=False)
    assert "[cache.example.com:6380]" in snippet
    for console in (out, err):
        with console.capture() as captured:
            console.print(snippet)
        assert captured.get() == snippet + "\n"
    parsed = yaml.safe_load(snippet)
    assert parsed["redis"]["addrs"] == ["cache.example.com:6380"]


def test_a_long_result_line_is_never_wrapped() -> None:
    line = "rewarm: " + ", ".join(f"{n} figure" for n in range(40))
    with out.capture() as captured:
        out.print(line)
    assert captured.get() == line + "\n"
