"""The registry's own ``config.yml``: the lines that connect a registry to the warmer.

One function spells them (:func:`registry_config`): ``warmer up`` prints them for a user to
paste, and the demo and the end-to-end tests start real registries with them.
"""

from __future__ import annotations

import os

__all__ = ["registry_config"]


def registry_config(
    *,
    root: str | os.PathLike[str],
    redis_addr: str,
    redis_db: int,
    notify_url: str | None = None,
    token: str | None = None,
    delete: bool = False,
) -> str:
    """The ``storage``, ``redis`` and (with ``notify_url``) ``notifications`` sections, as YAML.

    ``token`` is the warmer's ``WARMER_WEBHOOK_TOKEN``, sent as ``Authorization: Bearer``.
    """
    lines = [
        "storage:",
        "  cache:",
        "    blobdescriptor: redis",
        "  filesystem:",
        f"    rootdirectory: {os.fspath(root)}",
    ]
    if delete:
        lines += ["  delete:", "    enabled: true"]
    lines += ["redis:", f"  addr: {redis_addr}", f"  db: {redis_db}"]
    if notify_url is not None:
        lines += [
            "notifications:",
            "  endpoints:",
            "    - name: warmer",
            f"      url: {notify_url}",
            "      headers:",
            f"        Authorization: [Bearer {token or 'CHANGE-ME'}]",
            "      timeout: 2s",
            "      threshold: 5",
            "      backoff: 1s",
        ]
    return "\n".join(lines)
