"""A real S3 endpoint for the tests and benchmarks: moto's server (``moto[server]``) on a free
port of 127.0.0.1, started by them and stopped after them, its keys and clients, and the AWS
environment that points a warmer or a registry at it (and nothing of the caller's AWS set-up).

In bench/ because the benchmarks may not import tests/; the tests import it from here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3

from worker.cli.demo.registry import free_port, http_process

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ACCESS_KEY",
    "REGION",
    "SECRET_KEY",
    "aws_environment",
    "client",
    "moto_server",
    "put_tree",
]

ACCESS_KEY: Final = "warmer-test-key"
SECRET_KEY: Final = "warmer-test-secret"
REGION: Final = "us-east-1"


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto's S3 server on a free port; yields its endpoint URL, stops it afterwards."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with http_process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        url=endpoint,
        log=log,
        env=aws_environment(endpoint, base={"PATH": os.environ.get("PATH", "")}),
        what=f"moto on {endpoint}",
    ):
        yield endpoint


def aws_environment(endpoint: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (the process environment by default) without any AWS setting of the caller,
    plus credentials, region and endpoint of the test server. ``AWS_CA_BUNDLE`` goes too: a
    registry with a plain-http endpoint refuses to start with it."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(("AWS_", "REGISTRY_"))
    }
    env |= {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return env


def client(endpoint: str) -> S3Client:
    """A boto3 client of the test server."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client("s3", endpoint_url=endpoint)


def put_tree(s3: S3Client, bucket: str, prefix: str, root: Path) -> int:
    """Upload every file under ``root`` as ``prefix`` + its relative path (a few at a time);
    the count."""

    def put(path: Path) -> None:
        key = f"{prefix}{path.relative_to(root).as_posix()}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    return len(files)
