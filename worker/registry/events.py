"""Registry notifications: the envelope, and each event classified into what the warmer does.

The registry retries a refused envelope forever, in order, so only an envelope that is not one at
all is refused. An event that is wrong (a bad name or digest, an unknown action) becomes a
:class:`Rejected` with its reason, for the dead-letter list; the rest of its envelope goes on.

What each event means for the cache:

==================================  ==============================================================
push or mount of a blob             ``warm-blob``: one cached fetch of the blob in the repository
push of a manifest                  ``warm-manifest``: its blobs, its children, their descriptors
delete with a digest                ``evict``: the digest from the repository (globally once gone)
delete of a tag                     ``ignore``: tags are not in the cache
pull of a blob or a manifest        ``access``: recorded for hot-first re-warm
==================================  ==============================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple, TypeAlias
from urllib.parse import unquote, urlsplit

from worker.errors import InvalidEnvelopeError, InvalidReferenceError, UnreadableEnvelopeError
from worker.registry import reference
from worker.registry.mediatypes import MANIFEST_TYPES

__all__ = ["Event", "Kind", "Message", "Rejected", "classify", "parse_envelope"]

#: A task message: one event as ``[id, kind, repository, digest]``, plain JSON (the broker's
#: format, kept compatible across minor versions); a manifest push adds the registry's timestamp
#: of the event (``[..., digest, pushed_at]``, Unix seconds) for push-to-warm.
Message: TypeAlias = list[Any]
# Event ids become part of a key in the state Redis: keep them short and plain.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Below Python's default int/str conversion limit (4300 digits), so int() never refuses.
_MAX_INT_DIGITS: Final = 4000


class Kind(StrEnum):
    """What the warmer does with an event."""

    WARM_BLOB = "warm-blob"
    WARM_MANIFEST = "warm-manifest"
    EVICT = "evict"
    ACCESS = "access"
    IGNORE = "ignore"


class Event(NamedTuple):
    """One valid notification, reduced to what the warmer needs; JSON-ready as a list.

    ``pushed_at`` is the registry's timestamp of a manifest push (Unix seconds; None for other
    events, or when the registry sent none that can be read): push-to-warm is measured from it.
    """

    id: str
    kind: Kind
    repository: str
    digest: str | None = None
    pushed_at: float | None = None

    def as_message(self) -> Message:
        """A compact form for a task's arguments (four items unless it has ``pushed_at``: a
        message of an older receiver is the same list, and leaves the ledger as it came in)."""
        message: Message = [self.id, self.kind.value, self.repository, self.digest]
        return message if self.pushed_at is None else [*message, self.pushed_at]

    @classmethod
    def from_message(cls, message: Message) -> Event:
        """The inverse of :meth:`as_message`, validating again (a message is input too)."""
        event_id, kind, repository, digest, *rest = message
        if len(rest) > 1:
            raise ValueError(f"a task message has 4 or 5 items, not {len(message)}")
        pushed_at = rest[0] if rest else None
        if pushed_at is not None and (
            isinstance(pushed_at, bool)
            or not isinstance(pushed_at, int | float)
            or not math.isfinite(pushed_at)
        ):
            raise ValueError(f"pushed_at is a number of seconds, not {pushed_at!r}")
        return cls(
            _event_id(event_id),
            Kind(kind),
            reference.repository_name(repository),
            reference.digest(digest) if digest is not None else None,
            pushed_at,
        )


class Rejected(NamedTuple):
    """An event the warmer cannot act on, with the reason; it goes to the dead-letter list."""

    event: Any
    reason: str


def parse_envelope(body: bytes) -> list[Any]:
    """The raw events of a notification body; raise InvalidEnvelopeError if it is not one."""
    try:
        # An integer over Python's digit limit (json.loads would raise ValueError) stays its
        # text: no field the warmer reads is such a number, and the event goes on.
        doc = json.loads(body, parse_int=_int_or_text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEnvelopeError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise UnreadableEnvelopeError("body is nested too deeply for the JSON parser") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise InvalidEnvelopeError('body is not an envelope: expected {"events": [...]}')
    events: list[Any] = doc["events"]
    return events


def _int_or_text(text: str) -> int | str:
    return int(text) if len(text) <= _MAX_INT_DIGITS else text


def classify(raw: Any) -> Event | Rejected:
    """What to do with one raw event, or why nothing can be done; never raises."""
    try:
        return _classify(raw)
    except Exception as exc:  # whatever a hostile event makes Python raise: it fails alone
        return Rejected(raw, f"event cannot be read: {exc!r}"[:300])


def _classify(raw: Any) -> Event | Rejected:
    if not isinstance(raw, Mapping):
        return Rejected(raw, "event is not a JSON object")
    target = raw.get("target")
    if not isinstance(target, Mapping):
        return Rejected(raw, "event has no target")
    try:
        event_id = _event_id(raw.get("id"))
        repository = reference.repository_name(target.get("repository"))
        action = raw.get("action")
        digest = target.get("digest") or None
        if action == "delete" and digest is None:
            if target.get("tag") is None:
                return Rejected(raw, "delete event names neither a digest nor a tag")
            return Event(event_id, Kind.IGNORE, repository)
        if digest is None:
            return Rejected(raw, f"{action} event has no target digest")
        digest = reference.digest(digest)
    except InvalidReferenceError as exc:
        return Rejected(raw, str(exc))
    if action in ("push", "mount"):
        if _is_manifest(target, repository, digest):
            return Event(event_id, Kind.WARM_MANIFEST, repository, digest, _seconds(raw))
        kind = Kind.WARM_BLOB
    elif action == "delete":
        kind = Kind.EVICT
    elif action == "pull":
        kind = Kind.ACCESS
    else:
        return Rejected(raw, f"unknown action {action!r}")
    return Event(event_id, kind, repository, digest)


def _is_manifest(target: Mapping[str, Any], repository: str, digest: str) -> bool:
    # The registry builds the target URL from the route it served, ".../v2/<name>/blobs/<digest>"
    # or ".../v2/<name>/manifests/<reference>": its end is exact, whatever the name holds
    # ("team/manifests" is a repository, not a route) and whatever prefix a proxy adds. 2.x
    # sends blobs as application/octet-stream and manifests with their own media type: that
    # decides when the URL is missing or says neither.
    url = target.get("url")
    try:
        path = unquote(urlsplit(url).path) if isinstance(url, str) else ""
    except ValueError:  # not a URL at all ("http://[x"): the media type decides
        path = ""
    if path:
        if path.endswith(f"/{repository}/blobs/{digest}"):
            return False
        tag = target.get("tag")
        references = [digest, *([tag] if isinstance(tag, str) and tag else [])]
        if any(path.endswith(f"/{repository}/manifests/{ref}") for ref in references):
            return True
    # Any JSON may stand there (a list, an object): only a string can name a media type.
    media_type = target.get("mediaType")
    return isinstance(media_type, str) and media_type in MANIFEST_TYPES


def _seconds(raw: Mapping[str, Any]) -> float | None:
    # RFC 3339 with up to nanoseconds ("2026-12-06T01:50:44.959123456Z"); anything else, or a
    # time without its zone, measures nothing (the event goes on all the same). Milliseconds
    # are plenty, and keep the message short.
    value = raw.get("timestamp")
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return round(moment.timestamp(), 3) if moment.tzinfo is not None else None


def _event_id(value: Any) -> str:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise InvalidReferenceError(f"invalid event id {value!r}")
    return value
