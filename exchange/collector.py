"""How hogx's processes use CPython's garbage collector.

An exchange process is mostly long-lived state (orders, holds, books, projections) that makes
almost no reference cycles, plus a stream of short-lived objects per command (futures, tasks,
events, results). With CPython's default thresholds (a young collection every 700 new
containers) the collector runs every few dozen commands and keeps promoting and re-walking
survivors, and its full collections grow with the heap. Measured on the running core
(`benchmarks.core`, 60,000 commands, 1,000 submitters, interleaved runs on 2026-12-06):

    thresholds        durable commands/s (median)   longest pause per generation (ms)
    (700, 10, 10)     15,761                        young 5-12, middle 8-204, full 89-417
    (10_000, 10, 10)  20,767                        young 10-22, middle 53-71, no full
    (50_000, 20, 20)  20,631                        young 39-46 (middle and full would be
                                                     larger still, with 20 times more in them)

So 10,000 young containers: the throughput of the larger settings, and pauses bounded by
a middle generation of at most about 100,000 objects. Cycles are still collected, less often.

Replay is different: it only builds state that lives on (orders, holds, fills, projections)
and throws away the records and events it passes, none of them in a cycle (replaying 200,103
records leaves no cyclic garbage at all; `tests/test_collector.py` holds replay to that). Every
collection during a replay walks a heap that only grows, to find nothing. So a replay pauses the
collector (`paused`). On 2026-12-07, replaying 200,103 records from scratch as start-up does
(five alternating runs each, medians): 59,500 records/s collecting seldom, 63,600 paused.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Young collections every 10,000 new containers; older generations as by default, relative
# to it.
THRESHOLDS = (10_000, 10, 10)


def collect_seldom() -> None:
    """For a process that runs the exchange, a replay or the ledger: set at its start."""
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def collecting_seldom() -> Iterator[None]:
    """`collect_seldom` for a while, then the thresholds as they were (for code that may run
    inside another program: a test, a benchmark)."""
    previous = gc.get_threshold()
    collect_seldom()
    try:
        yield
    finally:
        gc.set_threshold(*previous)


# The collector is one switch for the whole process, and pauses may overlap (the ledger
# process replays on a planner thread while its writer runs): the first pause turns it off,
# the last one to end turns it back on if it was on before the first.
_pause_lock = threading.Lock()
_pauses = 0
_enabled_before_pauses = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collections for a while (a replay: it leaves no cyclic garbage), then as
    before."""
    global _pauses, _enabled_before_pauses
    with _pause_lock:
        if _pauses == 0:
            _enabled_before_pauses = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _enabled_before_pauses:
                gc.enable()


def keep_for_good() -> None:
    """What start-up built lives as long as the process: move it out of every collection.

    Call it with the collector still paused since the replay (as the embedded server's start-up
    does, api/app.py): then this one full collection is the only walk of the replayed state,
    which a replay leaves in the young generation."""
    gc.collect()
    gc.freeze()
