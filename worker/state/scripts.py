"""The state Redis's Lua scripts: each runs its commands atomically, in one round trip. Keys
are passed in as KEYS, spelled by :mod:`worker.state.store`."""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIT_LUA", "REFRESH_LUA", "RELEASE_LUA", "UNTRACK_LUA"]

# Compare-and-set on a lock's token: only its holder refreshes or releases it.
REFRESH_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The receiver's one round trip a batch: each event not seen before is marked seen and tracked
# in the ledger, atomically (a crash between the two would leave an event seen but never sent).
# KEYS: pending, then each event's seen key; ARGV: the seen keys' TTL, the due time, then each
# event's ledger member. Returns the (1-based) positions of the events seen for the first time;
# an id twice in one batch is fresh once.
ADMIT_LUA: Final = """
local fresh = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], 1, 'NX', 'EX', ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i + 1])
    fresh[#fresh + 1] = i - 1
  end
end
return fresh
"""

# A task's release: its messages leave the ledger and its figures are added, atomically, in one
# command (a transaction of HINCRBYs costs the client a command each). KEYS: pending, deliveries,
# waiting, then each figures hash; ARGV: the members' count, the members, then per hash its
# fields' count and field, increment pairs. Members go 1000 a command (Lua's unpack limit).
UNTRACK_LUA: Final = """
local n = tonumber(ARGV[1])
for i = 2, n + 1, 1000 do
  local last = math.min(i + 999, n + 1)
  redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
  redis.call('SREM', KEYS[3], unpack(ARGV, i, last))
end
local a = n + 2
for k = 4, #KEYS do
  local fields = tonumber(ARGV[a])
  for j = 1, fields do
    redis.call('HINCRBY', KEYS[k], ARGV[a + 2 * j - 1], ARGV[a + 2 * j])
  end
  a = a + 1 + 2 * fields
end
return 1
"""
