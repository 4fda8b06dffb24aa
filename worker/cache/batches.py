"""How a batch reaches Redis: two Lua scripts on one server, or pipelines on a Cluster.

Both run the same protocol, so the cache does not know which it has. Per blob they send exactly
the commands the registry sends; :mod:`worker.cache.keys` spells the keys, passed in as KEYS.

Read. KEYS: [membership if scoped], then per digest ``blobs::<d>`` [, repository hash if
override]. ARGV: scoped, override, the five global fields, then the digests. Returns per digest:
0 when it is not a member (a miss, whatever the hashes hold), else 1, the five global fields
and the repository media type.

Write. KEYS as for the read. ARGV: scoped, descriptor fields?, layerinfo fields?, then per blob:
digest, size, media type, driver path, write the global hash? ("0" when the caller wrote it
already). HSETNX: the first global media type stays.

A call covers one repository (its membership set is KEYS[1]); a batch of several repositories
is one call each, all in one round trip: the EVALSHAs in one pipeline, or one Cluster pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol, TypeAlias

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from worker.cache.keys import MEDIATYPE

__all__ = ["Batches", "Call", "PipelineBatches", "ScriptBatches", "execute_replicated"]

#: How long a write waits for a replica to confirm it (milliseconds).
REPLICA_WAIT_MS: Final = 1000

# On one server a batch is one script each way: Python's per-command cost in a pipeline (about
# 5 us) would otherwise dominate a walk of millions of links. Membership goes in SADDs of up to
# 1000 members (Lua's unpack has a stack limit).
_READ_LUA: Final = """
local scoped, override = ARGV[1] == '1', ARGV[2] == '1'
local out, k = {}, scoped and 2 or 1
for i = 8, #ARGV do
  if scoped and redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    local values = redis.call('HMGET', KEYS[k], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
    for j = 1, 5 do out[#out + 1] = values[j] end
    out[#out + 1] = override and redis.call('HGET', KEYS[k + 1], 'mediatype') or false
  end
  k = k + (override and 2 or 1)
end
return out
"""

_WRITE_LUA: Final = """
local scoped, desc, layerinfo = ARGV[1] == '1', ARGV[2] == '1', ARGV[3] == '1'
local k, members = scoped and 2 or 1, {}
for i = 4, #ARGV, 5 do
  local d, size, mediatype, path = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local global = ARGV[i + 4] == '1'
  if desc and global then
    redis.call('HSET', KEYS[k], 'digest', d, 'size', size)
    redis.call('HSETNX', KEYS[k], 'mediatype', mediatype)
  end
  if layerinfo and global then redis.call('HSET', KEYS[k], 'path', path, 'length', size) end
  if scoped then
    if desc then redis.call('HSET', KEYS[k + 1], 'mediatype', mediatype) end
    members[#members + 1] = d
    if #members == 1000 then
      redis.call('SADD', KEYS[1], unpack(members))
      members = {}
    end
  end
  k = k + ((scoped and desc) and 2 or 1)
end
if #members > 0 then redis.call('SADD', KEYS[1], unpack(members)) end
return 1
"""


#: One script call of a batch: its KEYS and its ARGV.
Call: TypeAlias = tuple[Sequence[str], Sequence[Any]]


class Batches(Protocol):
    """Runs the read and the write protocol above, several calls (one per repository) in one
    round trip; raises redis.RedisError."""

    def read(self, calls: Sequence[Call]) -> list[list[Any]]:
        """One read of each call, in one round trip: the replies, in order."""
        ...

    def write(self, calls: Sequence[Call]) -> None:
        """One write of each call, in one round trip."""
        ...


def execute_replicated(
    pipe: Any, replicas: int, still_master: Callable[[], bool] | None = None
) -> list[Any]:
    """Run a pipeline of writes; with ``replicas``, only once that many replicas have them, or
    the master is known to stand.

    Behind a Sentinel a master that was just replaced still takes writes until the Sentinel
    turns it into a replica, which drops them. ``WAIT`` on the same connection tells: the old
    master has no replica left. Its replica may also merely be away (restarting): then the
    Sentinels still name this master (``still_master``), and the write stands. Otherwise it is
    refused here and tried again on the new master.
    """
    if replicas:
        pipe.execute_command("WAIT", replicas, REPLICA_WAIT_MS)
    replies: list[Any] = pipe.execute()
    if replicas and int(replies[-1]) < replicas:
        if still_master is not None and still_master():
            return replies
        raise redis.RedisError(
            f"no replica confirmed the write within {REPLICA_WAIT_MS} ms, and the Sentinels "
            "name another master now (a failover): the write is tried again"
        )
    return replies


class ScriptBatches:
    """One server: each call is one EVALSHA, a batch's calls one pipeline (one round trip).

    ``replicas``: how many replicas must confirm a write (behind a Sentinel: one).
    """

    def __init__(
        self,
        client: redis.Redis,
        replicas: int = 0,
        still_master: Callable[[], bool] | None = None,
    ) -> None:
        self._redis = client
        self._replicas = replicas
        self._still_master = still_master
        self._read = client.register_script(_READ_LUA)
        self._write = client.register_script(_WRITE_LUA)

    def read(self, calls: Sequence[Call]) -> list[list[Any]]:
        replies: list[list[Any]] = self._evalsha(self._read, calls, 0)
        return replies

    def write(self, calls: Sequence[Call]) -> None:
        self._evalsha(self._write, calls, self._replicas)

    def _evalsha(self, script: Script, calls: Sequence[Call], replicas: int) -> list[Any]:
        # EVALSHA straight into the pipeline: redis-py's own scripts in a pipeline first ask
        # SCRIPT EXISTS, a second round trip. A server that lost the script (a restart, SCRIPT
        # FLUSH) answers NOSCRIPT: load it and send the batch again (every call is idempotent).
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                replies = execute_replicated(pipe, replicas, self._still_master)
            except NoScriptError:
                if attempt == 2:
                    raise
                script.sha = self._redis.script_load(script.script)
                continue
            return replies[: len(calls)]
        raise AssertionError("unreachable")


class PipelineBatches:
    """A Redis Cluster: a batch's keys live in many hash slots, so no script can hold them.

    Each batch is one pipeline, which the Cluster client splits by node and sends to all nodes
    at once: one round trip per node, in parallel. The reply is the read script's, so the cache
    cannot tell the difference.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def read(self, calls: Sequence[Call]) -> list[list[Any]]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            _queue_read(pipe, keys, args)
        replies = iter(pipe.execute())
        return [_read_reply(replies, args) for _, args in calls]

    def write(self, calls: Sequence[Call]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            _queue_write(pipe, keys, args)
        pipe.execute()


def _queue_read(pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
    scoped, override = args[0] == 1, args[1] == 1
    fields = list(args[2:7])
    k = 1 if scoped else 0
    for d in args[7:]:
        if scoped:
            pipe.sismember(keys[0], d)
        pipe.hmget(keys[k], fields)
        if override:
            pipe.hget(keys[k + 1], MEDIATYPE)
        k += 2 if override else 1


def _read_reply(replies: Iterator[Any], args: Sequence[Any]) -> list[Any]:
    # The read script's reply, from the pipeline's replies to what _queue_read queued.
    scoped, override = args[0] == 1, args[1] == 1
    out: list[Any] = []
    for _ in args[7:]:
        member = next(replies) if scoped else 1
        values = next(replies)
        repository_type = next(replies) if override else None
        if not member:
            out.append(0)
            continue
        out += [1, *values, repository_type]
    return out


def _queue_write(pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
    scoped, desc, layerinfo = args[0] == 1, args[1] == 1, args[2] == 1
    k = 1 if scoped else 0
    members: list[str] = []
    for i in range(3, len(args), 5):
        d, size, mediatype, path, global_ = args[i : i + 5]
        if desc and global_ == 1:
            pipe.hset(keys[k], mapping={"digest": d, "size": size})
            pipe.hsetnx(keys[k], MEDIATYPE, mediatype)
        if layerinfo and global_ == 1:
            pipe.hset(keys[k], mapping={"path": path, "length": size})
        if scoped:
            if desc:
                pipe.hset(keys[k + 1], MEDIATYPE, mediatype)
            members.append(d)
        k += 2 if scoped and desc else 1
    if members:
        pipe.sadd(keys[0], *members)
