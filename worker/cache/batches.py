"""How a batch reaches Redis: two Lua scripts on one server, or pipelines on a Cluster.

Both run the same protocol, so the cache does not know which it has. Per blob they send exactly
the commands the registry sends; :mod:`worker.cache.keys` spells the keys, passed in as KEYS.

A batch holds one or more groups, each the digests of one repository (or of none: unscoped), so
that a task's pushes to many repositories are one command each way.

Read. KEYS: per group, [its membership set if scoped], then per digest ``blobs::<d>`` [, the
repository hash if override]. ARGV: scoped, override, the five global fields, then per group
the count of its digests and the digests. Returns per digest, in order: 0 when it is not a
member (a miss, whatever the hashes hold), else 1, the five global fields and the repository
media type.

Write. KEYS as for the read. ARGV: scoped, descriptor fields?, layerinfo fields?, then per
group the count of its blobs and per blob: digest, size, media type, driver path, write the
global hash? ("0" when the caller wrote it already). HSETNX: the first global media type stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol

import redis

from worker.cache.keys import MEDIATYPE

__all__ = ["Batches", "PipelineBatches", "ScriptBatches", "execute_replicated"]

#: How long a write waits for a replica to confirm it (milliseconds).
REPLICA_WAIT_MS: Final = 1000

# On one server a batch is one script each way: Python's per-command cost in a pipeline (about
# 5 us) would otherwise dominate a walk of millions of links, and a command per repository a
# task of many. Membership goes in SADDs of up to 1000 members (Lua's unpack has a stack limit).
_READ_LUA: Final = """
local scoped, override = ARGV[1] == '1', ARGV[2] == '1'
local out, k, i = {}, 1, 8
while i <= #ARGV do
  local set = k
  if scoped then k = k + 1 end
  local last = i + tonumber(ARGV[i])
  for j = i + 1, last do
    if scoped and redis.call('SISMEMBER', KEYS[set], ARGV[j]) == 0 then
      out[#out + 1] = 0
    else
      out[#out + 1] = 1
      local values = redis.call('HMGET', KEYS[k], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
      for f = 1, 5 do out[#out + 1] = values[f] end
      out[#out + 1] = override and redis.call('HGET', KEYS[k + 1], 'mediatype') or false
    end
    k = k + (override and 2 or 1)
  end
  i = last + 1
end
return out
"""

_WRITE_LUA: Final = """
local scoped, desc, layerinfo = ARGV[1] == '1', ARGV[2] == '1', ARGV[3] == '1'
local k, i = 1, 4
while i <= #ARGV do
  local set, members = k, {}
  if scoped then k = k + 1 end
  local last = i + 5 * tonumber(ARGV[i])
  for b = i + 1, last, 5 do
    local d, size, mediatype, path = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local global = ARGV[b + 4] == '1'
    if desc and global then
      redis.call('HSET', KEYS[k], 'digest', d, 'size', size)
      redis.call('HSETNX', KEYS[k], 'mediatype', mediatype)
    end
    if layerinfo and global then redis.call('HSET', KEYS[k], 'path', path, 'length', size) end
    if scoped then
      if desc then redis.call('HSET', KEYS[k + 1], 'mediatype', mediatype) end
      members[#members + 1] = d
      if #members == 1000 then
        redis.call('SADD', KEYS[set], unpack(members))
        members = {}
      end
    end
    k = k + ((scoped and desc) and 2 or 1)
  end
  if #members > 0 then redis.call('SADD', KEYS[set], unpack(members)) end
  i = last + 1
end
return 1
"""


class Batches(Protocol):
    """Runs the read and the write protocol above; raises redis.RedisError."""

    def read(self, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """One read of a batch."""
        ...

    def write(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        """One write of a batch."""
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
    """One server: each batch is one EVALSHA (redis-py loads the script when it is missing).

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

    def read(self, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        reply: list[Any] = self._read(keys, args)
        return reply

    def write(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        if not self._replicas:
            self._write(keys, args)
            return
        pipe = self._redis.pipeline(transaction=False)  # the WAIT must share its connection
        self._write(keys, args, client=pipe)
        execute_replicated(pipe, self._replicas, self._still_master)


class PipelineBatches:
    """A Redis Cluster: a batch's keys live in many hash slots, so no script can hold them.

    Each batch is one pipeline, which the Cluster client splits by node and sends to all nodes
    at once: one round trip per node, in parallel. The reply is the read script's, so the cache
    cannot tell the difference.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def read(self, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        scoped, override = args[0] == 1, args[1] == 1
        fields = list(args[2:7])
        pipe = self._redis.pipeline(transaction=False)
        per = 2 if override else 1
        groups = list(_groups(keys, args, start=7, width=1, scoped=scoped, per=per))
        for members, blobs in groups:
            for k, (d,) in blobs:
                if members is not None:
                    pipe.sismember(members, d)
                pipe.hmget(keys[k], fields)
                if override:
                    pipe.hget(keys[k + 1], MEDIATYPE)
        replies = iter(pipe.execute())
        out: list[Any] = []
        for members, blobs in groups:
            for _ in blobs:
                member = next(replies) if members is not None else 1
                values = next(replies)
                repository_type = next(replies) if override else None
                if not member:
                    out.append(0)
                    continue
                out += [1, *values, repository_type]
        return out

    def write(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        scoped, desc, layerinfo = args[0] == 1, args[1] == 1, args[2] == 1
        pipe = self._redis.pipeline(transaction=False)
        per = 2 if scoped and desc else 1
        for members, blobs in _groups(keys, args, start=3, width=5, scoped=scoped, per=per):
            digests: list[str] = []
            for k, (d, size, mediatype, path, global_) in blobs:
                if desc and global_ == 1:
                    pipe.hset(keys[k], mapping={"digest": d, "size": size})
                    pipe.hsetnx(keys[k], MEDIATYPE, mediatype)
                if layerinfo and global_ == 1:
                    pipe.hset(keys[k], mapping={"path": path, "length": size})
                if scoped and desc:
                    pipe.hset(keys[k + 1], MEDIATYPE, mediatype)
                digests.append(d)
            if members is not None and digests:
                pipe.sadd(members, *digests)
        pipe.execute()


def _groups(
    keys: Sequence[str], args: Sequence[Any], *, start: int, width: int, scoped: bool, per: int
) -> Iterator[tuple[str | None, list[tuple[int, Sequence[Any]]]]]:
    # The protocol's groups: each one's membership key (None unscoped), and per digest the
    # index of its first key and its ``width`` arguments. ``per``: keys per digest.
    k, i = 0, start
    while i < len(args):
        count = int(args[i])
        members = keys[k] if scoped else None
        k += 1 if scoped else 0
        blobs = []
        for b in range(i + 1, i + 1 + width * count, width):
            blobs.append((k, args[b : b + width]))
            k += per
        yield members, blobs
        i += 1 + width * count
