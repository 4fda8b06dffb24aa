"""The warmer's settings over one throwaway redis-server, as every benchmark runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.config.settings import Settings, load_settings

__all__ = ["warmer_settings"]


def warmer_settings(port: int, root: Path, **more: Any) -> Settings:
    """The cache in DB 0, the broker in DB 1, the state in DB 2 of the redis-server on
    ``port`` (a throwaway one, which never evicts: the check that the broker and the state
    have a server of their own is skipped), the store at ``root``; ``more`` as
    :func:`load_settings` takes it. For a child process, :meth:`Settings.environment` gives the
    same as variables."""
    base = f"redis://127.0.0.1:{port}"
    return load_settings(
        redis_url=f"{base}/0",
        broker_url=f"{base}/1",
        state_url=f"{base}/2",
        storage_root=root,
        skip_eviction_check=True,
        **more,
    )
