"""Harbor's webhooks read into the warmer's events (worker.registry.harbor), on the payloads of
tests/data/harbor-*.json (where each comes from: tests/data/harbor-fixtures.md)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from worker.errors import InvalidEnvelopeError
from worker.registry.events import Kind
from worker.registry.harbor import HarborAction, parse_harbor

DATA = Path(__file__).resolve().parents[1] / "data"
HOSTS = frozenset({"harbor.dev"})
DIGEST = "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"harbor-{name}.json").read_text())
    return doc


def _parse(doc: Any, hosts: frozenset[str] = HOSTS) -> Any:
    return parse_harbor(json.dumps(doc).encode(), hosts)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("push-default", Kind.WARM_MANIFEST),
        ("push-cloudevents", Kind.WARM_MANIFEST),
        ("delete-default", Kind.EVICT),
        ("delete-cloudevents", Kind.EVICT),
        ("pull-default", Kind.ACCESS),
        ("pull-cloudevents", Kind.ACCESS),
    ],
)
def test_artifact_events_of_both_formats(name: str, kind: Kind) -> None:
    notice = _parse(_load(name))
    ((event),) = notice.events
    assert (event.kind, event.repository, event.digest) == (kind, "library/busybox", DIGEST)
    assert event.id.startswith("harbor-")
    assert (notice.skipped, notice.rejected) == ((), ())


def test_a_resend_is_the_same_event_and_another_push_is_not() -> None:
    # CloudEvents ids are fresh each send: the id comes from what the event says.
    doc = _load("push-cloudevents")
    again = copy.deepcopy(doc) | {"id": "another-uuid", "requestid": "another"}
    later = copy.deepcopy(doc) | {"time": "2023-03-06T07:00:00Z"}
    ids = [_parse(d).events[0].id for d in (doc, again, later)]
    assert ids[0] == ids[1] != ids[2]
    deleted = _load("delete-cloudevents") | {"time": doc["time"]}
    assert _parse(deleted).events[0].id != ids[0]


@pytest.mark.parametrize("name", ["scan-default", "quota-cloudevents"])
def test_other_types_are_acknowledged_with_nothing_to_do(name: str) -> None:
    notice = _parse(_load(name))
    assert notice.action is HarborAction.OTHER
    assert (notice.events, notice.skipped, notice.rejected) == ((), (), ())


def test_types_harbor_may_add_later_are_other_types() -> None:
    assert _parse({"type": "CREATE_TAG"}).action is HarborAction.OTHER
    assert _parse({"specversion": "1.0", "type": "harbor.tag.created"}).action is HarborAction.OTHER


def test_a_resource_of_another_registry_is_skipped() -> None:
    notice = _parse(_load("push-default"), frozenset({"registry.example.com"}))
    assert notice.events == ()
    ((skipped),) = notice.skipped
    assert "harbor.dev" in skipped.reason
    assert "WARMER_REGISTRY_HOSTS" in skipped.reason
    assert _parse(_load("push-default"), frozenset()).skipped  # none configured: not this one


def test_a_bare_host_is_checked_too() -> None:
    doc = _load("push-default")
    doc["event_data"]["resources"][0]["resource_url"] = "harbor/library/busybox:latest"
    assert _parse(doc, frozenset({"harbor"})).events
    assert _parse(doc).skipped


def test_one_bad_resource_fails_alone() -> None:
    doc = _load("push-default")
    good = doc["event_data"]["resources"][0]
    doc["event_data"]["resources"] = [
        {"digest": "sha256:nothex", "tag": "x"},
        good,
        "not an object",
        {"digest": DIGEST, "resource_url": "harbor.dev/library/other:1"},
        {"digest": 5},
        {"tag": "latest", "resource_url": "harbor.dev/library/busybox:latest"},
        {"resource_url": f"harbor.dev/library/busybox@{DIGEST}"},  # the URL names the digest
        {"digest": DIGEST, "resource_url": "elsewhere.io/library/busybox:latest"},
    ]
    notice = _parse(doc)
    assert [e.digest for e in notice.events] == [DIGEST, DIGEST]
    assert len(notice.skipped) == 1
    reasons = [r.reason for r in notice.rejected]
    assert len(reasons) == 5
    assert "invalid digest" in reasons[0]
    assert "not a JSON object" in reasons[1]
    assert "names repository library/other" in reasons[2]
    assert "int, not text" in reasons[3]
    assert "names no digest" in reasons[4]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", '"type" is missing'),
        (b'{"type": 5}', '"type" is missing'),
        (b'{"type": "push it"}', "unknown Harbor event type"),
        (b'{"specversion": "1.0", "type": "PUSH_ARTIFACT"}', "unknown Harbor event type"),
        (b'{"type": "PUSH_ARTIFACT"}', 'no "event_data"'),
        (b'{"type": "PUSH_ARTIFACT", "event_data": []}', 'no "event_data"'),
        (b'{"specversion": "1.0", "type": "harbor.artifact.pushed"}', 'no "data"'),
        (b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": {}}}', "non-empty list"),
        (b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": []}}', "non-empty list"),
        (b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": [{}]}}', "repository"),
        (b'{"type": "PUSH_ARTIFACT", "occur_at": "now"}', "occur_at"),
        (b'{"type": "PUSH_ARTIFACT", "occur_at": 1' + b"0" * 400 + b"}", "occur_at"),
        (b'{"type": "PUSH_ARTIFACT", "occur_at": -1}', "occur_at"),
        (b'{"specversion": "1.0", "type": "harbor.artifact.pushed", "time": 5}', '"time"'),
        (b"[" * 100000, "nested too deeply"),
    ],
)
def test_what_is_no_harbor_webhook_says_why(body: bytes, says: str) -> None:
    with pytest.raises(InvalidEnvelopeError, match=says):
        parse_harbor(body, HOSTS)


def test_a_repository_without_its_full_name_rejects_each_resource() -> None:
    doc = _load("push-default")
    del doc["event_data"]["repository"]["repo_full_name"]
    notice = _parse(doc)
    assert notice.events == ()
    assert "repo_full_name" in notice.rejected[0].reason


def test_a_push_carries_harbors_time_of_it_for_push_to_warm() -> None:
    assert _parse(_load("push-default")).events[0].pushed_at == 1678082303.0
    # 2023-03-06T06:08:43Z
    assert _parse(_load("push-cloudevents")).events[0].pushed_at == 1678082923.0
    assert _parse(_load("delete-default")).events[0].pushed_at is None
    doc = _load("push-cloudevents") | {"time": "yesterday"}
    assert _parse(doc).events[0].pushed_at is None  # measures nothing, warms all the same
    message = _parse(_load("push-default")).events[0].as_message()
    assert message[4] == 1678082303.0
