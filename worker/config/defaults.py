"""The defaults of the settings that code below the settings takes as arguments too.

:class:`~worker.config.settings.Settings` gives them to its fields, and the classes that take
the value (the state store, the receiver's pull counter) default to the same constants: one
spelling each, so what a test or a script builds without settings behaves as a deployment does.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEADLETTER_MAX", "DEDUP_TTL", "PULL_FLUSH_INTERVAL"]

#: Seconds an event id is remembered (``WARMER_DEDUP_TTL``): a registry resends within seconds,
#: and a duplicate after that is harmless (every write is idempotent); memory is ids x this window.
DEDUP_TTL: Final = 600
#: Dead letters kept at most (``WARMER_DEADLETTER_MAX``); the oldest are dropped (and counted)
#: beyond.
DEADLETTER_MAX: Final = 10_000
#: Seconds between the receiver's writes of the pulls it added up
#: (``WARMER_PULL_FLUSH_INTERVAL``): a few a second.
PULL_FLUSH_INTERVAL: Final = 0.25
