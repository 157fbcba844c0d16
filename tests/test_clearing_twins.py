"""The compiled custody and risk against accounts.py and risk.py: the very same answers, always.

`clearing/accounts.py` and `clearing/risk.py` state the rules; `clearing/compiled_clearing.pyx`
is their compiled twin, which the exchange runs when it is built. A hypothesis state machine
drives an `Accounts` and a `Risk` of each implementation side by side with the same random
operations, valid and not: deposits, withdrawals and shard transfers, reservations and payments
made straight on the accounts, holds for buys and sells, amends of holds, releases, settlements
of trades (consistent ones, and ones that break the holds' asserts), and snapshots loaded into
the other implementation. After every operation it requires equal results (exceptions by type
and arguments), equal queries and an equal `state()` of both, including amounts far beyond
64 bits: balances are unbounded sums and neither twin may wrap.

Then the whole exchange: a seeded session with call phases and auctions runs through
`ExchangeCore` once on each clearing (`digest_child.py`, on today's clock so that the OCOP
instrument trades too) and must end with the same state digest and the very same events.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from digest_child import fingerprint
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from clearing.accounts import CASH, FEE_ACCOUNT, Balance, InsufficientFunds
from clearing.implementation import (
    CLEARING_IMPLEMENTATION,
    PURE_PYTHON_ENV,
    CompiledAccounts,
    CompiledRisk,
    PythonAccounts,
    PythonRisk,
)
from clearing.risk import FeeSchedule, cash_to_hold

NOT_BUILT = (
    "the compiled clearing is not built (pip install -e . builds it where a compiler exists)"
)
# CI builds on a machine with a compiler: there a missing compiled clearing fails, never skips.
SKIP_COMPILED = CompiledAccounts is None and os.environ.get("CI") != "true"
pytestmark = pytest.mark.skipif(SKIP_COMPILED, reason=NOT_BUILT)

HUGE = (2**63 - 1, 2**63, 2**64 + 7, 10**30)  # past int64, where a C twin would wrap
PARTICIPANTS = (FEE_ACCOUNT, 1, 2, 3)  # few, so that participants often trade with themselves
ASSETS = (CASH, "HOG", "OCOP")
ORDER_IDS = st.integers(1, 8)  # few, so that ids collide and unknown ids come up
AMOUNTS = st.integers(-2, 60) | st.sampled_from(HUGE) | st.integers(-(2**70), 2**70)
DEPOSITS = st.integers(1, 10**7) | st.sampled_from((*HUGE, 10**40))
PRICES = st.integers(-1, 120) | st.sampled_from(HUGE)
QUANTITIES = st.integers(-1, 12) | st.sampled_from((2**63, 2**65))
LOT_SIZES = st.sampled_from((1, 10, 100, 2**64))
BPS = st.sampled_from((0, 3, 15, 30, 10_000))
FEES = st.builds(FeeSchedule, BPS, BPS)
participants = st.sampled_from(PARTICIPANTS)
assets = st.sampled_from(ASSETS)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call returned (a balance as its two amounts), or the exception it raised."""
    try:
        result = call()
    except Exception as error:  # compared across the implementations, not judged here
        return "raised", (type(error).__name__, error.args)
    if isinstance(result, Balance) or type(result).__name__ == "Balance":
        return "returned", (result.available, result.reserved)
    return "returned", result


class PythonVersusCompiled(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        assert CompiledAccounts is not None and CompiledRisk is not None, NOT_BUILT
        python_accounts, compiled_accounts = PythonAccounts(), CompiledAccounts()
        self.pairs: list[tuple[Any, Any]] = [
            (python_accounts, PythonRisk(python_accounts)),
            (compiled_accounts, CompiledRisk(compiled_accounts)),
        ]
        # The open orders whose holds only ever changed as the exchange changes them, so that
        # a settlement consistent with them can be made: buy id -> (limit, remaining, lot,
        # fees), and the sell ids.
        self.buys: dict[int, tuple[int, int, int, FeeSchedule]] = {}
        self.sells: set[int] = set()
        self.log: list[str] = []
        # Enough of everything that most holds go through (and one participant's far past
        # 64 bits), so that there are open orders to amend, release and settle.
        for participant, amount in ((0, 10**12), (1, 10**12), (2, 10**40), (3, 10**40)):
            for asset in ASSETS:
                self.same(
                    f"deposit({participant}, {asset}, {amount})",
                    lambda a, r, p=participant, asset=asset, amount=amount: a.deposit(
                        p, asset, amount
                    ),
                )

    def same(
        self, what: str, call: Callable[[Any, Any], Any], *, query: bool = False
    ) -> tuple[str, Any]:
        """Run `call(accounts, risk)` on each implementation; both must answer alike.

        The log names the operations so far (not the queries between them), and this call."""
        if not query:
            self.log.append(what)
        python, compiled = (outcome(lambda pair=pair: call(*pair)) for pair in self.pairs)
        assert python == compiled, "\n".join([*self.log, what] if query else self.log)
        return python

    def forget(self, *order_ids: int) -> None:
        """These orders' holds changed in a way no exchange changes them: stop modelling them."""
        for order_id in order_ids:
            self.buys.pop(order_id, None)
            self.sells.discard(order_id)

    def call(self, method: str, *args: Any) -> tuple[str, Any]:
        """`accounts.<name>(*args)` or `risk.<name>(*args)` on each twin, via `same`."""
        owner, name = method.split(".")
        shown = ", ".join(
            f"FeeSchedule({arg.maker_bps}, {arg.taker_bps})"
            if isinstance(arg, FeeSchedule)
            else str(arg)
            for arg in args
        )
        return self.same(
            f"{name}({shown})",
            lambda a, r: getattr(a if owner == "accounts" else r, name)(*args),
        )

    # ------------------------------------------------------------------ custody

    @rule(participant=participants, asset=assets, amount=DEPOSITS | AMOUNTS)
    def deposit(self, participant: int, asset: str, amount: int) -> None:
        self.call("accounts.deposit", participant, asset, amount)

    @rule(participant=participants, asset=assets, amount=AMOUNTS)
    def withdraw(self, participant: int, asset: str, amount: int) -> None:
        self.call("accounts.can_withdraw", participant, asset, amount)
        self.call("accounts.withdraw", participant, asset, amount)

    @rule(
        participant=participants,
        amount=DEPOSITS | AMOUNTS,
        method=st.sampled_from(("accounts.transfer_in", "accounts.transfer_out")),
    )
    def transfer(self, participant: int, amount: int, method: str) -> None:
        self.call(method, participant, amount)

    @rule(
        participant=participants,
        asset=assets,
        amount=AMOUNTS,
        method=st.sampled_from(("accounts.can_reserve", "accounts.reserve", "accounts.release")),
    )
    def reserve_or_release(self, participant: int, asset: str, amount: int, method: str) -> None:
        """Straight on the accounts, under the holds' feet: both twins must still agree."""
        self.call(method, participant, asset, amount)

    @rule(
        payer=participants,
        payee=participants,
        asset=assets,
        amount=AMOUNTS,
        method=st.sampled_from(("accounts.pay_from_reserved", "accounts.pay_from_available")),
    )
    def pay(self, payer: int, payee: int, asset: str, amount: int, method: str) -> None:
        self.call(method, payer, payee, asset, amount)

    # ------------------------------------------------------------------ holds

    @rule(
        order_id=ORDER_IDS,
        participant=participants,
        price=PRICES,
        quantity=QUANTITIES,
        lot_size=LOT_SIZES,
        fees=FEES,
    )
    def hold_for_buy(
        self,
        order_id: int,
        participant: int,
        price: int,
        quantity: int,
        lot_size: int,
        fees: FeeSchedule,
    ) -> None:
        result = self.call(
            "risk.hold_for_buy", order_id, participant, price, quantity, lot_size, fees
        )
        if result[0] == "returned" and result[1] is not None:
            self.buys[order_id] = (price, quantity, lot_size, fees)

    @rule(order_id=ORDER_IDS, participant=participants, symbol=assets, quantity=QUANTITIES)
    def hold_for_sell(self, order_id: int, participant: int, symbol: str, quantity: int) -> None:
        result = self.call("risk.hold_for_sell", order_id, participant, symbol, quantity)
        if result[0] == "returned" and result[1] is not None:
            self.sells.add(order_id)

    @rule(order_id=ORDER_IDS, price=PRICES, remaining=QUANTITIES, lot_size=LOT_SIZES, fees=FEES)
    def resize_buy(
        self, order_id: int, price: int, remaining: int, lot_size: int, fees: FeeSchedule
    ) -> None:
        result = self.call("risk.resize_buy", order_id, price, remaining, lot_size, fees)
        if order_id in self.buys and result == ("returned", True):
            self.buys[order_id] = (price, remaining, lot_size, fees)
        elif order_id in self.sells and result == ("returned", True):
            self.forget(order_id)  # a sell's hold re-based on cash: a caller's bug

    @rule(order_id=ORDER_IDS, remaining=QUANTITIES)
    def resize_sell(self, order_id: int, remaining: int) -> None:
        result = self.call("risk.resize_sell", order_id, remaining)
        if order_id in self.buys and result == ("returned", True):
            self.forget(order_id)  # a buy's hold re-based on goods: a caller's bug

    @rule(order_id=ORDER_IDS)
    def release(self, order_id: int) -> None:
        self.call("risk.held", order_id)
        self.call("risk.release", order_id)
        self.forget(order_id)

    # ------------------------------------------------------------------ settling

    def tradable(self) -> tuple[list[int], list[int]]:
        """The modelled buys and sells that a trade could fill."""
        buys = [o for o, (limit, left, lot, _) in self.buys.items() if min(limit, left, lot) > 0]
        sells = [o for o in self.sells if self.pairs[0][1].held(o) > 0]
        return sorted(buys), sorted(sells)

    @rule(data=st.data())
    def settle_a_trade(self, data: st.DataObject) -> None:
        """A trade between two modelled orders, as the core settles it: it must go through.

        Without a buy or a sell to fill, one is opened first by a participant who can pay."""
        python_risk = self.pairs[0][1]
        free = [o for o in range(1, 9) if o not in python_risk._holds]
        if not self.tradable()[0] and free:
            self.hold_for_buy(
                free.pop(0),
                data.draw(st.sampled_from((2, 3))),
                data.draw(st.integers(1, 120) | st.sampled_from(HUGE)),
                data.draw(st.integers(1, 12)),
                data.draw(LOT_SIZES),
                data.draw(FEES),
            )
        if not self.tradable()[1] and free:
            quantity = data.draw(st.integers(1, 12) | st.sampled_from(HUGE))
            self.hold_for_sell(free.pop(0), data.draw(st.sampled_from((2, 3))), "HOG", quantity)
        buys, sells = self.tradable()
        if not buys or not sells:
            return
        buy_id = data.draw(st.sampled_from(buys))
        sell_id = data.draw(st.sampled_from(sells))
        limit, remaining, lot_size, fees = self.buys[buy_id]
        symbol = python_risk._holds[sell_id].asset
        price = data.draw(st.integers(1, limit))
        quantity = data.draw(st.integers(1, min(remaining, python_risk.held(sell_id))))
        bps = (fees.taker_bps, fees.maker_bps)
        if data.draw(st.booleans()):  # the buyer was the maker
            bps = bps[::-1]
        trade_id = data.draw(st.integers(1, 10**6))
        left = remaining - quantity
        result = self.call(
            "risk.settle", symbol, trade_id, buy_id, sell_id, price, quantity, left, lot_size,
            *bps, fees.max_bps,
        )  # fmt: skip
        assert result[0] == "returned", "\n".join(self.log)
        self.buys[buy_id] = (limit, left, lot_size, fees)

    @rule(
        args=st.tuples(
            assets,  # symbol
            st.just(7),  # trade id
            ORDER_IDS,  # buy order id
            ORDER_IDS,  # sell order id
            PRICES,
            QUANTITIES,  # quantity
            QUANTITIES,  # the buy's remaining quantity
            LOT_SIZES,
            BPS,  # buyer's fee
            BPS,  # seller's fee
            BPS,  # largest fee
        )
    )
    def settle_anything(self, args: tuple[Any, ...]) -> None:
        """Arguments no core would pass: both twins must fail alike, at the same point."""
        self.call("risk.settle", *args)
        self.forget(args[2], args[3])

    # ------------------------------------------------------------------ snapshots

    @rule()
    def restore_each_from_the_others_state(self) -> None:
        """State saved by one twin loads into the other (a restart on another build)."""
        assert CompiledAccounts is not None and CompiledRisk is not None, NOT_BUILT
        self.log.append("-- states swapped")
        (python_accounts, python_risk), (compiled_accounts, compiled_risk) = self.pairs
        from_compiled = PythonAccounts.from_state(compiled_accounts.state())
        from_python = CompiledAccounts.from_state(python_accounts.state())
        self.pairs = [
            (from_compiled, PythonRisk.from_state(from_compiled, compiled_risk.state())),
            (from_python, CompiledRisk.from_state(from_python, python_risk.state())),
        ]

    # ------------------------------------------------------------------ after every operation

    @invariant()
    def both_answer_alike(self) -> None:
        if not hasattr(self, "pairs"):
            return
        query = functools.partial(self.same, query=True)
        for p in PARTICIPANTS:
            query(f"balances_of({p})", lambda a, r, p=p: a.balances_of(p))
            for asset in ASSETS:
                query(f"available({p}, {asset})", lambda a, r, p=p, x=asset: a.available(p, x))
        for asset in ASSETS:
            query(f"net_deposits({asset})", lambda a, r, asset=asset: a.net_deposits(asset))
        query("reserved_by_account()", lambda a, r: a.reserved_by_account())
        query("accounts.check_invariants()", lambda a, r: a.check_invariants())
        query("risk.check_invariants()", lambda a, r: r.check_invariants())
        query("state()", lambda a, r: (a.state(), r.state()))
        query(
            "every balance, empty ones too",
            lambda a, r: sorted(
                (p, k, b.available, b.reserved)
                for p, owned in a._balances.items()
                for k, b in owned.items()
            ),
        )
        query(
            "every hold",
            lambda a, r: sorted(
                (h.order_id, h.participant_id, h.asset, h.amount, h.limit_price)
                for h in r._holds.values()
            ),
        )


PythonVersusCompiled.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestPythonVersusCompiled = PythonVersusCompiled.TestCase


@pytest.mark.parametrize("implementation", ["python", "compiled"])
def test_a_refused_movement_makes_no_empty_balance(implementation: str) -> None:
    accounts = (PythonAccounts if implementation == "python" else CompiledAccounts)()
    for refused in (accounts.withdraw, accounts.reserve):
        with pytest.raises(InsufficientFunds):
            refused(7, CASH, 1)
    assert accounts.balances_of(7) == []


def test_the_compiled_clearing_is_built_wherever_ci_runs() -> None:
    # Under CI=true the module is not skipped: a compiled clearing that failed to build fails here.
    assert CompiledAccounts is not None and CompiledRisk is not None, NOT_BUILT
    forced = os.environ.get(PURE_PYTHON_ENV) == "1"
    assert ("python" if forced else "compiled") == CLEARING_IMPLEMENTATION


def test_amounts_past_64_bits_are_exact_on_both() -> None:
    """A buy of 2**40 lots at 2**40 VND, 2**20 per lot, settles to the last VND on each twin."""
    assert CompiledAccounts is not None and CompiledRisk is not None, NOT_BUILT
    price = quantity = 2**40
    lot_size = 2**20
    fees = FeeSchedule(maker_bps=3, taker_bps=15)
    held = cash_to_hold(price, quantity, lot_size, fees.max_bps)
    assert held > 2**100
    for accounts_class, risk_class in (
        (PythonAccounts, PythonRisk),
        (CompiledAccounts, CompiledRisk),
    ):
        accounts = accounts_class()
        risk = risk_class(accounts)
        accounts.deposit(1, CASH, 2 * held)
        accounts.deposit(2, "HOG", quantity)
        assert risk.hold_for_buy(10, 1, price, quantity, lot_size, fees) == held
        assert risk.hold_for_sell(11, 2, "HOG", quantity) == quantity
        settlement = risk.settle("HOG", 1, 10, 11, price, quantity, 0, lot_size, 15, 3, 15)
        notional = price * quantity * lot_size
        assert settlement.notional_vnd == notional == 2**100
        assert settlement.buyer_fee_vnd == notional * 15 // 10_000
        assert accounts.balances_of(1) == [
            ("HOG", quantity, 0),
            (CASH, 2 * held - notional - notional * 15 // 10_000, 0),
        ]
        assert accounts.available(2, CASH) == notional - notional * 3 // 10_000
        assert accounts.available(FEE_ACCOUNT, CASH) == notional * 18 // 10_000
        risk.check_invariants()


# ---------------------------------------------------------------------- the whole exchange

# The start of this UTC day: the workload's OCOP certificate is dated from today, so on a clock
# far from today its listing is refused and the session would trade two instruments, not three.
T0_NS = (time.time_ns() // 86_400_000_000_000) * 86_400_000_000_000


@pytest.mark.parametrize("seed", [1, 2])
def test_the_exchange_ends_in_the_same_state_with_the_same_events_on_either_clearing(
    seed: int,
) -> None:
    python, compiled = (
        fingerprint(seed, 4000, pure_python_env=PURE_PYTHON_ENV, pure_python=pure, start_ns=T0_NS)
        for pure in (True, False)
    )
    assert (python[1], compiled[1]) == ("python", "compiled")
    assert python[0] == compiled[0] and python[2:] == compiled[2:]


# Where the compiled clearing's C arithmetic hands over to Python's: the products fit in int64,
# or one step (price x quantity, x lot size, x fee, the fee added) just does not.
INT64_MAX = 2**63 - 1
EDGES = [
    (INT64_MAX, 1, 1, 0),  # the notional is int64's largest
    (INT64_MAX // 10, 10, 1, 0),  # price x quantity fits; x lot size:
    (INT64_MAX // 10, 5, 2, 0),
    (INT64_MAX // 10 + 1, 10, 1, 0),  # price x quantity overflows by one step
    (2**31, 2**31, 2, 0),  # the lot size step overflows
    (2**31, 2**30, 2, 1),  # x fee fits
    (2**31, 2**30, 2, 2),  # x fee overflows at the fee step (the notional is 2**62)
    (INT64_MAX // 10_001, 1, 1, 1),  # the fee added stays within int64
    (INT64_MAX - 1, 1, 1, 10_000),  # the fee step overflows
    (INT64_MAX - 1, 1, 1, 1),  # x fee fits; notional + fee overflows
    (2**63, 1, 1, 30),  # a factor beyond int64
    (7, 3, 100, 30),  # the usual case
]


@pytest.mark.skipif(SKIP_COMPILED, reason=NOT_BUILT)
@pytest.mark.parametrize(("price", "quantity", "lot_size", "fee_bps"), EDGES)
def test_holds_and_settlements_are_exact_where_c_arithmetic_hands_over_to_python(
    price: int, quantity: int, lot_size: int, fee_bps: int
) -> None:
    """The cash a buy holds and a full fill's settlement: equal on both twins, and equal to
    risk.py's arbitrary-precision arithmetic, on each side of every int64 overflow."""
    fees = FeeSchedule(fee_bps, fee_bps)
    answers = []
    twins = ((PythonAccounts, PythonRisk), (CompiledAccounts, CompiledRisk))
    for accounts_type, risk_type in twins:
        accounts = accounts_type()
        risk = risk_type(accounts)
        accounts.deposit(1, CASH, 2**130)
        accounts.deposit(2, "HOG", quantity)
        held = risk.hold_for_buy(10, 1, price, quantity, lot_size, fees)
        assert held == cash_to_hold(price, quantity, lot_size, fee_bps)
        risk.hold_for_sell(11, 2, "HOG", quantity)
        settlement = risk.settle(
            "HOG", 1, 10, 11, price, quantity, 0, lot_size, fee_bps, fee_bps, fee_bps
        )
        answers.append((held, settlement, accounts.state(), risk.state()))
    assert answers[0] == answers[1]
    notional = price * quantity * lot_size
    assert answers[0][1].notional_vnd == notional
    assert answers[0][1].buyer_fee_vnd == notional * fee_bps // 10_000


ODD_OPERANDS = [
    (0, 5, 100, 30),  # a zero factor
    (5, 0, 100, 30),
    (-1, 5, 100, 30),  # negative: C's division would truncate where Python's floors
    (5, 3, 100, -7),
    (True, 5, 100, 30),  # a bool is an int, but not exactly
    (5, -(2**64), 1, 0),  # beyond 64 bits, negative
    (2**63 - 1, 2**63 - 1, 1, 0),
]


@pytest.mark.skipif(SKIP_COMPILED, reason=NOT_BUILT)
@pytest.mark.parametrize(("price", "quantity", "lot_size", "fee_bps"), ODD_OPERANDS)
def test_odd_operands_get_the_same_answer_from_both_twins(
    price: int, quantity: int, lot_size: int, fee_bps: int
) -> None:
    """What the C path must leave to Python (zero, negative, bool, beyond int64): the hold a
    buy asks for comes out the same, or fails the same way, on either twin."""
    fees = FeeSchedule(fee_bps, fee_bps)
    outcomes = []
    twins = ((PythonAccounts, PythonRisk), (CompiledAccounts, CompiledRisk))
    for accounts_type, risk_type in twins:
        accounts = accounts_type()
        risk = risk_type(accounts)
        accounts.deposit(1, CASH, 2**130)
        try:
            outcome: object = risk.hold_for_buy(10, 1, price, quantity, lot_size, fees)
        except Exception as error:  # its type and arguments are compared
            outcome = (type(error), error.args)
        outcomes.append((outcome, accounts.state(), risk.state()))
    assert outcomes[0] == outcomes[1]
