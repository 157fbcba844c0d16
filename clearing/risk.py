"""Pre-trade risk: every open order is backed by a hold, so every trade settles in full.

- A buy holds cash: limit price x quantity x lot size, plus the largest fee it could pay
  (a market buy is held at the top of the price band, the worst price it can trade at).
- A sell holds goods: its quantity in lots of the instrument.
- Each fill settles delivery versus payment at once: the buyer's held cash pays the seller and
  the fee account, the seller's held goods go to the buyer, and whatever the hold no longer
  needs is released. Cancel, expiry and IOC/FOK remainders release the rest of the hold.

Fees are whole VND, `notional x bps / 10,000` rounded down, with separate maker and taker
rates per instrument (default 0). Rounding down keeps a hold computed on the whole quantity
enough for any split of it into fills.
"""

from __future__ import annotations

import msgspec

from clearing.accounts import CASH, FEE_ACCOUNT, Accounts, Balance

BPS = 10_000


def fee_vnd(notional_vnd: int, fee_bps: int) -> int:
    return notional_vnd * fee_bps // BPS


def cash_to_hold(price: int, quantity: int, lot_size: int, max_fee_bps: int) -> int:
    """Cash a buy of `quantity` lots at `price` must hold: notional plus the largest fee."""
    notional = price * quantity * lot_size
    return notional + fee_vnd(notional, max_fee_bps)


class FeeSchedule:
    """Maker and taker rates of one instrument, in basis points of the notional."""

    __slots__ = ("maker_bps", "max_bps", "taker_bps")

    def __init__(self, maker_bps: int = 0, taker_bps: int = 0) -> None:
        self.maker_bps = maker_bps
        self.taker_bps = taker_bps
        self.max_bps = max(maker_bps, taker_bps)  # what a buy must hold for, either way


class Hold:
    """What one open order has reserved: `amount` of `asset`, owned by `participant_id`.

    Keeps a reference to the reserving balance so that settling and releasing need no lookup.
    """

    __slots__ = ("amount", "asset", "balance", "limit_price", "order_id", "participant_id")

    def __init__(
        self,
        order_id: int,
        participant_id: int,
        asset: str,
        amount: int,
        limit_price: int,
        balance: Balance,
    ) -> None:
        self.order_id = order_id
        self.participant_id = participant_id
        self.asset = asset
        self.amount = amount
        self.limit_price = limit_price  # the price the hold was computed at (buys; 0 for sells)
        self.balance = balance


class HoldState(msgspec.Struct, frozen=True, array_like=True):
    order_id: int
    participant_id: int
    asset: str
    amount: int
    limit_price: int


class Settlement(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The money and goods one trade moved (delivery versus payment), all integers."""

    symbol: str
    trade_id: int
    buyer_id: int
    seller_id: int
    buy_order_id: int
    sell_order_id: int
    price: int
    quantity: int
    notional_vnd: int
    buyer_fee_vnd: int
    seller_fee_vnd: int
    buyer_released_vnd: int  # hold the buyer no longer needs after this fill


class RiskState(msgspec.Struct, frozen=True):
    holds: list[HoldState]


class Risk:
    """Holds for open orders and the settlement of trades against them."""

    __slots__ = ("_holds", "accounts")

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self._holds: dict[int, Hold] = {}

    # ------------------------------------------------------------------ placing

    def hold_for_buy(
        self,
        order_id: int,
        participant_id: int,
        price: int,
        quantity: int,
        lot_size: int,
        fees: FeeSchedule,
    ) -> int | None:
        """Reserve the cash a buy needs; returns the amount, or None (nothing held) if short."""
        amount = cash_to_hold(price, quantity, lot_size, fees.max_bps)
        return self._hold(order_id, participant_id, CASH, amount, price)

    def hold_for_sell(
        self, order_id: int, participant_id: int, symbol: str, quantity: int
    ) -> int | None:
        """Reserve the goods a sell delivers; returns the lots, or None (nothing held) if short."""
        return self._hold(order_id, participant_id, symbol, quantity, 0)

    def _hold(
        self, order_id: int, participant_id: int, asset: str, amount: int, limit_price: int
    ) -> int | None:
        assert order_id not in self._holds, order_id
        assert amount >= 0
        if amount > self.accounts.available(participant_id, asset):
            return None  # refused before the balance is fetched: a refusal makes no empty one
        balance = self.accounts.balance(participant_id, asset)
        balance.available -= amount
        balance.reserved += amount
        self._holds[order_id] = Hold(order_id, participant_id, asset, amount, limit_price, balance)
        return amount

    def resize_buy(
        self, order_id: int, price: int, remaining: int, lot_size: int, fees: FeeSchedule
    ) -> bool:
        """Re-base a buy's hold on a new limit price and remaining quantity (amend)."""
        hold = self._holds[order_id]
        return self._resize(hold, cash_to_hold(price, remaining, lot_size, fees.max_bps), price)

    def resize_sell(self, order_id: int, remaining: int) -> bool:
        return self._resize(self._holds[order_id], remaining, 0)

    def _resize(self, hold: Hold, amount: int, limit_price: int) -> bool:
        delta = amount - hold.amount
        balance = hold.balance
        if delta > balance.available:
            return False
        balance.available -= delta  # a negative delta releases
        balance.reserved += delta
        hold.amount = amount
        hold.limit_price = limit_price
        return True

    def release(self, order_id: int) -> int:
        """The order is closed: release whatever its hold still has; returns that amount."""
        hold = self._holds.pop(order_id, None)
        if hold is None:
            return 0
        amount = hold.amount
        if amount:
            balance = hold.balance
            assert amount <= balance.reserved
            balance.reserved -= amount
            balance.available += amount
        return amount

    def held(self, order_id: int) -> int:
        hold = self._holds.get(order_id)
        return hold.amount if hold is not None else 0

    # ------------------------------------------------------------------ settling

    def settle(
        self,
        symbol: str,
        trade_id: int,
        buy_order_id: int,
        sell_order_id: int,
        price: int,
        quantity: int,
        buy_remaining: int,
        lot_size: int,
        buyer_fee_bps: int,
        seller_fee_bps: int,
        max_fee_bps: int,
    ) -> Settlement:
        """Settle one trade delivery versus payment out of both orders' holds."""
        accounts = self.accounts
        buy_hold = self._holds[buy_order_id]
        sell_hold = self._holds[sell_order_id]
        buyer, seller = buy_hold.participant_id, sell_hold.participant_id
        notional = price * quantity * lot_size
        buyer_fee = notional * buyer_fee_bps // BPS
        seller_fee = notional * seller_fee_bps // BPS

        # Payment: the buyer's held cash pays the seller (net of the seller's fee) and the
        # exchange's fee account; what the hold no longer needs goes back to the buyer.
        still_needed = cash_to_hold(buy_hold.limit_price, buy_remaining, lot_size, max_fee_bps)
        released = buy_hold.amount - notional - buyer_fee - still_needed
        assert released >= 0, (buy_order_id, buy_hold.amount, notional, buyer_fee, still_needed)
        buyer_cash = buy_hold.balance
        buyer_cash.reserved -= buy_hold.amount - still_needed
        buyer_cash.available += released
        buy_hold.amount = still_needed
        accounts.balance(seller, CASH).available += notional - seller_fee
        if buyer_fee or seller_fee:
            accounts.balance(FEE_ACCOUNT, CASH).available += buyer_fee + seller_fee

        # Delivery: the seller's held goods go to the buyer.
        assert quantity <= sell_hold.amount, (sell_order_id, quantity, sell_hold.amount)
        sell_hold.balance.reserved -= quantity
        sell_hold.amount -= quantity
        accounts.balance(buyer, symbol).available += quantity
        return Settlement(
            symbol,
            trade_id,
            buyer,
            seller,
            buy_order_id,
            sell_order_id,
            price,
            quantity,
            notional,
            buyer_fee,
            seller_fee,
            released,
        )

    # ------------------------------------------------------------------ state

    def check_invariants(self) -> None:
        """Holds add up to exactly what the accounts show as reserved."""
        reserved: dict[tuple[int, str], int] = {}
        for hold in self._holds.values():
            assert hold.amount >= 0, hold.order_id
            assert hold.balance is self.accounts.balance(hold.participant_id, hold.asset)
            key = (hold.participant_id, hold.asset)
            reserved[key] = reserved.get(key, 0) + hold.amount
        assert reserved == self.accounts.reserved_by_account() | {
            key: 0 for key, amount in reserved.items() if amount == 0
        }
        self.accounts.check_invariants()

    def state(self) -> RiskState:
        return RiskState(
            [
                HoldState(h.order_id, h.participant_id, h.asset, h.amount, h.limit_price)
                for _, h in sorted(self._holds.items())
            ]
        )

    @classmethod
    def from_state(cls, accounts: Accounts, state: RiskState) -> Risk:
        risk = cls(accounts)
        for h in state.holds:
            balance = accounts.balance(h.participant_id, h.asset)
            risk._holds[h.order_id] = Hold(
                h.order_id, h.participant_id, h.asset, h.amount, h.limit_price, balance
            )
        return risk
