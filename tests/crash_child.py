"""A trading session to be killed: the child process of the crash tests in `test_recovery.py`.

    python tests/crash_child.py DATA_DIR SEED SNAPSHOT_EVERY TASKS MAX_SECONDS [NATS_URL SHARD]

Starts an `Exchange` (fsync on) in DATA_DIR, runs the seeded workload's setup, then submits
orders from TASKS concurrent asyncio tasks. For every acknowledged command it prints one JSON
line and flushes, so the parent knows exactly what the exchange promised before it was killed:

    {"s": sequence, "t": time_ns, "c": sha256(journal payload), "e": sha256(events)}

The session ends by itself after MAX_SECONDS, so a parent that forgets it leaves no orphan.
With NATS_URL and SHARD the journal is that shard's JetStream stream (the exchange waits to
lead the shard first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `benchmarks`

from benchmarks.workload import MarketWorkload
from exchange.cluster import ClusterConfig
from exchange.commands import encode_command
from exchange.sequencer import CommandResult, Exchange


def fingerprint(result: CommandResult) -> str:
    """One line saying what was acknowledged: comparable with a replay of the journal."""
    return json.dumps(
        {
            "s": result.sequence,
            "t": result.time_ns,
            "c": hashlib.sha256(encode_command(result.command)).hexdigest(),
            "e": hashlib.sha256(msgspec.msgpack.encode(result.events)).hexdigest(),
        }
    )


def acknowledge(result: CommandResult) -> None:
    sys.stdout.write(fingerprint(result) + "\n")
    sys.stdout.flush()


async def session(
    data_dir: Path,
    seed: int,
    snapshot_every: int,
    tasks: int,
    seconds: float,
    cluster: ClusterConfig | None = None,
) -> None:
    exchange = Exchange(data_dir, fsync=True, snapshot_every=snapshot_every, cluster=cluster)
    await exchange.start()
    await asyncio.wait_for(exchange.leading.wait(), timeout=30)
    workload = MarketWorkload(seed)
    for command in workload.setup():
        result = await exchange.submit(command)
        workload.observe(result.events)
        acknowledge(result)
    deadline = time.monotonic() + seconds

    async def trader() -> None:
        while time.monotonic() < deadline:
            result = await exchange.submit(workload.next_command())
            workload.observe(result.events)
            acknowledge(result)

    await asyncio.gather(*(trader() for _ in range(tasks)))
    await exchange.stop()


def main(argv: list[str]) -> int:
    data_dir, seed, snapshot_every, tasks, seconds = argv[:5]
    cluster = ClusterConfig(argv[5], argv[6]) if len(argv) == 7 else None
    asyncio.run(
        session(Path(data_dir), int(seed), int(snapshot_every), int(tasks), float(seconds), cluster)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
