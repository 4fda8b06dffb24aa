"""What a dead letter holds, and how large one may be: an event the warmer gave up on, kept
for a person to read (``warmer deadletters``). :class:`~worker.state.StateStore` keeps the list."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MAX_LETTER_BYTES", "MAX_REASON_CHARS", "DeadLetter", "letter"]

#: A dead letter's largest size (a registry's event is well under 2 KiB); past it the event is
#: kept cut, with its length and hash. The list is at most this times WARMER_DEADLETTER_MAX.
MAX_LETTER_BYTES: Final = 8192
MAX_REASON_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the warmer gave up on: when, why, and the event as it arrived."""

    at: float
    reason: str
    event: Any

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"at": self.at, "reason": self.reason, "event": self.event}


def letter(at: float, reason: str, event: Any) -> str:
    """The JSON of a dead letter, at most :data:`MAX_LETTER_BYTES` long."""
    reason = reason[:MAX_REASON_CHARS]
    try:
        text = json.dumps(DeadLetter(at, reason, event).as_dict(), default=str)
    except (ValueError, RecursionError) as exc:  # nesting or a number json cannot write back
        return json.dumps(DeadLetter(at, reason, f"<event not serializable: {exc!r}>").as_dict())
    if len(text) <= MAX_LETTER_BYTES:
        return text
    # The cap counts letters, so a letter is bounded too: a 1 MiB event would make the list
    # 10 GB. What is kept says what it was; an event this large never was a registry's.
    raw = json.dumps(event, default=str)
    digest = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
    head = raw[: MAX_LETTER_BYTES // 2]
    cut = f"<event of {len(raw)} characters, sha256 {digest}, cut: {head}...>"
    return json.dumps(DeadLetter(at, reason, cut).as_dict())
