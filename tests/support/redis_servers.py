"""Real Redis topologies for the integration and system tests: a Cluster of three masters, a
Sentinel with a master and a replica, and a TLS server with an ACL user and a test CA made with
``openssl``.

Every server runs on free ports of 127.0.0.1 under the test's folder, keeps nothing, and is
stopped when its context ends.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from worker.cli.processes import free_port, stop_group, throwaway_redis, wait_until

__all__ = ["Sentinel", "Tls", "redis_cluster", "redis_sentinel", "redis_tls"]

MASTER_NAME = "warmermaster"


def _wait(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """:func:`wait_until` a condition that Redis may fail to answer while a server starts or a
    failover runs: an error is a no, asked again at the next poll."""

    def answered() -> object:
        try:
            return condition()
        except redis.RedisError:
            return False

    wait_until(answered, timeout=timeout, what=what, interval=0.1)


@contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[list[int]]:
    """A Redis Cluster of ``masters`` masters (no replicas); yields their ports."""
    with ExitStack() as stack:
        ports = []
        for n in range(masters):
            folder = workdir / f"cluster-{n}"
            folder.mkdir(parents=True)
            ports.append(
                stack.enter_context(
                    throwaway_redis(
                        directory=folder,
                        # The bus port is the port + 10000 unless set: past 65535 for a high
                        # free port, so it gets a free port of its own.
                        extra=[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-node-timeout",
                            "5000",
                            "--cluster-port",
                            str(free_port()),
                        ],
                    )
                )
            )
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        clients = [redis.Redis(port=p) for p in ports]
        _wait(
            lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients),
            "the cluster to be ok",
        )
        for c in clients:
            c.close()
        yield ports


@dataclass
class Sentinel:
    """A master, its replica and one Sentinel watching them (quorum 1: it can fail over alone)."""

    master_port: int
    replica_port: int
    sentinel_port: int

    def url(self, db: int) -> str:
        """The warmer's URL of the master, found through the Sentinel."""
        return f"redis://127.0.0.1:{self.sentinel_port}/{db}?master_name={MASTER_NAME}"

    def master(self) -> int:
        """The port of the master now."""
        client = redis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(address[1])
        finally:
            client.close()

    def in_sync(self) -> bool:
        """True when the master has a replica online (a write can be confirmed)."""
        client = redis.Redis(port=self.master(), decode_responses=True)
        try:
            info = client.info("replication")
            return any(isinstance(v, dict) and v.get("state") == "online" for v in info.values())
        finally:
            client.close()

    def failover(self) -> int:
        """Make the replica the master (SENTINEL FAILOVER); return the new master's port."""
        before = self.master()
        client = redis.Redis(port=self.sentinel_port)
        try:
            client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        _wait(lambda: self.master() != before, "the Sentinel to promote the replica")
        return self.master()


@contextmanager
def redis_sentinel(workdir: Path) -> Iterator[Sentinel]:
    """A master, a replica of it and a Sentinel, on free ports."""
    with ExitStack() as stack:
        (workdir / "master").mkdir(parents=True)
        (workdir / "replica").mkdir()
        # No wait before a full sync (the default waits 5 s for more replicas to join).
        quick = ["--repl-diskless-sync-delay", "0"]
        master = stack.enter_context(throwaway_redis(directory=workdir / "master", extra=quick))
        replica = stack.enter_context(
            throwaway_redis(
                directory=workdir / "replica",
                extra=[*quick, "--replicaof", "127.0.0.1", str(master)],
            )
        )
        port = free_port()
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        stack.callback(stop_group, proc)
        sentinel = Sentinel(master, replica, port)
        watcher = redis.Redis(port=port, decode_responses=True)
        stack.callback(watcher.close)
        _wait(
            lambda: any(
                r["port"] == replica and "s_down" not in r["flags"]
                for r in watcher.sentinel_slaves(MASTER_NAME)
            ),
            "the Sentinel to see the replica",
        )
        _wait(sentinel.in_sync, "the replica to be in sync")
        yield sentinel


@dataclass
class Tls:
    """A Redis that speaks TLS only (client certificates required) and knows an ACL user."""

    port: int
    ca: Path
    cert: Path
    key: Path
    username: str
    password: str

    def url(self, db: int) -> str:
        """The warmer's URL: user and password, and the TLS files."""
        return (
            f"rediss://{self.username}:{self.password}@127.0.0.1:{self.port}/{db}"
            f"?ssl_ca_certs={self.ca}&ssl_certfile={self.cert}&ssl_keyfile={self.key}"
        )


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> dict[str, Path]:
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=test CA", "-keyout", ca_key, "-out", ca,
    )  # fmt: skip
    files = {"ca": ca}
    for name in ("server", "client"):
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", csr,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "1", "-copy_extensions", "copy", "-out", cert,
        )  # fmt: skip
        files[f"{name}_key"], files[f"{name}_cert"] = key, cert
    return files


@contextmanager
def redis_tls(
    workdir: Path, username: str = "warmer", password: str = "tls-s3cret"
) -> Iterator[Tls]:
    """A redis-server on a TLS port (its plain port serves only the start-up check)."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = _certificates(workdir)
    port = free_port()
    with throwaway_redis(
        directory=workdir,
        extra=[
            "--tls-port", str(port),
            "--tls-cert-file", str(files["server_cert"]),
            "--tls-key-file", str(files["server_key"]),
            "--tls-ca-cert-file", str(files["ca"]),
            "--tls-auth-clients", "yes",
            "--user", username, "on", f">{password}", "~*", "&*", "+@all",
        ],
    ):  # fmt: skip
        yield Tls(port, files["ca"], files["client_cert"], files["client_key"], username, password)
