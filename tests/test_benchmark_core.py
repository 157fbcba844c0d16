"""`python -m benchmarks.core` runs end to end on a small seeded stream: every mode measures,
every replay agrees with the others on the digest (the benchmark asserts it), and the machine
reference is printed beside the figures. The figures themselves are never asserted: they are
the machine's, and timing belongs in the benchmark, not the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_core_benchmark_measures_every_mode_and_its_replays_agree(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "benchmarks.core", "--commands", "1000", "--tasks", "10"]
    finished = subprocess.run(
        [*command, "--runs", "1", "--json"],
        cwd=tmp_path,  # its data directories are made in the working directory
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    figures = json.loads(finished.stdout)
    assert figures["commands"] == 1000
    for key in (
        "commands_per_second",
        "core_path_commands_per_second",
        "sequencer_floor_commands_per_second",
        "replay_records_per_second",
        "replay_core_only_records_per_second",
    ):
        assert figures[key] > 0, key
    assert set(figures["replay_parts_records_per_second"]) == {"open_check", "read_decode", "apply"}
    before, after = figures["machine_reference_million_loops_per_second"]
    assert before > 0 and after > 0
    assert list(tmp_path.iterdir()) == []  # every data directory it made is gone
