"""Participants of the market and their roles."""

from __future__ import annotations

from enum import StrEnum

import msgspec

MAX_NAME_LENGTH = 200


class Role(StrEnum):
    TRADER = "trader"  # farmers, cooperatives, traders: trade and see their own business
    MONITOR = "monitor"  # market monitors: read market data
    REGULATOR = "regulator"  # market authority: read everything, change nothing
    OPERATOR = "operator"  # the exchange: list, register, fund, halt


class Participant(msgspec.Struct, frozen=True):
    """A registered participant. Only a hash of the API key is ever kept."""

    participant_id: int
    name: str
    role: Role
    api_key_hash: str  # hex SHA-256 of the key
