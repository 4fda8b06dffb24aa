"""Image references as clients write them (``[host[:port]/]repo[:tag][@digest]``), the hosts
of this registry (WARMER_REGISTRY_HOSTS), and the platforms of an index."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.config.settings import parse_settings
from worker.errors import ConfigError, ForeignRegistryError, InvalidReferenceError
from worker.registry.manifest import parse_manifest, platform, platform_matches
from worker.registry.reference import MAX_REFERENCE, image_reference

D = "sha256:" + "d" * 64
HOSTS = frozenset({"registry.example.com:5000", "localhost", "[::1]:5000"})


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "host"),
    [
        ("shop/api:2.4.1", "shop/api", "2.4.1", None, None),
        ("shop/api", "shop/api", None, None, None),
        ("app", "app", None, None, None),
        (f"shop/api@{D}", "shop/api", None, D, None),
        (f"shop/api:2.4.1@{D}", "shop/api", "2.4.1", D, None),
        ("registry.example.com:5000/shop/api:2.4.1", "shop/api", "2.4.1", None, None),
        ("Registry.Example.com:5000/shop/api", "shop/api", None, None, None),
        ("localhost/a/b/c:v_1.0-rc", "a/b/c", "v_1.0-rc", None, None),
        ("[::1]:5000/app:v1", "app", "v1", None, None),
        ("ab_c__d---e/f.g:T", "ab_c__d---e/f.g", "T", None, None),
        ("  shop/api:1  ", "shop/api", "1", None, None),
    ],
)
def test_references_parse_as_distribution_reads_them(
    text: str, repository: str, tag: str | None, digest: str | None, host: str | None
) -> None:
    parsed = image_reference(text, HOSTS)
    assert (parsed.repository, parsed.tag, parsed.digest) == (repository, tag, digest)
    first = text.strip().split("/")[0].lower()
    assert parsed.host == (first if first in HOSTS else None)


def test_a_reference_to_another_registry_is_refused_naming_the_setting() -> None:
    with pytest.raises(ForeignRegistryError, match=r"docker\.io.*WARMER_REGISTRY_HOSTS"):
        image_reference("docker.io/library/nginx:1.27", HOSTS)
    with pytest.raises(ForeignRegistryError, match="none configured"):
        image_reference("registry.example.com:5000/shop/api")
    with pytest.raises(ForeignRegistryError):  # the port is part of the host
        image_reference("registry.example.com/shop/api", HOSTS)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("shop/API:1", "lowercase"),
        ("shop/api:", "invalid tag"),
        ("shop/api:-x", "invalid tag"),
        ("shop/api:" + "t" * 129, "invalid tag"),
        ("shop/api@sha256:abc", "invalid digest"),
        ("shop/api@md5:" + "a" * 32, "invalid digest"),
        ("shop//api", "invalid repository name"),
        ("shop/../api", "invalid repository name"),
        ("/shop/api", "invalid repository name"),
        ("shop/api/", "invalid repository name"),
        ("x" * 256, "invalid repository name"),
        ("s" * (MAX_REFERENCE + 1), f"over {MAX_REFERENCE}"),
        ("bad_host:99/app", "invalid registry host"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(InvalidReferenceError, match=needle):
        image_reference(text, HOSTS)


def test_spellings_of_one_image_share_a_key() -> None:
    spellings = ["shop/api", "shop/api:latest", "localhost/shop/api:latest"]
    assert {image_reference(t, HOSTS).key for t in spellings} == {("shop/api", "latest")}
    by_digest = [f"shop/api@{D}", f"shop/api:1@{D}", f"localhost/shop/api:2@{D}"]
    assert {image_reference(t, HOSTS).key for t in by_digest} == {("shop/api", D)}


@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_with_a_reason(text: str) -> None:
    try:
        parsed = image_reference(text, HOSTS)
    except InvalidReferenceError as exc:
        reason = str(exc)
        assert reason, "a refusal says why"
        return
    assert parsed.repository
    assert "//" not in parsed.repository


def test_registry_hosts_are_read_lower_cased_and_checked() -> None:
    settings = parse_settings(registry_hosts="Registry.Example.com:5000, localhost,,")
    assert settings.known_hosts == {"registry.example.com:5000", "localhost"}
    assert settings.environment()["WARMER_REGISTRY_HOSTS"] == "registry.example.com:5000,localhost"
    assert parse_settings().known_hosts == frozenset()
    with pytest.raises(ConfigError, match=r"WARMER_REGISTRY_HOSTS.*invalid registry host"):
        parse_settings(registry_hosts="registry.example.com:5000,https://x")


def test_an_index_gives_each_childs_platform() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": D, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": D, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": D},
            {"digest": D, "platform": {"os": 1, "architecture": "x"}},
        ],
    }
    parsed = parse_manifest(json.dumps(doc).encode())
    assert parsed.platforms == ("linux/amd64", "linux/arm64/v8", "", "")


@pytest.mark.parametrize(
    ("wanted", "offered", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64/v8", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm64/v8", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "", False),
    ],
)
def test_a_platform_matches_its_variants(wanted: str, offered: str, matches: bool) -> None:
    assert platform_matches(platform(wanted), offered) is matches


@pytest.mark.parametrize("bad", ["linux", "linux/", "Linux/AMD64", "a/b/c/d", "linux/amd64 "])
def test_bad_platforms_are_refused(bad: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid platform"):
        platform(bad)
