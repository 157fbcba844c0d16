"""API keys and roles: who is calling, and may they call this route.

Keys are random 32-byte tokens shown once; only their SHA-256 is kept (in the journal, so a
restart knows them). A request's key is hashed and looked up, and the stored hash is compared
in constant time. Every route names the roles it allows.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from api.errors import ApiError
from exchange.core import ExchangeCore
from exchange.participants import Participant, Role

MAX_KEY_LENGTH = 256


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header value, or None."""
    if authorization is None:
        return None
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
        return None
    return key.strip()


def identify(core: ExchangeCore, authorization: str | None) -> Participant | None:
    """The participant whose key the header carries, or None when there is none."""
    key = bearer_key(authorization)
    if key is None:
        return None
    digest = hash_key(key)
    participant_id = core.participant_by_key_hash.get(digest)
    if participant_id is None:
        return None
    participant = core.participants[participant_id]
    if not hmac.compare_digest(participant.api_key_hash, digest):
        return None
    return participant


def require(core: ExchangeCore, authorization: str | None, *roles: Role) -> Participant:
    """The calling participant, if their key is known and their role allowed (401 / 403)."""
    participant = identify(core, authorization)
    if participant is None:
        raise ApiError("UNAUTHORIZED", "a valid API key is required (Authorization: Bearer ...)")
    if participant.role not in roles:
        allowed = ", ".join(role.value for role in roles)
        raise ApiError("FORBIDDEN", f"this route is for {allowed}; you are {participant.role}")
    return participant


class RateLimiter:
    """A token bucket per participant: `rate` requests per second, bursts up to `burst`."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # id -> (tokens, last refill time)

    def check(self, participant_id: int) -> None:
        """Take one token, or raise 429 with the seconds until one is back."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(participant_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            self._buckets[participant_id] = (tokens, now)
            raise ApiError(
                "RATE_LIMITED",
                f"more than {self.rate:g} requests per second; retry later",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        self._buckets[participant_id] = (tokens - 1, now)
