"""Notifications: the envelope is refused only when it is not one; events are classified."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.notifications import envelope, event
from worker.errors import InvalidEnvelopeError
from worker.registry.events import Event, Kind, Rejected, classify, parse_envelope
from worker.registry.mediatypes import DOCKER_SCHEMA2, EVENTS_V2, OCI_INDEX

D = "sha256:" + "d" * 64
#: The notifications support module's timestamp, 2026-11-29T07:18:44.169Z, in Unix seconds.
PUSHED_AT = 1795936724.169


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"events": {}}', b'{"other": []}', b"\xff"])
def test_a_body_that_is_not_an_envelope_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidEnvelopeError):
        parse_envelope(body)


def test_an_envelope_gives_its_raw_events() -> None:
    assert len(parse_envelope(envelope(event("push", "a", D), event("pull", "a", D)))) == 2


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (event("push", "team/app", D), Kind.WARM_BLOB),
        (event("mount", "team/app", D, from_repository="other/app"), Kind.WARM_BLOB),
        (event("push", "team/app", D, media_type=DOCKER_SCHEMA2, tag="v1"), Kind.WARM_MANIFEST),
        (event("push", "team/app", D, media_type=OCI_INDEX), Kind.WARM_MANIFEST),
        (event("delete", "team/app", D), Kind.EVICT),
        (event("pull", "team/app", D), Kind.ACCESS),
        (event("delete", "team/app", tag="v1"), Kind.IGNORE),
    ],
)
def test_events_are_classified_by_action_and_target(raw: dict[str, Any], kind: Kind) -> None:
    classified = classify(raw)
    assert isinstance(classified, Event)
    assert classified.kind is kind
    assert classified.repository == "team/app"


def test_a_manifest_with_an_unusual_media_type_is_known_by_its_url() -> None:
    raw = event("push", "app", D, media_type="application/vnd.example+json")
    raw["target"]["url"] = f"http://reg/v2/app/manifests/{D}"
    classified = classify(raw)
    assert isinstance(classified, Event)
    assert classified.kind is Kind.WARM_MANIFEST


@pytest.mark.parametrize(
    "repository",
    ["team/manifests", "manifests/app", "manifests", "a/manifests/b", "localhost:5000/manifests"],
)
def test_a_blob_of_a_repository_named_manifests_is_a_blob(repository: str) -> None:
    classified = classify(event("push", repository, D))
    assert isinstance(classified, Event)
    assert (classified.kind, classified.repository) == (Kind.WARM_BLOB, repository)
    manifest = classify(event("push", repository, D, media_type=DOCKER_SCHEMA2, tag="v1"))
    assert isinstance(manifest, Event)
    assert manifest.kind is Kind.WARM_MANIFEST


def test_the_url_decides_over_the_media_type_and_may_be_escaped_or_prefixed() -> None:
    # A blob with a manifest's media type is still a blob push (its route was /blobs/).
    raw = event("push", "localhost:5000/app", D, media_type=DOCKER_SCHEMA2)
    raw["target"]["url"] = f"https://proxy/prefix/v2/localhost%3A5000/app/blobs/{D}"
    classified = classify(raw)
    assert isinstance(classified, Event)
    assert classified.kind is Kind.WARM_BLOB
    # Without a URL, or with one that is none, the media type decides.
    raw = event("push", "app", D)
    del raw["target"]["url"]
    assert classify(raw) == Event(raw["id"], Kind.WARM_BLOB, "app", D)
    for url in ["http://[::1/v2/app/blobs/x", 42, None, "", "/manifests/"]:
        raw = event("push", "app", D, media_type=DOCKER_SCHEMA2)
        raw["target"]["url"] = url
        assert classify(raw) == Event(raw["id"], Kind.WARM_MANIFEST, "app", D, PUSHED_AT)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (event("push", "Bad/Name", D), "invalid repository name"),
        (event("push", "../etc", D), "invalid repository name"),
        (event("push", "app", "sha256:../../x"), "invalid digest"),
        (event("push", "app"), "no target digest"),
        (event("frobnicate", "app", D), "unknown action"),
        (event("push", "app", D, event_id="bad id with spaces"), "invalid event id"),
        (event("delete", "app"), "neither a digest nor a tag"),
        ({"id": "x", "action": "push"}, "no target"),
        ("a string", "not a JSON object"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(raw: Any, reason: str) -> None:
    rejected = classify(raw)
    assert isinstance(rejected, Rejected)
    assert reason in rejected.reason
    assert rejected.event == raw


def test_messages_round_trip_and_are_validated_again() -> None:
    e = Event("id-1", Kind.WARM_BLOB, "team/app", D)
    assert Event.from_message(e.as_message()) == e
    with pytest.raises(ValueError, match="invalid repository name"):
        Event.from_message(["id-1", "warm-blob", "../x", D])


# What a registry v3.1.1 really sent (one event per POST, the events v2 media type), captured
# from the binary with every action: push, mount, pull, and deletes of a blob, a manifest and
# a tag (3.x sends "mediaType": "" and "size": 0 on deletes, and "digest": "" on tag deletes).
_V3_CAPTURED = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "events-registry-3.1.1.json").read_text()
)
_V3_KINDS = {
    "blob push": Kind.WARM_BLOB,
    "blob mount": Kind.WARM_BLOB,
    "manifest push (tag)": Kind.WARM_MANIFEST,
    "manifest push (index child, no tag)": Kind.WARM_MANIFEST,
    "index push (tag)": Kind.WARM_MANIFEST,
    "blob pull HEAD": Kind.ACCESS,
    "blob pull GET": Kind.ACCESS,
    "manifest pull GET by tag": Kind.ACCESS,
    "manifest pull GET by digest / index child": Kind.ACCESS,
    "manifest pull HEAD": Kind.ACCESS,
    "blob delete (DELETE /v2/org/other/blobs/<L4>)": Kind.EVICT,
    "manifest delete (DELETE /v2/org/other/manifests/<digest>)": Kind.EVICT,
    "tag delete (DELETE /v2/team/app/manifests/tmp)": Kind.IGNORE,
    "tag delete emitted by the manifest delete": Kind.IGNORE,
}


@pytest.mark.parametrize("name", sorted(_V3_CAPTURED))
def test_registry_3_events_are_classified_as_2x_ones(name: str) -> None:
    captured = _V3_CAPTURED[name]
    assert captured["content_type"] == EVENTS_V2
    (raw,) = parse_envelope(json.dumps(captured["body"]).encode())
    classified = classify(raw)
    assert isinstance(classified, Event), classified
    assert classified.kind is _V3_KINDS[name]
    # A manifest push carries the registry's own timestamp (nanoseconds, UTC), to the ms.
    if classified.kind is Kind.WARM_MANIFEST:
        assert raw["timestamp"].startswith("2026-11-30T06:")
        assert classified.pushed_at == round(
            datetime.fromisoformat(raw["timestamp"]).timestamp(), 3
        )
    else:
        assert classified.pushed_at is None


def test_a_manifest_push_carries_the_registry_timestamp_for_push_to_warm() -> None:
    raw = event("push", "app", D, media_type=DOCKER_SCHEMA2, tag="v1")
    raw["timestamp"] = "2026-12-06T01:50:44.959123456Z"  # as a registry writes it: nanoseconds
    manifest = classify(raw)
    assert isinstance(manifest, Event)
    assert manifest.pushed_at == 1796521844.959
    assert Event.from_message(manifest.as_message()) == manifest
    # Other events carry none, and keep the four-item message older workers read.
    blob = classify(event("push", "app", D))
    assert isinstance(blob, Event)
    assert blob.pushed_at is None
    assert len(blob.as_message()) == 4
    # A timestamp that is not RFC 3339 with a zone measures nothing; the event goes on.
    for unreadable in ["yesterday", "2026-12-06T01:50:44", 1796521844, None, "9" * 100]:
        raw["timestamp"] = unreadable
        classified = classify(raw)
        assert isinstance(classified, Event)
        assert (classified.kind, classified.pushed_at) == (Kind.WARM_MANIFEST, None)


def test_a_message_of_an_older_receiver_reads_and_a_bad_timestamp_is_refused() -> None:
    old = ["e1", "warm-manifest", "app", D]
    assert Event.from_message(old) == Event("e1", Kind.WARM_MANIFEST, "app", D)
    assert Event.from_message(old).as_message() == old  # leaves the ledger as it came in
    for bad in ["now", True, float("nan"), float("inf"), [1]]:
        with pytest.raises(ValueError, match="pushed_at"):
            Event.from_message([*old, bad])
    with pytest.raises(ValueError, match="4 or 5 items"):
        Event.from_message([*old, 1.0, 2.0])
