"""Types of the compiled journal codec (exchange/compiled_journal.pyx)."""

from collections.abc import Callable, Sequence
from typing import Any

PROBLEM_NONE: int
PROBLEM_SHORT: int
PROBLEM_LENGTH: int
PROBLEM_CRC: int
PROBLEM_SEQUENCE: int
PROBLEM_CHAIN: int

def encode_batch(
    records: Sequence[tuple[int, int, bytes]], previous_hash: bytes
) -> tuple[bytes, bytes]: ...
def parse_records(
    buf: bytes,
    expected: int,
    previous_hash: bytes,
    wanted_from: int,
    wanted_to: int,
    stop_at_wanted_to: bool,
    out: list[Any] | None,
    record_type: Any,
    max_length: int,
    split_bytes: int,
) -> tuple[int, int, bytes, int]: ...
def decode_checked(
    buf: bytes, end: int, wanted_from: int, decode: Callable[[bytes], Any]
) -> tuple[int, list[int], list[Any], Exception | None]: ...
