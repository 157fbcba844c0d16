"""Run a seeded exchange session through `ExchangeCore` and print its fingerprint.

    python tests/digest_child.py SEED COMMANDS

Prints the order book implementation in use, the core's state digest and a hash of every event,
one per line. `tests/test_book_twins.py` runs it with each book (`HOGX_PURE_PYTHON_BOOK`) and
requires the same fingerprint: a journal replays to the same state on either.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `benchmarks`

from benchmarks.workload import INSTRUMENTS, MarketWorkload
from exchange import commands as c
from exchange.core import ExchangeCore
from exchange.sessions import Session
from matching_engine import BOOK_IMPLEMENTATION

# Every few hundred commands the markets go through a closing call and its auction, then a
# pre-open call and the opening auction, so call phases and uncrosses are in the session too.
CYCLE = 400
PHASES = ((100, Session.CLOSING), (180, Session.AUCTION), (200, Session.PRE_OPEN))


def main(seed: int, commands: int) -> None:
    core = ExchangeCore()
    workload = MarketWorkload(seed, traders=8)
    events_hash = hashlib.sha256()
    sequence = 0

    def apply(command: c.Command) -> None:
        nonlocal sequence
        sequence += 1
        events = core.apply(command, sequence, sequence * 1_000_000)
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
    print(core.digest())
    print(events_hash.hexdigest())


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
