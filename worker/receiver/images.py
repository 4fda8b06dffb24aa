"""Deploy hooks over HTTP, with the token of ``/events``: ``POST /warm`` hands images to the
workers (a ``warmer.warm_image`` task an image), ``GET /check?image=REF`` says whether one is
warm, with the JSON of ``warmer check --json``.

Answers:

- 401 without the token (as ``/events``: Bearer, or Basic with it as password);
- 413 for a body over the limit, refused before it is read whole (``/warm``);
- 400 for a body that is not ``{"images": [REF, ...]}`` (at most ``max_images``), or a
  reference or platform that is wrong or names another registry: the reason says which;
- 404 (``/check``) when the store holds no such image (no such tag, manifest or platform);
- 503 when the broker (``/warm``), or the cache or the store (``/check``), cannot answer;
- 202 ``{"tasks": [{"image", "task_id"}]}`` from ``/warm``, each image once;
- 200 from ``/check``: ``{"warm": true|false, "images": [...], "errors": [], "skipped": 0}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.config.secretvalues import redact_text
from worker.core.imagecheck import ImageCheck, check_report
from worker.errors import BlobNotFoundError, ImageNotFoundError, InvalidReferenceError, WarmerError
from worker.receiver.admission import LOG_NAME
from worker.receiver.request import Disconnected, authorized, read_body
from worker.registry import manifest
from worker.registry.reference import ImageReference, image_reference

__all__ = ["DEFAULT_MAX_IMAGES", "MAX_WARM_BODY", "ImageRoutes"]

_log = logging.getLogger(LOG_NAME)

#: Largest ``POST /warm`` body read: a hundred references of the longest kind fit.
MAX_WARM_BODY: Final = 128 * 1024
#: Images one ``POST /warm`` may name.
DEFAULT_MAX_IMAGES: Final = 100
#: Checks run at once in a process; more wait their turn (each reads the cache and the store).
_CHECKS_AT_ONCE: Final = 8

#: Checks one image: (reference, platform or None) to its check; raises WarmerError.
Checker = Callable[[ImageReference, "str | None"], ImageCheck]
#: Hands one image to the workers: (reference as given, platform or None) to a task id.
Sender = Callable[[str, "str | None"], str]


class _Refused(Exception):
    """An answer other than success, decided while reading the request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ImageRoutes:
    """``POST /warm`` and ``GET /check``. ``token=None`` accepts every caller; ``hosts`` are
    the registry hosts a reference may name (``WARMER_REGISTRY_HOSTS``)."""

    def __init__(
        self,
        *,
        token: str | None,
        hosts: Collection[str],
        check: Checker,
        send: Sender,
        max_body: int = MAX_WARM_BODY,
        max_images: int = DEFAULT_MAX_IMAGES,
    ) -> None:
        self._expected = token.encode() if token else None
        self._hosts = frozenset(hosts)
        self._check = check
        self._send = send
        self._max_body = max_body
        self._max_images = max_images
        self._checks: asyncio.Semaphore | None = None

    def routes(self) -> list[Route]:
        """The two routes."""
        return [
            Route("/warm", self.warm, methods=["POST"]),
            Route("/check", self.check, methods=["GET"]),
        ]

    async def warm(self, request: Request) -> JSONResponse:
        """Hand each image of ``{"images": [...], "platform": "os/arch"}`` to the workers."""
        try:
            self._authorize(request)
            references, platform = self._warm_request(await self._body(request))
        except _Refused as refused:
            return _error(refused.status, str(refused))
        except Disconnected:
            return _error(400, "the client hung up before its body was read")
        sent = []
        try:
            for reference in references:
                task_id = await asyncio.to_thread(self._send, reference.text, platform)
                sent.append({"image": reference.text, "task_id": task_id})
        except Exception as exc:  # whatever the broker client raises
            _log.error("warm: broker unavailable: %s", exc)
            return _error(503, "broker unavailable, send again later")
        _log.info("warm: %d images handed to the workers", len(sent))
        return JSONResponse({"tasks": sent}, status_code=202)

    async def check(self, request: Request) -> JSONResponse:
        """Whether ``?image=REF`` (``&platform=os/arch``) is warm: ``warmer check --json``."""
        try:
            self._authorize(request)
            given = request.query_params.get("image")
            if not given:
                raise _Refused(400, "give the image to check: /check?image=REPO:TAG")
            reference = self._reference(given)
            platform = self._platform(request.query_params.get("platform"))
        except _Refused as refused:
            return _error(refused.status, str(refused))
        if self._checks is None:  # made in the event loop that serves
            self._checks = asyncio.Semaphore(_CHECKS_AT_ONCE)
        try:
            async with self._checks:
                checked = await asyncio.to_thread(self._check, reference, platform)
        except (ImageNotFoundError, BlobNotFoundError) as exc:
            return _error(404, f"{given}: {exc}")
        except WarmerError as exc:  # the cache or the store away, or no storage configured
            reason = redact_text(str(exc))
            _log.error("check of %s failed: %s", given, reason)
            return _error(503, f"could not check {given}: {reason}")
        return JSONResponse(check_report([checked]))

    def _authorize(self, request: Request) -> None:
        if self._expected is None:
            return
        header = request.headers.get("authorization")
        if not authorized(header.encode("latin-1") if header else None, self._expected):
            raise _Refused(401, "missing or wrong token")

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        body = await read_body(
            request.receive, declared.encode() if declared else None, self._max_body
        )
        if body is None:
            raise _Refused(413, f"body is over {self._max_body} bytes")
        return body

    def _warm_request(self, body: bytes) -> tuple[list[ImageReference], str | None]:
        try:
            doc: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _Refused(
                400, 'body is not JSON: expected {"images": ["repo:tag", ...]}'
            ) from None
        images = doc.get("images") if isinstance(doc, dict) else None
        if not isinstance(images, list) or not images:
            raise _Refused(400, 'expected {"images": ["repo:tag", ...]}, a non-empty list')
        if len(images) > self._max_images:
            raise _Refused(400, f"{len(images)} images, over {self._max_images} a request")
        references: dict[tuple[str, str], ImageReference] = {}
        for given in images:
            if not isinstance(given, str):
                raise _Refused(400, f"an image is a reference string, not {given!r}"[:200])
            reference = self._reference(given)
            references.setdefault(reference.key, reference)  # each image once
        return list(references.values()), self._platform(doc.get("platform"))

    def _reference(self, given: str) -> ImageReference:
        try:
            return image_reference(given, self._hosts)
        except InvalidReferenceError as exc:
            raise _Refused(400, str(exc)[:500]) from None

    def _platform(self, given: object) -> str | None:
        if given is None:
            return None
        if not isinstance(given, str):
            raise _Refused(400, "platform is a string: os/arch[/variant]")
        try:
            return manifest.platform(given)
        except InvalidReferenceError as exc:
            raise _Refused(400, str(exc)[:200]) from None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
