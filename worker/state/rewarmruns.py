"""Fan-out re-warms under way: what lets the last of a run's tasks finish it, with no chord.

A fan-out re-warm (``warmer.rewarm``) sends its tasks as its planner walks the store, so that
neither the planner nor the broker's chord holds a list of every repository (a million links
over 100,000 repositories). What a chord did, counting its tasks and summing their results, is
kept here instead, one hash a run, ``warmer:rewarm:<run>`` (this module spells the family; the
run's id is the token of the re-warm lock it holds):

    started        when the planner began (unix time)
    tasks          tasks sent so far
    planned        "1" once the planner sent its last task (``tasks`` is then the whole)
    done           tasks that ran to their end, each counted once
    task:<index>   "1": task ``index`` is counted (a retried or redelivered task is not again)
    repositories, blobs, manifests, hits, misses, errors, skipped, s3_requests: summed
    failed_tasks   tasks that failed for good (counted done, with no other figure)
    summarized     the id of the summary task that took the totals (so only it writes them)

The run's id is its planner's task id, so that a planner retried or redelivered resumes its own
run (its tasks sent again count once). The run is complete when it is planned and ``done``
equals ``tasks``; whoever sees it so (the planner's last word, a task's end or failure) sends
the summary task, and the summary task that claims ``summarized`` writes the summary and lets
the lock go: once, whoever sent it; a try of that same task (a retry after it failed half-way)
may claim it again. The hash
grows with the tasks (one field each, a few thousand for ten million links) and expires a day
after its last write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import redis

from worker.state.redisio import state_call, text

__all__ = ["FIGURES", "PLANNED", "RUN_TTL", "SUMMARIZED", "TO_PLAN", "RewarmRuns"]

_PREFIX: Final = "warmer:rewarm:"
#: Seconds a run's record outlives its last write.
RUN_TTL: Final = 86_400
#: What :meth:`RewarmRuns.start` finds: a run to plan (new, or its planner stopped half-way),
#: one planned already (its tasks all sent), one summarized (over).
TO_PLAN: Final = 0
PLANNED: Final = 1
SUMMARIZED: Final = 2
#: The summed figures: a re-warm summary's counts (its ``seconds`` is the run's wall clock).
FIGURES: Final = (
    "repositories",
    "blobs",
    "manifests",
    "hits",
    "misses",
    "errors",
    "skipped",
    "s3_requests",
    "failed_tasks",
)

# A task's figures count once (its marker field), and the answer says whether the run is
# complete now: planned, and every task sent done.
_DONE_LUA: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 1 then
  for i = 3, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('HINCRBY', KEYS[1], 'done', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'planned', 'tasks', 'done')
return (v[1] == '1' and tonumber(v[2] or '0') == tonumber(v[3] or '0')) and 1 or 0
"""

# A new run's record, or where a resumed one stands: 0 to plan, 1 planned already, 2 summarized.
_START_LUA: Final = """
if redis.call('HEXISTS', KEYS[1], 'summarized') == 1 then
  return 2
end
if redis.call('HGET', KEYS[1], 'planned') == '1' then
  return 1
end
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
redis.call('HSETNX', KEYS[1], 'tasks', 0)
redis.call('HSETNX', KEYS[1], 'done', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 0
"""

# Progress only: never below what a (resumed) planner counted before, nor once planned.
_SENT_LUA: Final = """
if redis.call('HGET', KEYS[1], 'planned') ~= '1'
   and tonumber(redis.call('HGET', KEYS[1], 'tasks') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'tasks', ARGV[1])
end
"""

_PLANNED_LUA: Final = """
redis.call('HSET', KEYS[1], 'planned', '1', 'tasks', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'done') or '0') == tonumber(ARGV[1]) and 1 or 0
"""

_CLAIM_LUA: Final = """
local v = redis.call('HMGET', KEYS[1], 'planned', 'tasks', 'done')
if v[1] ~= '1' or tonumber(v[2] or '0') ~= tonumber(v[3] or '0') then
  return nil
end
if redis.call('HSETNX', KEYS[1], 'summarized', ARGV[2]) == 0
   and redis.call('HGET', KEYS[1], 'summarized') ~= ARGV[2] then
  return nil
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


class RewarmRuns:
    """The records of fan-out re-warms, in the state Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._done = client.register_script(_DONE_LUA)
        self._start = client.register_script(_START_LUA)
        self._sent = client.register_script(_SENT_LUA)
        self._planned = client.register_script(_PLANNED_LUA)
        self._claim = client.register_script(_CLAIM_LUA)

    def start(self, run: str, now: float) -> int:
        """The planner of ``run`` begins (before it sends any task), or begins again: a retry
        or a redelivery of it. :data:`TO_PLAN`, or :data:`PLANNED` (its tasks were all sent:
        nothing to send again), or :data:`SUMMARIZED` (the run is over)."""
        return int(state_call(self._start, [_PREFIX + run], [repr(now), RUN_TTL]))

    def sent(self, run: str, count: int) -> None:
        """The planner of ``run`` sent ``count`` tasks so far (progress only: :meth:`planned`
        counts)."""
        if count:
            state_call(self._sent, [_PREFIX + run], [count])

    def planned(self, run: str, tasks: int) -> bool:
        """The planner of ``run`` sent its last task, ``tasks`` in all; True when the run is
        complete already (its tasks all ran before this word: the caller sends the summary)."""
        return bool(state_call(self._planned, [_PREFIX + run], [tasks, RUN_TTL]))

    def done(self, run: str, index: int, figures: Mapping[str, int | float]) -> bool:
        """Task ``index`` of ``run`` ran to its end with ``figures`` (counted once, whatever
        the tries); True when the run is complete now (the caller sends the summary)."""
        args: list[str | int] = [f"task:{index}", RUN_TTL]
        for name in FIGURES:
            value = int(figures.get(name, 0))
            if value:
                args += [name, value]
        return bool(state_call(self._done, [_PREFIX + run], args))

    def failed(self, run: str, index: int) -> bool:
        """Task ``index`` of ``run`` failed for good: counted done, as one of ``failed_tasks``
        (unless it was counted already); True when the run is complete now."""
        return self.done(run, index, {"failed_tasks": 1})

    def claim_summary(self, run: str, claimer: str) -> dict[str, Any] | None:
        """The totals of a complete ``run`` (as :meth:`progress`), to the first ``claimer``
        only, and to its own tries again (it may have failed after claiming them): None when
        not complete, or claimed by another (so one summary is written, however many summary
        tasks were sent)."""
        raw = state_call(self._claim, [_PREFIX + run], [RUN_TTL, claimer])
        if raw is None:
            return None
        return self._totals(raw)

    def progress(self, run: str) -> dict[str, Any] | None:
        """Where ``run`` stands: started, tasks sent and done, whether planned, the figures
        summed so far (None: no such run, or expired)."""
        raw = state_call(self._redis.hgetall, _PREFIX + run)
        if not raw:
            return None
        return self._totals([x for pair in raw.items() for x in pair])

    @staticmethod
    def _totals(flat: list[Any]) -> dict[str, Any]:
        fields = {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
        view: dict[str, Any] = {name: int(fields.get(name, 0)) for name in FIGURES}
        view["tasks"] = int(fields.get("tasks", 0))
        view["done"] = int(fields.get("done", 0))
        view["planned"] = fields.get("planned") == "1"
        view["started"] = float(fields.get("started", 0))
        return view
