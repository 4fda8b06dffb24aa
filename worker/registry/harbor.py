"""Harbor's project webhooks, read into the warmer's own events: pure, no framework.

Harbor owns its registry's ``notifications`` (they go to Harbor's core), so a Harbor user hands
the warmer a *project webhook* instead. Harbor sends one of two formats, both JSON (shapes from
goharbor/harbor v2.9-v2.12: ``src/pkg/notifier/model/event.go``, ``src/pkg/notifier/formats/
default.go`` and ``cloudevents.go``, ``src/controller/event/handler/webhook/artifact/artifact.go``):

- "Default": ``{"type": "PUSH_ARTIFACT", "occur_at": <unix>, "operator": "...", "event_data":
  {"resources": [{"digest", "tag", "resource_url"}], "repository": {"name", "namespace",
  "repo_full_name", "repo_type"}}}``;
- "CloudEvents" 1.0, structured (``application/cloudevents+json``): ``specversion``, ``id``,
  ``type`` (``harbor.artifact.pushed`` ...), ``time``, ``operator``, and the same ``event_data``
  as ``data``.

An artifact event names the artifact's manifest (its ``digest``; a push by digest repeats the
digest in ``tag``) and a ``resource_url``, ``<Harbor's external host>/<repo_full_name>:<tag>``
or ``@<digest>``. What each becomes:

========================  =====================================================================
push                      ``warm-manifest``: the manifest, every platform of an index (the
                          event pipeline's own write path); Harbor's time of the push is its
                          ``pushed_at``, for push-to-warm
delete                    ``evict``: what the registry's own manifest delete forgets
pull                      ``access``: a pull of the repository, added up like the registry's
any other Harbor type     nothing: acknowledged and counted (scans, quotas, replication, tag
                          retention, tags, and types Harbor adds later)
========================  =====================================================================

A payload that is no Harbor webhook at all (not JSON, no type, an artifact event without
``event_data``, fields of the wrong type) raises :class:`~worker.errors.InvalidEnvelopeError`.
Within one, each resource stands alone: one that names another registry (a ``resource_url``
host not in ``WARMER_REGISTRY_HOSTS``) is a :class:`Skipped`, one that is wrong a
:class:`~worker.registry.events.Rejected` (its event ``{"harbor_type", "repository",
"resource"}``, for the dead-letter list), and the others go on.

Harbor gives a Default payload no id, and a CloudEvents payload a fresh one each time it sends
it again: the event id, the dedup key of the ledger, is made from what the event says instead
(its type, time, repository and digest), so a resend is a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from worker.errors import ForeignRegistryError, InvalidEnvelopeError, InvalidReferenceError
from worker.registry import reference
from worker.registry.events import Event, Kind, Rejected

__all__ = [
    "CLOUDEVENTS_JSON",
    "HARBOR_CONTENT_TYPES",
    "HarborAction",
    "HarborNotice",
    "Skipped",
    "parse_harbor",
]

#: The content type of a structured CloudEvent, which Harbor's CloudEvents format sends.
CLOUDEVENTS_JSON: Final = "application/cloudevents+json"
#: What a Harbor webhook is sent as: Default is ``application/json``.
HARBOR_CONTENT_TYPES: Final = frozenset({"application/json", CLOUDEVENTS_JSON})

# Harbor's Default types are its event topics (PUSH_ARTIFACT, SCANNING_COMPLETED, ...);
# its CloudEvents types are "harbor." and a dotted name (harbor.artifact.pushed, ...).
_DEFAULT_TYPE_RE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CLOUDEVENTS_TYPE_RE: Final = re.compile(r"harbor(?:\.[a-z0-9_]{1,64}){1,4}")
# Resources one payload may name: Harbor sends one an artifact event.
_MAX_RESOURCES: Final = 100
# The largest occur_at read (Unix seconds, the year 5138): past it, no Harbor wrote it.
_MAX_OCCUR_AT: Final = 10**11


class HarborAction(StrEnum):
    """What a Harbor event type asks of the warmer."""

    PUSH = "push"
    DELETE = "delete"
    PULL = "pull"
    OTHER = "other"


_ACTIONS: Final = {
    "PUSH_ARTIFACT": HarborAction.PUSH,
    "harbor.artifact.pushed": HarborAction.PUSH,
    "DELETE_ARTIFACT": HarborAction.DELETE,
    "harbor.artifact.deleted": HarborAction.DELETE,
    "PULL_ARTIFACT": HarborAction.PULL,
    "harbor.artifact.pulled": HarborAction.PULL,
}
_KINDS: Final = {
    HarborAction.PUSH: Kind.WARM_MANIFEST,
    HarborAction.DELETE: Kind.EVICT,
    HarborAction.PULL: Kind.ACCESS,
}


class Skipped(NamedTuple):
    """A resource that is not this registry's: acknowledged, counted, not acted on."""

    resource: Any
    reason: str


@dataclass(frozen=True, slots=True)
class HarborNotice:
    """One Harbor webhook, read: its type, what it asks, and each resource's outcome."""

    type: str
    action: HarborAction
    events: tuple[Event, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    rejected: tuple[Rejected, ...] = ()


def parse_harbor(body: bytes, hosts: Collection[str]) -> HarborNotice:
    """The Harbor webhook ``body``, read; ``hosts`` are this registry's (lower-cased). Raise
    InvalidEnvelopeError, saying what is wrong, when it is no Harbor webhook."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEnvelopeError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEnvelopeError("body is nested too deeply for the JSON parser") from None
    if not isinstance(doc, dict):
        raise InvalidEnvelopeError("body is not a Harbor webhook: expected a JSON object")
    cloudevent = "specversion" in doc
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidEnvelopeError('body is not a Harbor webhook: "type" is missing or not text')
    shape = _CLOUDEVENTS_TYPE_RE if cloudevent else _DEFAULT_TYPE_RE
    if shape.fullmatch(kind) is None:
        expected = "harbor.artifact.pushed, ..." if cloudevent else "PUSH_ARTIFACT, ..."
        raise InvalidEnvelopeError(f"unknown Harbor event type {kind[:80]!r} (expected {expected})")
    action = _ACTIONS.get(kind, HarborAction.OTHER)
    if action is HarborAction.OTHER:
        return HarborNotice(kind, action)
    when = _when(doc, cloudevent)
    resources, name = _artifacts(doc, kind, "data" if cloudevent else "event_data")
    events: list[Event] = []
    skipped: list[Skipped] = []
    rejected: list[Rejected] = []
    for resource in resources:
        try:
            repository, digest = _resource(resource, name, hosts)
        except ForeignRegistryError as exc:
            skipped.append(Skipped(resource, str(exc)[:300]))
            continue
        except InvalidReferenceError as exc:  # kept whole, with what it was part of
            kept = {"harbor_type": kind, "repository": name, "resource": resource}
            rejected.append(Rejected(kept, str(exc)[:300]))
            continue
        key = json.dumps([kind.lower(), when, repository, digest], default=str)
        event_id = "harbor-" + hashlib.sha256(key.encode()).hexdigest()[:40]
        pushed_at = _pushed_at(when) if action is HarborAction.PUSH else None
        events.append(Event(event_id, _KINDS[action], repository, digest, pushed_at))
    return HarborNotice(kind, action, tuple(events), tuple(skipped), tuple(rejected))


def _when(doc: dict[str, Any], cloudevent: bool) -> Any:
    # When it happened, as Harbor wrote it: part of the event's id.
    if cloudevent:
        when = doc.get("time")
        if not isinstance(when, str | None):
            raise InvalidEnvelopeError('"time" of a CloudEvent is text (RFC 3339)')
        return when
    when = doc.get("occur_at")
    if isinstance(when, bool) or not isinstance(when, int | None):
        raise InvalidEnvelopeError('"occur_at" is a whole number of seconds')
    if when is not None and not 0 <= when <= _MAX_OCCUR_AT:
        # 10**400 would overflow float(): a payload no Harbor sends is refused, never a 500.
        raise InvalidEnvelopeError(f'"occur_at" is Unix seconds, from 0 to {_MAX_OCCUR_AT}')
    return when


def _pushed_at(when: Any) -> float | None:
    # When Harbor saw the push (Unix seconds, or RFC 3339 with its zone): push-to-warm is
    # measured from it, as from a registry's own timestamp. Anything else measures nothing.
    if isinstance(when, int):
        return float(when)
    if not isinstance(when, str) or len(when) > 64:
        return None
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        return None
    return round(moment.timestamp(), 3) if moment.tzinfo is not None else None


def _artifacts(doc: dict[str, Any], kind: str, data_key: str) -> tuple[list[Any], Any]:
    # The resources of an artifact event, and the repository's full name (checked per resource).
    data = doc.get(data_key)
    if not isinstance(data, dict):
        raise InvalidEnvelopeError(f'{kind} has no "{data_key}" object')
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise InvalidEnvelopeError(f'{kind}: "{data_key}.resources" is not a non-empty list')
    if len(resources) > _MAX_RESOURCES:
        raise InvalidEnvelopeError(f"{kind}: {len(resources)} resources, over {_MAX_RESOURCES}")
    repository = data.get("repository")
    if not isinstance(repository, dict):
        raise InvalidEnvelopeError(f'{kind}: "{data_key}.repository" is not an object')
    return resources, repository.get("repo_full_name")


def _resource(resource: Any, name: Any, hosts: Collection[str]) -> tuple[str, str]:
    # The repository and manifest digest one resource names, checked against each other.
    if not isinstance(resource, Mapping):
        raise InvalidReferenceError("a resource is not a JSON object")
    given_digest = resource.get("digest") or None
    tag = resource.get("tag")
    url = resource.get("resource_url") or None
    for field, value in (("digest", given_digest), ("tag", tag), ("resource_url", url)):
        if value is not None and not isinstance(value, str):
            raise InvalidReferenceError(f"resource {field} is {type(value).__name__}, not text")
    if not isinstance(name, str) or not name:
        raise InvalidReferenceError("repository.repo_full_name is missing or not text")
    repository = reference.repository_name(name)
    digest = reference.digest(given_digest) if given_digest is not None else None
    if url is not None:
        # Harbor writes its external URL without the scheme; a proxy in front may not.
        named = reference.image_reference(re.sub(r"^https?://", "", url), hosts)
        if named.host is None:
            _bare_host(url, named.repository, repository, hosts)
        elif named.repository != repository:
            raise InvalidReferenceError(
                f"resource_url {url!r} names repository {named.repository}, "
                f"the event's repository is {repository}"
            )
        if digest is not None and named.digest not in (None, digest):
            raise InvalidReferenceError(f"resource_url {url!r} names another digest than {digest}")
        digest = digest or named.digest
    if digest is None:
        raise InvalidReferenceError(f"resource of {repository} names no digest")
    return repository, digest


def _bare_host(url: str, named: str, repository: str, hosts: Collection[str]) -> None:
    # A host without a "." or ":" ("harbor/library/app") reads as a repository's first
    # component: what stands before the event's repository is the host.
    host, slash, rest = named.partition("/")
    if not slash or rest != repository:
        raise InvalidReferenceError(f"resource_url {url!r} names no registry host and {repository}")
    if host not in hosts:
        known = ", ".join(sorted(hosts)) or "none configured"
        raise ForeignRegistryError(
            f"resource_url {url!r} names registry {host}, not this one "
            f"(WARMER_REGISTRY_HOSTS: {known})"
        )
