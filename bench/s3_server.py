"""moto's S3 server for ``bench/rewarm.py --store s3``, filled before it serves the benchmark.

    python bench/s3_server.py PORT BUCKET ROOT REPOS LINKS BLOBS

Uploading 150,000 objects over HTTP takes moto many minutes; this process puts them straight
into its own backend, then writes the object ``ready`` for the benchmark to wait on, and serves
until SIGTERM. The benchmark's requests all go over HTTP, as to any S3.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.backends import get_backend
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from bench.s3 import objects


def main() -> None:
    port, bucket, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    repos, links, blobs = (int(a) for a in sys.argv[4:7])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
        backend.create_bucket(bucket, "us-east-1")
        prefix = f"{root.strip('/')}/"
        for path, body in objects(repos, links, blobs):
            backend.put_object(bucket, prefix + path.lstrip("/"), body)
        backend.put_object(bucket, "ready", b"")
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
