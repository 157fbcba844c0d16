"""Run a seeded exchange session through `ExchangeCore` and print its fingerprint.

    python tests/digest_child.py SEED COMMANDS [START_NS]

Prints the order book, clearing and core implementations in use, the core's state digest and a
hash of every event, one per line. Command n is applied at `START_NS` (default 0) plus n ms; the
workload's OCOP instrument is listed only on a clock near today. `tests/test_book_twins.py` runs
it with each book (`HOGX_PURE_PYTHON_BOOK`), `tests/test_clearing_twins.py` with each clearing
(`HOGX_PURE_PYTHON_CLEARING`) and `tests/test_core_twins.py` with each core
(`HOGX_PURE_PYTHON_CORE`), and each requires the same fingerprint: a journal replays to the same
state on either.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `benchmarks`

from benchmarks.workload import INSTRUMENTS, MarketWorkload
from clearing.implementation import CLEARING_IMPLEMENTATION
from exchange import commands as c
from exchange.core import CORE_IMPLEMENTATION, ExchangeCore
from exchange.sessions import Session
from matching_engine import BOOK_IMPLEMENTATION

# Every few hundred commands the markets go through a closing call and its auction, then a
# pre-open call and the opening auction, so call phases and uncrosses are in the session too.
CYCLE = 400
PHASES = ((100, Session.CLOSING), (180, Session.AUCTION), (200, Session.PRE_OPEN))


def main(seed: int, commands: int, start_ns: int = 0) -> None:
    core = ExchangeCore()
    workload = MarketWorkload(seed, traders=8)
    events_hash = hashlib.sha256()
    sequence = 0

    def apply(command: c.Command) -> None:
        nonlocal sequence
        sequence += 1
        events = core.apply(command, sequence, start_ns + sequence * 1_000_000)
        workload.observe(events)
        events_hash.update(msgspec.msgpack.encode(events))

    for command in workload.setup():
        apply(command)
    for i in range(commands):
        for offset, session in PHASES:
            if i % CYCLE == offset:
                for instrument in INSTRUMENTS:
                    apply(c.AdvanceSession(instrument.symbol, session))
        if i % CYCLE == 300:  # the opening auction, on to continuous trading
            for instrument in INSTRUMENTS:
                apply(c.AdvanceSession(instrument.symbol, Session.CONTINUOUS))
        apply(workload.next_command())
    print(BOOK_IMPLEMENTATION)
    print(CLEARING_IMPLEMENTATION)
    print(CORE_IMPLEMENTATION)
    print(core.digest())
    print(events_hash.hexdigest())


def fingerprint(
    seed: int, commands: int, *, pure_python_env: str, pure_python: bool, start_ns: int = 0
) -> list[str]:
    """This script's output, run in a child process with `pure_python_env` set to 1 or unset:
    [book, clearing and core implementations, core digest, events hash]."""
    env = {k: v for k, v in os.environ.items() if k != pure_python_env}
    if pure_python:
        env[pure_python_env] = "1"
    result = subprocess.run(
        [sys.executable, __file__, str(seed), str(commands), str(start_ns)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.split()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:4]))
