"""Registry-shaped notification events, as a 2.8 registry sends them."""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = ["envelope", "event"]

OCTET = "application/octet-stream"


def event(
    action: str,
    repository: str,
    digest: str | None = None,
    *,
    media_type: str = OCTET,
    tag: str | None = None,
    from_repository: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One event; a manifest's URL and media type when ``media_type`` is a manifest's."""
    kind = "blobs" if media_type == OCTET else "manifests"
    target: dict[str, Any] = {"mediaType": media_type, "repository": repository, "size": 1}
    if digest is not None:
        target |= {
            "digest": digest,
            "length": 1,
            "url": f"http://reg/v2/{repository}/{kind}/{digest}",
        }
    if tag is not None:
        target["tag"] = tag
    if from_repository is not None:
        target["fromRepository"] = from_repository
    return {
        "id": event_id or str(uuid.uuid4()),
        "timestamp": "2026-11-29T07:18:44.169Z",
        "action": action,
        "target": target,
        "request": {
            "id": "r",
            "addr": "127.0.0.1",
            "host": "reg",
            "method": "PUT",
            "useragent": "skopeo/1.9.3",
        },
        "actor": {},
        "source": {"addr": "vm:5055", "instanceID": "i"},
    }


def envelope(*events: dict[str, Any]) -> bytes:
    """A notification body holding ``events``."""
    return json.dumps({"events": list(events)}).encode()
