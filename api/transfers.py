"""Cash between shards: `POST /v1/account/transfers`, coordinated by a gateway.

Each shard holds its own allocation of a participant's VND and checks orders against it alone,
so cash moves between shards in two journaled phases (the rules are in `exchange.core`):

1. `TransferOut` on the source shard: the amount leaves the participant's available cash there
   (never reserved cash), or the transfer is refused (`INSUFFICIENT_FUNDS`, ...) and nothing
   happens anywhere;
2. once that is acknowledged, `TransferIn` on the destination shard: the cash arrives.

Between the two the cash is in transit, in neither shard, so it can never be spent twice. A
transfer id names the transfer in both phases, and a shard answers the same phase twice only
once, so the coordinator may retry anything. If the destination cannot be reached now, the
answer is 202 `in_transit`, and every gateway's sweeper completes any transfer whose first
phase is in a source shard's journal and whose second is not in the destination's (the source
journal is the durable intent; the sweepers of several gateways may race: harmless).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import msgspec

from api.errors import STATUS_OF_CODE
from exchange import commands as c
from exchange.command_service import ShardUnavailable
from exchange.events import CashTransferredIn, CashTransferredOut, CommandRejected, Event
from exchange.events import TransferRepeated as Repeated
from exchange.participants import Role

if TYPE_CHECKING:
    from api.gateway import Answer, Gateway
    from api.nats_bridge import HttpRequest

PHASE_TWO_ATTEMPTS = 3
RETRY_WAIT_S = 0.2
SWEEP_EVERY_S = 1.0
SWEEP_AFTER_S = 2.0  # leave a transfer's own coordinator time to finish it first
MAX_TRANSFER_ID_LENGTH = 64


class TransferRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: int
    from_shard: str
    to_shard: str
    transfer_id: str | None = None  # the client's, to retry safely; else the gateway makes one


class TransferOutcome(msgspec.Struct, frozen=True):
    transfer_id: str
    amount: int
    from_shard: str
    to_shard: str
    status: str  # "completed", or "in_transit" (the sweeper completes it)


class TransferCoordinator:
    """Runs both phases for a request, and completes what other coordinators left midway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._first_seen: dict[str, float] = {}  # unfinished transfers, by id: when noticed

    async def handle(self, request: HttpRequest) -> Answer:
        from api.gateway import _error, _json

        participant = self.gateway.caller(request)
        if participant is None:
            return _error(401, "UNAUTHORIZED", "a valid API key is required")
        if participant.role is not Role.TRADER:
            return _error(403, "FORBIDDEN", "only traders hold cash to move between shards")
        try:
            asked = msgspec.json.decode(request.body, type=TransferRequest)
        except msgspec.DecodeError as error:
            return _error(422, "INVALID_REQUEST", str(error))
        problem = self._problem(asked)
        if problem is not None:
            return _error(422, "INVALID_REQUEST", problem)
        transfer_id = asked.transfer_id or uuid.uuid4().hex
        out = c.TransferOut(
            participant.participant_id, asked.amount, transfer_id, asked.to_shard,
            actor_id=participant.participant_id,
        )  # fmt: skip
        try:
            answer = _first_answer((await self.gateway.submit(asked.from_shard, out)).events)
        except ShardUnavailable as error:
            return _error(503, "ENGINE_UNAVAILABLE", f"{error}; retry with the same transfer_id")
        if isinstance(answer, CommandRejected):
            return _error(STATUS_OF_CODE.get(answer.code, 400), answer.code, answer.message)
        completed = await self.complete(participant.participant_id, asked.amount, transfer_id,
                                        asked.from_shard, asked.to_shard)  # fmt: skip
        outcome = TransferOutcome(transfer_id, asked.amount, asked.from_shard, asked.to_shard,
                                  "completed" if completed else "in_transit")  # fmt: skip
        return _json(201 if completed else 202, outcome)

    def _problem(self, asked: TransferRequest) -> str | None:
        shards = self.gateway.shard_map.shards
        if asked.from_shard not in shards or asked.to_shard not in shards:
            return f"from_shard and to_shard must be shards of this cluster: {', '.join(shards)}"
        if asked.from_shard == asked.to_shard:
            return "from_shard and to_shard must differ"
        if asked.transfer_id is not None and not 0 < len(asked.transfer_id) <= 64:
            return f"transfer_id must be 1-{MAX_TRANSFER_ID_LENGTH} characters"
        return None

    async def complete(
        self, participant_id: int, amount: int, transfer_id: str, source: str, destination: str
    ) -> bool:
        """Phase two; True once the destination holds the cash (now or from before)."""
        arrive = c.TransferIn(participant_id, amount, transfer_id, source)
        for attempt in range(PHASE_TWO_ATTEMPTS):
            try:
                answer = _first_answer((await self.gateway.submit(destination, arrive)).events)
            except ShardUnavailable:
                await asyncio.sleep(RETRY_WAIT_S * (attempt + 1))
                continue
            if isinstance(answer, CommandRejected):  # e.g. not yet registered there
                participant = self.gateway.replica(self.gateway.shard_map.home).core.participants
                if participant_id in participant:
                    await self.gateway._copy_participant(destination, participant[participant_id])
                continue
            return True
        return False

    def unfinished(self) -> list[CashTransferredOut]:
        """Transfers out of one shard of this cluster that have not arrived at the other."""
        feeds = self.gateway.feeds
        return [
            out
            for feed in feeds.values()
            for out in feed.replica.core.transfers_out.values()
            if out.to_shard in feeds
            and out.transfer_id not in feeds[out.to_shard].replica.core.transfers_in
        ]

    def in_transit(self, participant_id: int) -> int:
        return sum(out.amount for out in self.unfinished() if out.participant_id == participant_id)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            await self.sweep()

    async def sweep(self) -> None:
        now = time.monotonic()
        unfinished = {out.transfer_id: out for out in self.unfinished()}
        for transfer_id in list(self._first_seen):
            if transfer_id not in unfinished:
                del self._first_seen[transfer_id]
        for transfer_id, out in unfinished.items():
            seen = self._first_seen.setdefault(transfer_id, now)
            if now - seen >= SWEEP_AFTER_S:
                source = self._source_of(out)
                await self.complete(out.participant_id, out.amount, transfer_id, source,
                                    out.to_shard)  # fmt: skip

    def _source_of(self, out: CashTransferredOut) -> str:
        for shard, feed in self.gateway.feeds.items():
            if feed.replica.core.transfers_out.get(out.transfer_id) is out:
                return shard
        raise KeyError(out.transfer_id)


def _first_answer(events: list[Event]) -> Event:
    """The command's answer: a rejection, or the transfer's event (first or repeated)."""
    event = events[0]
    if isinstance(event, Repeated):
        return event.original
    assert isinstance(event, CommandRejected | CashTransferredOut | CashTransferredIn), event
    return event
