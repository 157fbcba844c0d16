"""Physical delivery and traceability: warehouse receipts, and which farms a trade's lots came from.

Goods enter custody through a delivery-in (`DeliverGoods`): the exchange inspects them and
issues a `Receipt` (lots, head count, average live weight, farm code, VietGAP or OCOP
certificate, inspection time) and credits the owner's goods account, as a goods deposit does.
They leave through a delivery-out (`ReleaseGoods`) to the account's owner, debiting it, as a goods
withdrawal does. A plain goods deposit is lots without a receipt (receipt 0, "untraced").

Allocation rule (deterministic, FIFO by receipt per owner): every owner's lots of a symbol form a
queue of (receipt, lots) in the order they arrived. A trade takes its lots from the front of the
seller's queue and appends them, in the same order, to the back of the buyer's; a delivery-out
or withdrawal takes from the front too. So the lots a buyer received in a trade come from the
seller's oldest receipts, and a regulator can follow any trade back to its farms.

The trades whose lots came from at least one receipt keep their allocation (`trade_lots`); lots
that are all untraced are not recorded, so trading untraced goods costs no memory.
"""

from __future__ import annotations

from collections import deque

import msgspec

UNTRACED = 0
MAX_TEXT = 64


class Receipt(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A warehouse-receipt-like record of goods delivered into custody."""

    receipt_id: int
    participant_id: int
    symbol: str
    lots: int
    head_count: int  # live hogs; 0 for OCOP goods
    average_weight_kg: int  # per head (live hogs), 0 for OCOP goods
    farm_code: str
    certificate: str  # VietGAP certificate (live hogs) or OCOP certificate number
    inspected_at_ns: int
    sequence: int
    time_ns: int


class Release(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Goods delivered out of custody to their owner, with the receipts they came from."""

    release_id: int
    participant_id: int
    symbol: str
    lots: int
    destination: str
    sources: list[tuple[int, int]]  # (receipt id, lots), FIFO
    sequence: int
    time_ns: int


class LineageState(msgspec.Struct, frozen=True):
    receipts: list[Receipt]
    releases: list[Release]
    holdings: list[tuple[int, str, list[tuple[int, int]]]]  # owner, symbol, queue
    trade_lots: dict[int, list[tuple[int, int]]]  # trade id -> (receipt id, lots)


Queue = deque[list[int]]  # entries [receipt id, lots], oldest first


class Lineage:
    """Receipts, releases, who holds which receipt's lots, and where each trade's lots came from."""

    def __init__(self) -> None:
        self.receipts: dict[int, Receipt] = {}
        self.releases: dict[int, Release] = {}
        # owner -> {symbol: queue}: keyed as `Accounts` keys balances, so that a trade's two
        # lookups build no (owner, symbol) tuple to hash
        self.holdings: dict[int, dict[str, Queue]] = {}
        self.trade_lots: dict[int, list[tuple[int, int]]] = {}

    def queue(self, owner: int, symbol: str) -> Queue:
        """The owner's queue of `symbol` lots, created empty on first use."""
        queues = self.holdings.get(owner)
        if queues is None:
            queues = self.holdings[owner] = {}
        queue = queues.get(symbol)
        if queue is None:
            queue = queues[symbol] = deque()
        return queue

    def credit(self, owner: int, symbol: str, receipt_id: int, lots: int) -> None:
        queue = self.queue(owner, symbol)
        if queue and queue[-1][0] == receipt_id:
            queue[-1][1] += lots
        else:
            queue.append([receipt_id, lots])

    def debit(self, owner: int, symbol: str, lots: int) -> list[tuple[int, int]]:
        """Take `lots` from the front of the owner's queue; the (receipt, lots) taken."""
        queue = self.holdings[owner][symbol]
        taken: list[tuple[int, int]] = []
        while lots:
            entry = queue[0]
            quantity = min(lots, entry[1])
            if taken and taken[-1][0] == entry[0]:
                taken[-1] = (entry[0], taken[-1][1] + quantity)
            else:
                taken.append((entry[0], quantity))
            entry[1] -= quantity
            lots -= quantity
            if entry[1] == 0:
                queue.popleft()
        return taken

    def transfer(self, trade_id: int, seller: int, buyer: int, symbol: str, lots: int) -> None:
        """A trade's goods: FIFO from the seller's queue to the back of the buyer's."""
        queue = self.holdings[seller][symbol]
        entry = queue[0]
        if entry[1] >= lots:  # the usual case, once per trade: one receipt covers the lots
            receipt_id = entry[0]
            entry[1] -= lots
            if entry[1] == 0:
                queue.popleft()
            self.credit(buyer, symbol, receipt_id, lots)
            if receipt_id != UNTRACED:
                self.trade_lots[trade_id] = [(receipt_id, lots)]
            return
        taken = self.debit(seller, symbol, lots)
        for receipt_id, quantity in taken:
            self.credit(buyer, symbol, receipt_id, quantity)
        if len(taken) > 1 or taken[0][0] != UNTRACED:
            self.trade_lots[trade_id] = taken

    def held(self, owner: int, symbol: str) -> int:
        return sum(entry[1] for entry in self.holdings.get(owner, {}).get(symbol, ()))

    def state(self) -> LineageState:
        return LineageState(
            [self.receipts[i] for i in sorted(self.receipts)],
            [self.releases[i] for i in sorted(self.releases)],
            [
                (owner, symbol, [(e[0], e[1]) for e in queue])
                for owner, queues in sorted(self.holdings.items())
                for symbol, queue in sorted(queues.items())
                if queue
            ],
            dict(sorted(self.trade_lots.items())),
        )

    @classmethod
    def from_state(cls, state: LineageState) -> Lineage:
        lineage = cls()
        lineage.receipts = {r.receipt_id: r for r in state.receipts}
        lineage.releases = {r.release_id: r for r in state.releases}
        for owner, symbol, queue in state.holdings:
            queues = lineage.holdings.setdefault(owner, {})
            queues[symbol] = deque([receipt, lots] for receipt, lots in queue)
        lineage.trade_lots = {k: list(v) for k, v in state.trade_lots.items()}
        return lineage


def empty_lineage_state() -> LineageState:
    return LineageState([], [], [], {})


__all__ = ["UNTRACED", "Lineage", "LineageState", "Receipt", "Release", "empty_lineage_state"]
