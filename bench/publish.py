"""Benchmark: the CPU one publish of a batch costs the receiver, as the warmer sends it and as
Celery's defaults would.

    python bench/publish.py [--batch 20] [--publishes 1000]

Starts its own redis-server (the broker) and publishes ``--publishes`` ``warmer.events`` tasks
of ``--batch`` blob pushes each (nothing consumes them), in rounds alternating:

- Celery's defaults: ``send_task`` with a task-sent event and Celery's own repr of the
  arguments (what the receiver did until lever 9 of BENCHMARKS.md);
- the warmer's publish (``WarmerContext.publish``): no task-sent event, a short repr.

CPU time of this process per publish (``time.process_time``): kombu's and Celery's work, the
Redis client's packing and parsing; the broker's own CPU is not in it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway import warmer_settings  # noqa: E402
from worker.celeryapp.factory import PUBLISH_RETRY, create_app  # noqa: E402
from worker.celeryapp.names import EVENTS_TASK  # noqa: E402
from worker.cli.processes import throwaway_redis  # noqa: E402


def _cpu_per_call(call: Callable[[], object], count: int) -> float:
    for _ in range(count // 10):  # connections, pools, caches: made before the measure
        call()
    started = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--publishes", type=int, default=1000)
    args = parser.parse_args()
    with throwaway_redis() as port:
        app = create_app(warmer_settings(port, ROOT))
        batch = [
            [f"event-{i}", "warm-blob", f"app{i % 10}", f"sha256:{i:064x}"]
            for i in range(args.batch)
        ]

        def celery_defaults() -> object:
            app.conf.task_send_sent_event = True
            try:
                return app.send_task(
                    EVENTS_TASK, args=[batch], retry=True, retry_policy=PUBLISH_RETRY
                )
            finally:
                app.conf.task_send_sent_event = False

        def warmer() -> object:
            app.context.publish(batch)
            return None

        print(f"one publish of {args.batch} events, CPU of the publishing process:")
        for round_ in (1, 2, 3):
            before = _cpu_per_call(celery_defaults, args.publishes)
            after = _cpu_per_call(warmer, args.publishes)
            print(
                f"  round {round_}: Celery's defaults {before * 1e3:.3f} ms, the warmer's "
                f"{after * 1e3:.3f} ms ({after / before:.2f}x)"
            )
        app.close()


if __name__ == "__main__":
    main()
