"""What makes a surveillance alert: the thresholds and the operator-declared participant links.

The config is part of the journal, not of the process: whenever the exchange starts with a
config different from the one in force, it journals a `configure_surveillance` command, and the
surveillance projection switches thresholds at that sequence. So replaying the journal (from
scratch or from a snapshot, in this process or in the snapshot writer) raises exactly the
alerts the live run raised, and a regulator sees in the journal when the thresholds changed.

Journaled means the schema rules of commands apply: never rename or remove a field, add new
ones at the end with a default. Percentages are integer basis points (1 bp = 0.01 %), times
whole seconds or minutes: no floats, so every process decides alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

MAX_LINK_GROUPS = 1_000
MAX_GROUP_SIZE = 100
MAX_BPS = 100_000
MAX_WINDOW_S = 86_400
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class SurveillanceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Thresholds of the alerts, with defaults for a live-hog and OCOP spot market."""

    # Groups of participant ids under one beneficial owner or acting together (declared by the
    # operator): a trade between two members of one group is a wash trade.
    linked_participants: tuple[tuple[int, ...], ...] = ()
    # Spoofing: an order of at least this many lots, cancelled unfilled by its owner within
    # the window, while the owner traded on the other side and the order was at least
    # `spoofing_size_ratio` times what the owner traded there meanwhile.
    spoofing_min_lots: int = 10
    spoofing_size_ratio: int = 4
    spoofing_window_s: int = 10
    # Marking the close: a trade in the last `close_window_minutes` before the close at
    # local time `close_time` (UTC + `utc_offset_minutes`; Vietnam is UTC+7 all year), more
    # than `close_move_bps` away from the last price before that window. A market with a
    # timetable uses its own: the minutes before continuous trading ends, and the closing call.
    close_time: str = "15:00"
    utc_offset_minutes: int = 420
    close_window_minutes: int = 10
    close_move_bps: int = 300
    # Unusual price move: a trade more than `price_move_bps` away from the lowest or highest
    # trade price of the last `price_move_window_s` seconds.
    price_move_bps: int = 500
    price_move_window_s: int = 1_800

    @property
    def close_minute_of_day(self) -> int:
        match = _CLOCK.fullmatch(self.close_time)
        assert match is not None, self.close_time
        return int(match.group(1)) * 60 + int(match.group(2))

    def problem(self) -> str | None:
        """What makes this config unusable, or None."""
        if not _CLOCK.fullmatch(self.close_time):
            return "close_time must be HH:MM (24-hour clock)"
        if not -720 <= self.utc_offset_minutes <= 840:
            return "utc_offset_minutes must be -720..840"
        bounded = {
            "spoofing_min_lots": (self.spoofing_min_lots, 10**9),
            "spoofing_size_ratio": (self.spoofing_size_ratio, 10**6),
            "spoofing_window_s": (self.spoofing_window_s, MAX_WINDOW_S),
            "close_window_minutes": (self.close_window_minutes, self.close_minute_of_day or 1),
            "close_move_bps": (self.close_move_bps, MAX_BPS),
            "price_move_bps": (self.price_move_bps, MAX_BPS),
            "price_move_window_s": (self.price_move_window_s, MAX_WINDOW_S),
        }
        for name, (value, most) in bounded.items():
            if not 1 <= value <= most:
                return f"{name} must be 1..{most}"
        return _links_problem(self.linked_participants)

    def group_of(self) -> dict[int, int]:
        """Participant id -> the index of its link group."""
        return {
            participant_id: index
            for index, group in enumerate(self.linked_participants)
            for participant_id in group
        }


def _links_problem(groups: tuple[tuple[int, ...], ...]) -> str | None:
    if len(groups) > MAX_LINK_GROUPS:
        return f"at most {MAX_LINK_GROUPS} groups of linked participants"
    seen: set[int] = set()
    for group in groups:
        if not 2 <= len(group) <= MAX_GROUP_SIZE:
            return f"a group of linked participants has 2..{MAX_GROUP_SIZE} members"
        for participant_id in group:
            if not 1 <= participant_id < 2**31:
                return "participant ids are positive"
            if participant_id in seen:
                return f"participant {participant_id} is in more than one link group"
            seen.add(participant_id)
    return None


def load_config(path: Path | None) -> SurveillanceConfig:
    """The config in a JSON file (any field left out keeps its default); defaults without one.

    Raises ValueError with a sentence a person can act on.
    """
    if path is None:
        return SurveillanceConfig()
    try:
        config = msgspec.json.decode(Path(path).read_bytes(), type=SurveillanceConfig)
    except (OSError, msgspec.DecodeError) as error:
        raise ValueError(f"surveillance config {path}: {error}") from error
    problem = config.problem()
    if problem is not None:
        raise ValueError(f"surveillance config {path}: {problem}")
    return config
