"""What a notification request carries, read from plain ASGI: the caller's token, checked, and
the body, read whole within a limit (refused before a byte is read when it says it is larger).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

from starlette.types import Receive

__all__ = ["DEFAULT_MAX_BODY", "Disconnected", "authorized", "read_body"]

#: Largest body read; a 2.x envelope of a few events is a few KiB.
DEFAULT_MAX_BODY: Final = 1024 * 1024


class Disconnected(Exception):
    """Raised when the client hung up before its body was read whole."""


def authorized(header: bytes | None, expected: bytes) -> bool:
    """True when the ``Authorization`` header carries the token ``expected``: as a Bearer
    token, or as the password of Basic credentials (compared in constant time)."""
    if not header:
        return False
    scheme, _, credentials = header.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        given = credentials.strip()
    elif scheme == b"basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        given = decoded.partition(b":")[2]
    else:
        return False
    return hmac.compare_digest(given, expected)


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes | None:
    """The body, read whole; None when it is over ``limit`` bytes, as its ``Content-Length``
    (``declared``) says or as it turns out. Raises :class:`Disconnected` when the client hangs
    up first."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None  # refused before a byte is read
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body += message.get("body", b"")
        if len(body) > limit:  # chunked or lying about its length
            return None
        if not message.get("more_body", False):
            return bytes(body)
