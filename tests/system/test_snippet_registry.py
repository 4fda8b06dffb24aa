"""The config snippet `warmer up` prints, pasted as told: the registry's own parser reads it,
and the registry then caches in the Redis it names and notifies the receiver it names, with
the token. Run on 2.8 and 3.x, whose ``redis:`` sections differ (``addr`` / ``addrs``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, layer, write_layout
from tests.support.redisdbs import DB
from tests.support.registry import Registry, free_port
from worker.cli.console import out
from worker.cli.demo.registry import RegistryBinary, http_process
from worker.cli.processes import wait_until
from worker.cli.up import registry_snippet
from worker.config.settings import load_settings

TOKEN = "pasted-snippet-token-0123456789abcdef"


class _Sink(ThreadingHTTPServer):
    """The receiver the snippet names: the Authorization header of every envelope kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.headers: list[str] = []
        self.actions: list[str] = []


class _Receive(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.headers.append(self.headers.get("Authorization", ""))
        self.server.actions.extend(e["action"] for e in body["events"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink()
    serving = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    serving.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)


def test_the_printed_snippet_configures_the_registry_as_pasted(
    binary: RegistryBinary, redis_proc: Any, tmp_path: Path, sink: _Sink
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    settings = load_settings(
        redis_url=f"redis://{redis_proc.host}:{redis_proc.port}/{DB.SNIPPET_CACHE}",
        storage_root=str(root),
        registry_version=binary.version.value,
        webhook_token=TOKEN,
    )
    snippet = registry_snippet(settings, "127.0.0.1", sink.server_port, show_token=True)
    with out.capture() as printed:  # what the terminal shows, as `warmer up` prints it
        out.print(snippet)
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n{printed.get()}")
    cache = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.SNIPPET_CACHE)
    cache.flushdb()
    image = Image([layer("pasted.txt", b"a layer pushed through the pasted config")])
    log = tmp_path / "registry.log"
    with http_process(
        [binary.path, "serve", str(config)],
        url=f"http://127.0.0.1:{port}/v2/",
        log=log,
        env=None,
        what="the registry on the pasted snippet",
    ) as process:
        registry = Registry(f"127.0.0.1:{port}", "", root, process, log, config, binary)
        registry.push(write_layout(tmp_path / "layout", image), "pasted/app:v1")
        wait_until(lambda: "push" in sink.actions, timeout=15, what="the registry's push events")
    # Its cache went where the snippet said (redis addr and db), its events to the receiver
    # the snippet named, with the token.
    assert cache.sismember("repository::pasted/app::blobs", image.layers[0].digest)
    assert set(sink.headers) == {f"Bearer {TOKEN}"}
    assert (root / "docker/registry/v2/repositories/pasted/app").is_dir()
    cache.flushdb()
