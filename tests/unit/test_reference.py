"""Repository names and digests: distribution's grammar, and no path outside the storage root."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidDigestError, InvalidReferenceError, InvalidRepositoryNameError
from worker.registry import reference
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore

SHA256 = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "name",
    [
        "app",
        "team/app",
        "org/team/app",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "x" * 255,
        "0/1",
        # 2.8's grammar: an optional first HOST[:PORT]/ component.
        "localhost:5000/app",
        "localhost/app",
        "registry.example-1.com:443/team/app",
        "10.0.0.1:5000/a/b",
        "[::1]:5000/app",  # distribution 3.x: a bracketed IPv6 host
        "team/manifests",
        "manifests/app",
    ],
)
def test_repository_name_accepts_distribution_grammar(name: str) -> None:
    assert reference.repository_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "App",
        "/app",
        "app/",
        "a//b",
        "..",
        "a/../b",
        "a/./b",
        ".a",
        "a.",
        "a___b",
        "a b",
        "_layers",
        "a/_manifests",
        "x" * 256,
        "a\x00b",
        "a/b\n",
        "localhost:5000",
        "A/app",  # the grammar allows a capital in a host, the registry does not
        "Registry.Example:443/app",
        "localhost:/app",
        "localhost:5000:1/app",
        "-host/app",
        "host-/app",
        "a..b/app",
        "../app",
        "./app",
        "[..]/app",
        "[::1]/App",
        "host:5000/App",
        "host:5000/a/../b",
        "host:5000/_layers",
        "x:1/a/b:2",
        "h/" + "x" * 254,
    ],
)
def test_repository_name_refuses_anything_else(name: str) -> None:
    with pytest.raises(InvalidRepositoryNameError):
        reference.repository_name(name)


@pytest.mark.parametrize("value", [SHA256, "sha512:" + "0" * 128])
def test_digest_accepts_sha256_and_sha512(value: str) -> None:
    assert reference.digest(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha384:" + "a" * 96,
        "md5:abc",
        "sha256:../../etc",
        SHA256 + "\n",
        "sha512:" + "0" * 64,
    ],
)
def test_digest_refuses_anything_else(value: str) -> None:
    with pytest.raises(InvalidDigestError):
        reference.digest(value)


@pytest.mark.parametrize("tail", ["!", "-", "_", ".", "/", ":", ":x", "/A"])
def test_repository_name_refuses_adversarial_names_without_backtracking(tail: str) -> None:
    # With an ambiguous grammar these never return (exponential backtracking): the suite's
    # timeout turns that into a failure.
    for stem in ("a" * 200, "a-" * 100, "a." * 100, "A-" * 100, "a" * 100 + ":1/" + "b-" * 70):
        with pytest.raises(InvalidRepositoryNameError):
            reference.repository_name(stem[: 254 - len(tail)] + "!" + tail)
        with pytest.raises(InvalidRepositoryNameError):
            reference.repository_name(stem + tail)


def test_errors_say_what_was_wrong() -> None:
    with pytest.raises(InvalidRepositoryNameError, match="over 255"):
        reference.repository_name("a" * 300)
    with pytest.raises(InvalidDigestError, match="sha256:<64 lowercase hex>"):
        reference.digest("sha256:xyz")


# Text that leans on path tricks: separators, dots, NUL, and the alphabet of valid names.
_TOKENS = [*"ab09._-/\\:\x00%A[]", "..", "../", "sha256:", "a" * 64, "_layers", "localhost:5000/"]
_tricky = st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    repo=st.one_of(_tricky, st.text(max_size=40)),
    digest=st.one_of(_tricky, st.text()),
    tag=st.one_of(_tricky, st.text(max_size=20)),
)
def test_no_input_builds_a_path_outside_the_root(
    tmp_path: Path, repo: str, digest: str, tag: str
) -> None:
    store = FilesystemStore(tmp_path / "root")
    root = os.fspath(store.root)
    builders: list[Callable[[], str]] = [
        lambda: store.os_path(paths.blob_data(digest)),
        lambda: store.os_path(paths.layer_link(repo, digest)),
        lambda: store.os_path(paths.revision_link(repo, digest)),
        lambda: store.os_path(paths.tag_link(repo, tag)),
    ]
    for build in builders:
        try:
            path = build()
        except InvalidReferenceError:
            continue
        resolved = os.path.normpath(path)
        assert os.path.commonpath([root, resolved]) == root, path
        assert "\x00" not in path
