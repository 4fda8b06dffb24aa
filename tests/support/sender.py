"""A sender that behaves like a registry's notification queue: serial, in order, and it sends
the same event again until it gets a 2xx answer."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

__all__ = ["RegistryLikeSender"]


class RegistryLikeSender(threading.Thread):
    """Posts each body to ``url`` until 2xx, one at a time; counts what it had to retry."""

    def __init__(self, url: str, token: str, bodies: Sequence[bytes]) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.bodies = url, token, bodies
        self.sent = 0
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        for body in self.bodies:
            while not self.stop.is_set():
                if self._post(body):
                    self.sent += 1
                    break
                self.refused += 1
                time.sleep(0.1)  # the registry's backoff, shortened

    def _post(self, body: bytes) -> bool:
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/vnd.docker.distribution.events.v1+json",
                "authorization": f"Bearer {self.token}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                status: int = resp.status
                return 200 <= status < 300
        except (urllib.error.URLError, OSError):
            return False
