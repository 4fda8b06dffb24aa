"""Benchmark: what one request costs the receiver's HTTP stack, a plain ASGI app beside a
Starlette route, before any of the warmer's own work.

    python bench/asgi_floor.py [--requests 20000] [--connections 32]

Serves, in this process, on uvicorn with httptools and uvloop (as ``warmer webhook`` does), in
rounds alternating:

- ``plain``: a plain ASGI app that reads the body, parses and classifies the envelope
  (``parse_envelope``, ``classify``) and answers 202, as ``POST /events`` is served now;
- ``starlette``: the same work in a Starlette route returning a ``JSONResponse``, as it was
  served until lever 6 of BENCHMARKS.md.

``wrk`` (bench/events.lua, pull events; each run bounded by the count and by 5 s) sends the
requests; the figure is this process's CPU (``resource.getrusage``) per request answered.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.cli.processes import free_port, wait_until  # noqa: E402
from worker.registry.events import classify, parse_envelope  # noqa: E402

LUA = Path(__file__).with_name("events.lua")
ANSWER = {"accepted": 1, "duplicates": 0, "ignored": 0, "rejected": 0}


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    for item in parse_envelope(bytes(body)):
        classify(item)
    answer = json.dumps(ANSWER, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def route(request: Request) -> JSONResponse:
    for item in parse_envelope(await request.body()):
        classify(item)
    return JSONResponse(ANSWER, status_code=202)


def cpu_per_request(app: ASGIApp, digests: Path, requests: int, connections: int) -> float:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="uvicorn to start", interval=0.02)
    # fmt: off
    args = ["wrk", "-t", "2", "-c", str(connections), "-d", "5s", "--timeout", "10s",
            "-s", str(LUA), f"http://127.0.0.1:{port}/events", "--", "pull", str(digests),
            "token", str(requests // 2), uuid.uuid4().hex[:12], "2"]
    # fmt: on
    before = resource.getrusage(resource.RUSAGE_SELF)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_SELF)
    server.should_exit = True
    thread.join(10)
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu / int(report["answered"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    digests = Path(tempfile.mkdtemp(prefix="warmer-bench-asgi-")) / "digests.txt"
    digests.write_text("".join(f"app{i % 10} sha256:{i:064x}\n" for i in range(args.requests)))
    starlette = Starlette(routes=[Route("/events", route, methods=["POST"])])
    print(f"CPU per request, {args.connections} connections (uvicorn, httptools, uvloop):")
    for round_ in (1, 2, 3):
        plain_us = cpu_per_request(plain, digests, args.requests, args.connections) * 1e6
        route_us = cpu_per_request(starlette, digests, args.requests, args.connections) * 1e6
        print(f"  round {round_}: plain ASGI {plain_us:.0f} µs, Starlette route {route_us:.0f} µs")


if __name__ == "__main__":
    main()
