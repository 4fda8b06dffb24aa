"""The state Redis's Lua scripts: each runs its commands atomically, in one round trip. Keys
are passed in as KEYS, spelled by :mod:`worker.state.store`."""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIT_LUA", "OLDEST_LUA", "REFRESH_LUA", "RELEASE_LUA", "SEEN_LUA", "UNTRACK_LUA"]

# Compare-and-set on a lock's token: only its holder refreshes or releases it.
REFRESH_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The receiver's round trip before it publishes a batch: each event not seen before is tracked
# in the ledger (an id twice in the batch, once). Nothing is marked seen here: that waits for
# the broker (SEEN_LUA), so a resend that arrives while a publish is under way, which may fail,
# is published too (a duplicate, harmless) rather than taken for done. KEYS: pending, pending
# since, then each event's seen key; ARGV: the due time, now, then each event's ledger member.
# Returns the (1-based) positions of the fresh events.
ADMIT_LUA: Final = """
local fresh, taken = {}, {}
for i = 3, #KEYS do
  if not taken[KEYS[i]] and redis.call('EXISTS', KEYS[i]) == 0 then
    taken[KEYS[i]] = true
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[i])
    fresh[#fresh + 1] = i - 2
  end
end
return fresh
"""

# Events the broker took: marked seen, each for ARGV[1] seconds. KEYS: their seen keys.
SEEN_LUA: Final = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], 1, 'EX', ARGV[1])
end
return #KEYS
"""

# A task's release: its messages leave the ledger and its figures are added, atomically, in one
# command (a transaction of HINCRBYs costs the client a command each). KEYS: pending, deliveries,
# waiting, pending since, then each figures hash; ARGV: the members' count, the members, then
# per hash its fields' count and field, increment pairs. Members go 1000 a command (Lua's
# unpack limit).
UNTRACK_LUA: Final = """
local n = tonumber(ARGV[1])
for i = 2, n + 1, 1000 do
  local last = math.min(i + 999, n + 1)
  redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
  redis.call('SREM', KEYS[3], unpack(ARGV, i, last))
  redis.call('ZREM', KEYS[4], unpack(ARGV, i, last))
end
local a = n + 2
for k = 5, #KEYS do
  local fields = tonumber(ARGV[a])
  for j = 1, fields do
    redis.call('HINCRBY', KEYS[k], ARGV[a + 2 * j - 1], ARGV[a + 2 * j])
  end
  a = a + 1 + 2 * fields
end
return 1
"""

# When the oldest event still in the ledger was accepted, healing as it reads: a pending-since
# entry whose message is not pending (left by a crash between two writes of an older release,
# or by a write lost with a failover) is removed, up to ARGV[1] of them a call, so its age does
# not grow for ever. KEYS: pending since, pending. Returns the score, or nil when none waits.
OLDEST_LUA: Final = """
for i = 1, tonumber(ARGV[1]) do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest == 0 then return false end
  if redis.call('ZSCORE', KEYS[2], oldest[1]) then return oldest[2] end
  redis.call('ZREM', KEYS[1], oldest[1])
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return oldest[2] or false
"""
