"""REGISTRY_ overrides as the real registries apply them (distribution's configuration/parser.go).

Every case was run against registry v3.1.1 (../shared/registry-v3/registry) and, where it says
so, Debian's docker-registry 2.8.2: the registry served a config.yml with the override in its
environment, a HEAD of a blob made it use its cache and its storage, and what it did was read off
two redis-servers (which one it dialed, and the DB it selected) and two storage roots (only the
second holds the blob: a 200 means the registry read that root). The comments say what it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.config.connections import RedisTarget, parse_redis_url
from worker.config.registryfile import read_registry_config
from worker.config.storageurl import parse_storage_url
from worker.errors import ConfigError

V3 = """version: 0.1
storage:
  cache: {blobdescriptor: redis}
  filesystem: {rootdirectory: /r1}
redis:
  addrs: [a:6379]
  db: 3
"""
V2 = V3.replace("addrs: [a:6379]", "addr: a:6379")


def _values(tmp_path: Path, text: str, env: dict[str, str]) -> dict[str, Any]:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return read_registry_config(path, env)


def _redis(tmp_path: Path, text: str, env: dict[str, str]) -> RedisTarget:
    return parse_redis_url(_values(tmp_path, text, env)["redis_url"])


def _root(tmp_path: Path, text: str, env: dict[str, str]) -> str:
    target = parse_storage_url(_values(tmp_path, text, env)["storage_url"])
    assert target.driver == "filesystem"
    return str(target.root)


# -- an index into a list: REGISTRY_REDIS_ADDRS_0 --------------------------------------------------


def test_an_index_override_of_an_address_sets_nothing(tmp_path: Path) -> None:
    # v3.1.1 dialed a (the file's), never b: parser.go hands a list's element the rest of the
    # path, which is empty, and sets nothing. (The warmer made the host "0".)
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_ADDRS_0": "b:6379"})
    assert (redis.hosts, redis.db) == ((("a", 6379),), 3)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # v3.1.1 dialed localhost:6379 (go-redis's default for an empty address), not b.
        (V3.replace("[a:6379]", "[]"), "REGISTRY_REDIS_ADDRS_0"),
        # v3.1.1 made a Cluster of a and "" (it dialed a and localhost:6379, answered nothing).
        (V3, "REGISTRY_REDIS_ADDRS_1"),
    ],
)
def test_an_index_one_past_the_end_adds_an_empty_address_and_is_refused(
    tmp_path: Path, text: str, name: str
) -> None:
    with pytest.raises(ConfigError, match=r"empty address.*REGISTRY_REDIS_ADDRS=\["):
        _values(tmp_path, text, {name: "b:6379"})


@pytest.mark.parametrize(
    ("name", "said"),
    [
        # v3.1.1 exited 1: "parsing environment variable REGISTRY_REDIS_ADDRS_5: undefined index: 5"
        ("REGISTRY_REDIS_ADDRS_5", "undefined index: 5"),
        # v3.1.1 exited 1: "... REGISTRY_REDIS_ADDRS_X: non-numeric index: X"
        ("REGISTRY_REDIS_ADDRS_X", "non-numeric index: X"),
        # v3.1.1 panicked: "reflect: slice index out of range"
        ("REGISTRY_REDIS_ADDRS_-1", "index out of range"),
        # v3.1.1 exited 2: "failed reading redis client CA: open : no such file or directory"
        ("REGISTRY_REDIS_TLS_ROOTCAS_0", "empty CA file"),
    ],
)
def test_an_index_the_registry_cannot_start_with_is_refused(
    tmp_path: Path, name: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name}.*{said}"):
        _values(tmp_path, V3, {name: "/ca.pem"})


def test_a_signed_index_is_an_index(tmp_path: Path) -> None:
    # v3.1.1 dialed a: "+0" is index 0 to Go's strconv.Atoi, and sets nothing either.
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_ADDRS_+0": "b:6379"})
    assert redis.hosts == (("a", 6379),)


# -- lower-case parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "REGISTRY_redis_ADDRS",  # v3.1.1: "Ignoring unrecognized environment variable ..."
        "REGISTRY_REDIS_addrs",  # same
        "REGISTRY_REDIS_Options_ADDRS",  # same
        "registry_REDIS_ADDRS",  # not the prefix: not even a warning
    ],
)
def test_a_lower_case_part_naming_a_field_is_ignored(tmp_path: Path, name: str) -> None:
    redis = _redis(tmp_path, V3, {name: "[b:6379]"})  # v3.1.1 dialed a
    assert redis.hosts == (("a", 6379),)


def test_a_lower_case_db_is_ignored(tmp_path: Path) -> None:
    # v3.1.1 selected DB 3 with REGISTRY_REDIS_Db=5, and warned that it ignored it.
    assert _redis(tmp_path, V3, {"REGISTRY_REDIS_Db": "5"}).db == 3


def test_a_lower_case_part_naming_a_map_key_replaces_that_key(tmp_path: Path) -> None:
    # A map (storage, a driver's parameters) takes any key: a part that matches no key as it is
    # upper-cased makes a new key, lower-cased, in place of the old one. v3.1.1 and 2.8.2 served
    # the blob from /r2 with each of these.
    text = V3.replace("{rootdirectory: /r1}", "{rootdirectory: /r1, maxthreads: 50}")
    for name in (
        "REGISTRY_STORAGE_filesystem_ROOTDIRECTORY",
        "REGISTRY_STORAGE_FILESYSTEM_rootdirectory",
        "REGISTRY_STORAGE_FILESYSTEM_RootDirectory",
    ):
        assert _root(tmp_path, text, {name: "/r2"}) == "/r2"


# -- capitalised keys in the file ------------------------------------------------------------------


def test_a_capitalised_parameter_in_the_file_is_not_the_one_overridden(tmp_path: Path) -> None:
    # The driver reads "rootdirectory" only: v3.1.1 ignored RootDirectory: /r2 in the file (404),
    # and with the override it served the blob from /r2: the override adds "rootdirectory".
    # (The warmer overwrote RootDirectory and then read the default root.)
    text = V3.replace("rootdirectory: /r1", "RootDirectory: /r1")
    assert _root(tmp_path, text, {}) == "/var/lib/registry"
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/r2"}
    assert _root(tmp_path, text, env) == "/r2"


@pytest.mark.parametrize(
    ("text", "db"),
    [
        (V3.replace("redis:", "Redis:"), 0),  # v3.1.1 dialed b, DB 0: the file's Redis: is unread
        (V3.replace("addrs:", "Addrs:"), 3),  # v3.1.1 dialed b, DB 3
    ],
)
def test_a_capitalised_key_in_the_file_is_unread_and_the_override_sets_the_field(
    tmp_path: Path, text: str, db: int
) -> None:
    # Without the override v3.1.1 panicked ("redis configuration required"): no address at all.
    assert "redis_url" not in _values(tmp_path, text, {})
    redis = _redis(tmp_path, text, {"REGISTRY_REDIS_ADDRS": "[b:6379]"})
    assert (redis.hosts, redis.db) == ((("b", 6379),), db)


def test_a_capitalised_driver_stays_an_unknown_driver(tmp_path: Path) -> None:
    # v3.1.1 panicked: "StorageDriver not registered: Filesystem"
    text = V3.replace("filesystem:", "Filesystem:")
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/r2"}
    with pytest.raises(ConfigError, match="stores in 'Filesystem'"):
        _values(tmp_path, text, env)


# -- unknown keys, and paths past a value ----------------------------------------------------------


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    # v3.1.1 warned about the first two and ignored all three: it dialed a and selected DB 3.
    env = {"REGISTRY_NOSUCH": "1", "REGISTRY_REDIS_NOSUCH": "1", "REGISTRY_REDIS_DB_X": "1"}
    redis = _redis(tmp_path, V3, env)
    assert (redis.hosts, redis.db) == ((("a", 6379),), 3)


def test_a_path_past_a_parameter_value_sets_nothing(tmp_path: Path) -> None:
    # v3.1.1 kept /r1 (404) with REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY_X=/r2.
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY_X": "/r2"}
    assert _root(tmp_path, V3, env) == "/r1"


def test_a_parameter_of_an_empty_driver_is_set(tmp_path: Path) -> None:
    # v3.1.1 served the blob from /r2 for "filesystem:" (no value) in the file.
    text = V3.replace("filesystem: {rootdirectory: /r1}", "filesystem:")
    assert _root(tmp_path, text, {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/r2"}) == "/r2"


def test_a_whole_section_first_then_one_value_of_it(tmp_path: Path) -> None:
    # Sorted by name, REGISTRY_STORAGE comes before REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY:
    # v3.1.1 served the blob from /r2.
    env = {
        "REGISTRY_STORAGE": "{filesystem: {rootdirectory: /r1}, cache: {blobdescriptor: redis}}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/r2",
    }
    assert _root(tmp_path, V3, env) == "/r2"


def test_the_inline_options_answer_to_their_own_name_too(tmp_path: Path) -> None:
    # 3.x's redis: section inlines a struct named Options: v3.1.1 dialed b, DB 3.
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_OPTIONS_ADDRS": "[b:6379]"})
    assert (redis.hosts, redis.db) == ((("b", 6379),), 3)
    # Given whole, it replaces every option: v3.1.1 dialed b and selected no DB (0).
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_OPTIONS": "{addrs: [b:6379]}"})
    assert (redis.hosts, redis.db) == ((("b", 6379),), 0)


# -- values are read as the field's type -----------------------------------------------------------


@pytest.mark.parametrize("password", ["0123", "true", '"0123"'])
def test_a_string_field_takes_the_text(tmp_path: Path, password: str) -> None:
    # v3.1.1 authenticated with "0123" (a Redis with requirepass 0123 answered it; 83 was
    # refused) and with "true"; PyYAML alone reads 0123 as 83 and true as True.
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_PASSWORD": password})
    assert redis.password == password.strip('"')


@pytest.mark.parametrize(("db", "selected"), [("4.0", 4), ("", 0)])
def test_an_integer_field(tmp_path: Path, db: str, selected: int) -> None:
    # v3.1.1 selected DB 4 with REGISTRY_REDIS_DB=4.0, and DB 0 with it empty.
    assert _redis(tmp_path, V3, {"REGISTRY_REDIS_DB": db}).db == selected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # v3.1.1 exited 1 with "parsing environment variable <name>: yaml: unmarshal errors"
        ("REGISTRY_REDIS_DB", "abc"),
        ("REGISTRY_REDIS_ADDRS", "b:6379"),
        ("REGISTRY_REDIS_PASSWORD", "a: b"),
        ("REGISTRY_STORAGE_FILESYSTEM", "rootdirectory"),
        ("REGISTRY_STORAGE_NOSUCH", "1"),
    ],
)
def test_a_value_the_registry_cannot_read_is_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}: the registry does not start"):
        _values(tmp_path, V3, {name: value})


def test_a_driver_section_as_a_whole(tmp_path: Path) -> None:
    env = {"REGISTRY_STORAGE_FILESYSTEM": "{rootdirectory: /r2}"}  # v3.1.1: the blob, from /r2
    assert _root(tmp_path, V3, env) == "/r2"


# -- each generation's own fields ------------------------------------------------------------------


def test_registry_2_reads_addr_and_not_addrs(tmp_path: Path) -> None:
    # 2.8.2 dialed b for REGISTRY_REDIS_ADDR, and ignored REGISTRY_REDIS_ADDRS ("Ignoring
    # unrecognized environment variable"): it dialed a.
    assert _redis(tmp_path, V2, {"REGISTRY_REDIS_ADDR": "b:6379"}).hosts == (("b", 6379),)
    values = _values(tmp_path, V2, {"REGISTRY_REDIS_ADDRS": "[b:6379]"})
    assert parse_redis_url(values["redis_url"]).hosts == (("a", 6379),)
    assert values["registry_version"] == "2"


def test_registry_3_has_no_tls_enabled(tmp_path: Path) -> None:
    # v3.1.1 ignored REGISTRY_REDIS_TLS_ENABLED=true ("Ignoring unrecognized ...") and spoke
    # plain TCP to a.
    redis = _redis(tmp_path, V3, {"REGISTRY_REDIS_TLS_ENABLED": "true"})
    assert not redis.ssl
