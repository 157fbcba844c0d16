"""How hogx uses the garbage collector (exchange/collector.py): the settings come back as they
were, and a replay, which runs with the collector paused, leaves no cyclic garbage behind."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.collector import THRESHOLDS, collecting_seldom, paused
from exchange.core import CoreState, ExchangeCore
from exchange.journal import Journal
from exchange.snapshots import Recovered, journal_dir
from tests.test_recovery import small_session


@pytest.fixture
def collector_as_found() -> Iterator[None]:
    """Whatever a test does to the collector, the next test finds it as this one did."""
    enabled, thresholds, debug = gc.isenabled(), gc.get_threshold(), gc.get_debug()
    yield
    gc.set_debug(debug)
    gc.garbage.clear()
    gc.set_threshold(*thresholds)
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_as_found")
def test_collecting_seldom_sets_the_thresholds_for_a_while_then_restores_them() -> None:
    gc.set_threshold(700, 10, 10)
    with collecting_seldom():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("collector_as_found")
@pytest.mark.parametrize("enabled_before", [True, False])
def test_paused_turns_the_collector_off_and_back_as_it_was(enabled_before: bool) -> None:
    (gc.enable if enabled_before else gc.disable)()
    with paused():
        assert not gc.isenabled()
    assert gc.isenabled() is enabled_before


@pytest.mark.usefixtures("collector_as_found")
def test_paused_restores_the_collector_when_the_work_fails() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), paused():
        raise RuntimeError("a replay that fails half-way")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_as_found")
def test_overlapping_pauses_turn_it_back_on_only_when_the_last_one_ends() -> None:
    gc.enable()
    first, second = paused(), paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # another thread's replay ends first: this one goes on
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_as_found")
def test_a_replay_pauses_the_collector_and_makes_no_cyclic_garbage(tmp_path: Path) -> None:
    """Why pausing is safe: the records, commands and events a replay passes are freed by
    reference counting alone. A change that makes cycles on the replay path fails here, with
    the objects it left behind, before it can grow a long replay's memory."""
    session = small_session(tmp_path, seed=7, orders=3_000)
    gc.enable()
    gc.collect()  # the session's own garbage (its event loop) is not the replay's
    gc.set_debug(gc.DEBUG_SAVEALL)  # from here on, what any collection finds is kept, to name it
    seen_enabled = []
    with Journal.open(journal_dir(tmp_path), fsync=False) as journal:
        recovered = Recovered()

        def records() -> Iterator[object]:
            for record in journal.read(1):
                seen_enabled.append(gc.isenabled())
                yield record

        applied = recovered.catch_up(records())  # type: ignore[arg-type]
    assert applied == session.last_sequence
    assert recovered.core.digest() == session.digest
    assert not any(seen_enabled), "the collector ran during the replay"
    assert gc.isenabled(), "the collector stayed off after the replay"

    gc.collect()
    left_behind = [type(thing).__name__ for thing in gc.garbage]
    assert left_behind == []


@pytest.mark.usefixtures("collector_as_found")
def test_loading_a_snapshot_pauses_the_collector_and_makes_no_cyclic_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = small_session(tmp_path, seed=8, orders=3_000, snapshot=True)
    # msgspec makes a few cycles once per process, the first time it decodes a type.
    Recovered.newest(tmp_path, session.last_sequence)
    gc.enable()
    gc.collect()  # that, and the state just dropped (a core's state has cycles of its own)
    gc.set_debug(gc.DEBUG_SAVEALL)
    enabled_while_loading = []
    real_from_state = ExchangeCore.from_state.__func__  # type: ignore[attr-defined]

    def from_state(cls: type[ExchangeCore], state: CoreState) -> ExchangeCore:
        enabled_while_loading.append(gc.isenabled())
        return real_from_state(cls, state)  # type: ignore[no-any-return]

    monkeypatch.setattr(ExchangeCore, "from_state", classmethod(from_state))
    recovered = Recovered.newest(tmp_path, session.last_sequence)
    assert recovered.snapshot_sequence == session.last_sequence, "no snapshot was loaded"
    assert enabled_while_loading == [False], "the collector ran while the snapshot loaded"
    assert recovered.core.digest() == session.digest
    assert gc.isenabled()
    gc.collect()
    assert [type(thing).__name__ for thing in gc.garbage] == []


def test_server_start_up_walks_what_it_replayed_once_then_freezes_it(tmp_path: Path) -> None:
    """The server (embedded: a cluster node's start waits on NATS, and is not paused) keeps the
    collector paused from its replay until `keep_for_good`, whose one full collection is then
    the only one start-up runs. Re-enabled at the replay's end, the
    collector would first walk everything the replay built (all of it still in the young
    generation) and then run young collections through the rest of start-up."""
    session = small_session(tmp_path, seed=9, orders=3_000, snapshot=False)
    assert session.last_sequence > 3_000
    child = Path(__file__).with_name("startup_collections_child.py")
    result = subprocess.run(
        [sys.executable, str(child), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    generations = json.loads(result.stdout.splitlines()[-1])
    assert generations == [2], f"collections while starting, by generation: {generations}"
