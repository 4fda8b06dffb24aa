"""Reading a Redis DB whole, and counting round trips, for exact comparisons in tests."""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["CountingConnection", "dump"]


def dump(client: redis.Redis) -> dict[str, Any]:
    """Every key of the DB: sets as sorted lists, hashes as dicts, strings as str."""
    out: dict[str, Any] = {}
    for raw in sorted(client.scan_iter(count=1000)):
        key = _text(raw)
        kind = _text(client.type(raw))
        if kind == "set":
            out[key] = sorted(_text(m) for m in client.smembers(raw))
        elif kind == "hash":
            out[key] = {_text(f): _text(v) for f, v in client.hgetall(raw).items()}
        else:
            out[key] = f"<{kind}>"
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it sends (a pipeline sends one)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
