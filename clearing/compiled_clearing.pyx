# cython: language_level=3, boundscheck=False, wraparound=False
# cython: initializedcheck=False, embedsignature=True
"""The compiled twin of `clearing.accounts` and `clearing.risk`: the same `Balance`,
`Accounts`, `Hold` and `Risk`, public interface, results and exceptions.

`accounts.py` and `risk.py` state the rules (their docstrings and their code are the rulebook)
and stay the implementation used without a C compiler; this module only makes the same
decisions faster, and must stay identical to them in behaviour: a rule change goes into both.
`tests/test_clearing_twins.py` holds the two to each other (same results, same exceptions,
same `state()` after every operation, and the same core digest over a seeded session), so a
journal replays to the same state whichever runs it. The state structs, `FeeSchedule`, `CASH`
and `FEE_ACCOUNT` are defined once, in the .py modules, and imported here.

What differs is how, never what: the same decisions and the same exact integers.

* The classes are `cdef class`es whose fields are read and written as C struct members, and
  the calls between them (a hold looking up its balance, a settlement crediting accounts, the
  cash a buy must hold) are C calls instead of Python method calls.
* Amounts stay Python ints (`object`), so they keep Python's arbitrary precision: a balance is
  an unbounded sum, and nothing here ever wraps. Only the products (notional, fees, the cash a
  buy holds) are worked out in C, and only when every factor is an `int` in 0..2**63-1 and no
  step overflows (checked by the compiler's overflow builtins); any other case takes the same
  Python expression as risk.py. Non-negative operands make C's division Python's floor.
* `Balance` and `Hold` are not tracked by the cyclic garbage collector: they only refer to
  ints, strings and (a hold) its balance, so they can never be part of a cycle.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow

from clearing.accounts import (
    CASH,
    FEE_ACCOUNT,
    AccountsState,
    BalanceState,
    InsufficientFunds,
)
from clearing.risk import BPS, HoldState, RiskState, Settlement

# Module-level C references: reading them costs nothing, unlike a global lookup.
# The SHA-256 of compiled_clearing.pxd this module was built with (setup.py defines the macro):
# compiled_core, compiled against the same file, refuses to load beside a module built from
# another (exchange/compiled_core.pyx, `check_interfaces`). "" when built without setup.py.
cdef extern from *:
    """
    #ifndef HOGX_CLEARING_PXD_DIGEST
    #define HOGX_CLEARING_PXD_DIGEST ""
    #endif
    """
    const char* HOGX_CLEARING_PXD_DIGEST

PXD_DIGEST = HOGX_CLEARING_PXD_DIGEST.decode("ascii")

cdef object _CASH = CASH
cdef object _FEE_ACCOUNT = FEE_ACCOUNT
cdef object _BPS = BPS
cdef object _AccountsState = AccountsState
cdef object _BalanceState = BalanceState
cdef object _InsufficientFunds = InsufficientFunds
cdef object _HoldState = HoldState
cdef object _RiskState = RiskState
cdef object _Settlement = Settlement


cdef long long _C_BPS = BPS

cdef extern from *:
    # GCC and Clang builtins: the exact result's low bits in `out`, true when it overflowed
    bint _mul_overflows "__builtin_mul_overflow" (long long a, long long b, long long *out) nogil
    bint _add_overflows "__builtin_add_overflow" (long long a, long long b, long long *out) nogil


cdef inline bint _small(object value, long long *out) noexcept:
    """True, with `value` in `out`, when `value` is exactly an `int` (no bool or other subclass:
    those keep Python's own arithmetic) in 0..2**63-1 (non-negative: there C's division is
    Python's floor division)."""
    cdef int overflow = 0
    if type(value) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)  # an int: it cannot fail
    return overflow == 0 and out[0] >= 0


cdef inline object _notional(object price, object quantity, object lot_size):
    """`price * quantity * lot_size`."""
    cdef long long p, q, l, pq, n
    if (
        _small(price, &p) and _small(quantity, &q) and _small(lot_size, &l)
        and not _mul_overflows(p, q, &pq) and not _mul_overflows(pq, l, &n)
    ):
        return n
    return price * quantity * lot_size


cdef inline object _fee(object notional, object fee_bps):
    """`risk.fee_vnd`: `notional * fee_bps // BPS`."""
    cdef long long n, b, product
    if _small(notional, &n) and _small(fee_bps, &b) and not _mul_overflows(n, b, &product):
        return product // _C_BPS
    return notional * fee_bps // _BPS


cdef inline object _cash_to_hold(object price, object quantity, object lot_size,
                                 object max_fee_bps):
    """`risk.cash_to_hold`: notional plus the largest fee (`risk.fee_vnd`), rounded down."""
    cdef long long p, q, l, f, pq, n, nf, total
    if (
        _small(price, &p) and _small(quantity, &q) and _small(lot_size, &l)
        and _small(max_fee_bps, &f)
        and not _mul_overflows(p, q, &pq) and not _mul_overflows(pq, l, &n)
        and not _mul_overflows(n, f, &nf) and not _add_overflows(n, nf // _C_BPS, &total)
    ):
        return total
    notional = price * quantity * lot_size
    return notional + notional * max_fee_bps // _BPS


# ---------------------------------------------------------------------- accounts.py


@cython.no_gc
@cython.freelist(64)
cdef class Balance:
    """One participant's holding of one asset; integers, never negative."""

    def __init__(self, available=0, reserved=0):
        self.available = available
        self.reserved = reserved


cdef inline Balance _new_balance(object available, object reserved):
    cdef Balance balance = Balance.__new__(Balance)
    balance.available = available
    balance.reserved = reserved
    return balance


cdef class Accounts:
    """All custody balances, with the movements the market is allowed to make between them."""

    def __init__(self):
        self._balances = {}
        self._net_deposits = {}

    # ------------------------------------------------------------------ queries

    cdef inline Balance _balance(self, object participant_id, object asset):
        owned = self._balances.get(participant_id)
        if owned is None:
            owned = self._balances[participant_id] = {}
        found = (<dict>owned).get(asset)
        if found is not None:
            return <Balance>found
        cdef Balance balance = _new_balance(0, 0)
        (<dict>owned)[asset] = balance
        return balance

    cdef inline int _credit(self, object participant_id, object asset, object amount) except -1:
        """Add `amount` to what `participant_id` has available of `asset`."""
        cdef Balance balance = self._balance(participant_id, asset)
        balance.available += amount
        return 0

    cdef inline object _available(self, object participant_id, object asset):
        owned = self._balances.get(participant_id)
        if owned is None:
            return 0
        found = (<dict>owned).get(asset)
        return (<Balance>found).available if found is not None else 0

    cdef list _each(self):
        """`(participant_id, asset, balance)` of every balance, in no particular order."""
        found = []
        for participant_id, owned in self._balances.items():
            for asset, balance in (<dict>owned).items():
                found.append((participant_id, asset, balance))
        return found

    def balance(self, participant_id, asset):
        """The live balance (created empty on first use); callers must not mutate it."""
        return self._balance(participant_id, asset)

    def available(self, participant_id, asset):
        return self._available(participant_id, asset)

    def balances_of(self, participant_id):
        """`(asset, available, reserved)` of one participant, sorted by asset."""
        cdef Balance b
        found = []
        for asset, value in self._balances.get(participant_id, {}).items():
            b = <Balance>value
            found.append((asset, b.available, b.reserved))
        found.sort()
        return found

    def reserved_by_account(self):
        """Every non-zero reserved amount, by (participant, asset)."""
        cdef Balance b
        found = {}
        for participant_id, asset, value in self._each():
            b = <Balance>value
            if b.reserved:
                found[(participant_id, asset)] = b.reserved
        return found

    def net_deposits(self, asset):
        return self._net_deposits.get(asset, 0)

    # ------------------------------------------------------------------ movements

    cdef _deposit(self, object participant_id, object asset, object amount):
        assert amount > 0
        self._credit(participant_id, asset, amount)
        self._net_deposits[asset] = self._net_deposits.get(asset, 0) + amount

    cdef _withdraw(self, object participant_id, object asset, object amount):
        if not 0 < amount <= self._available(participant_id, asset):  # before: no empty balance
            raise _InsufficientFunds(f"withdraw {amount} {asset} from {participant_id}")
        cdef Balance balance = self._balance(participant_id, asset)
        balance.available -= amount
        self._net_deposits[asset] -= amount

    def deposit(self, participant_id, asset, amount):
        self._deposit(participant_id, asset, amount)

    def can_withdraw(self, participant_id, asset, amount):
        return 0 < amount <= self._available(participant_id, asset)

    def withdraw(self, participant_id, asset, amount):
        """Take `amount` out of custody; never touches what is reserved."""
        self._withdraw(participant_id, asset, amount)

    def transfer_out(self, participant_id, amount):
        """Cash leaves this shard's custody for another shard's: like a withdrawal."""
        self._withdraw(participant_id, _CASH, amount)

    def transfer_in(self, participant_id, amount):
        """Cash arrives from another shard's custody: like a deposit."""
        self._deposit(participant_id, _CASH, amount)

    def can_reserve(self, participant_id, asset, amount):
        return 0 <= amount <= self._available(participant_id, asset)

    def reserve(self, participant_id, asset, amount):
        if not 0 <= amount <= self._available(participant_id, asset):  # before: no empty balance
            raise _InsufficientFunds(f"reserve {amount} {asset} for {participant_id}")
        cdef Balance balance = self._balance(participant_id, asset)
        balance.available -= amount
        balance.reserved += amount

    def release(self, participant_id, asset, amount):
        cdef Balance balance = self._balance(participant_id, asset)
        assert 0 <= amount <= balance.reserved, (participant_id, asset, amount, balance.reserved)
        balance.reserved -= amount
        balance.available += amount

    def pay_from_reserved(self, payer, payee, asset, amount):
        """Move reserved funds of `payer` to the available funds of `payee` (settlement)."""
        cdef Balance source = self._balance(payer, asset)
        assert 0 <= amount <= source.reserved, (payer, asset, amount, source.reserved)
        source.reserved -= amount
        self._credit(payee, asset, amount)

    def pay_from_available(self, payer, payee, asset, amount):
        cdef Balance source = self._balance(payer, asset)
        assert 0 <= amount <= source.available, (payer, asset, amount, source.available)
        source.available -= amount
        self._credit(payee, asset, amount)

    # ------------------------------------------------------------------ invariants and state

    def check_invariants(self):
        """Every asset sums to its net deposits; no balance is negative. Raises AssertionError."""
        cdef Balance balance
        totals = {}
        for participant_id, asset, value in self._each():
            balance = <Balance>value
            assert balance.available >= 0, (participant_id, asset, balance.available)
            assert balance.reserved >= 0, (participant_id, asset, balance.reserved)
            totals[asset] = totals.get(asset, 0) + balance.available + balance.reserved
        for asset in totals.keys() | self._net_deposits.keys():
            assert totals.get(asset, 0) == self._net_deposits.get(asset, 0), asset

    def state(self):
        cdef Balance b
        balances = []
        # (participant, asset) pairs are unique, so the sort never compares two balances
        for participant_id, asset, value in sorted(self._each()):
            b = <Balance>value
            if b.available or b.reserved:
                balances.append(_BalanceState(participant_id, asset, b.available, b.reserved))
        return _AccountsState(balances, dict(sorted(self._net_deposits.items())))

    @classmethod
    def from_state(cls, state):
        cdef Accounts accounts = cls()
        cdef Balance balance
        for b in state.balances:
            balance = accounts._balance(b.participant_id, b.asset)
            balance.available = b.available
            balance.reserved = b.reserved
        accounts._net_deposits = dict(state.net_deposits)
        return accounts


# ---------------------------------------------------------------------- risk.py


@cython.no_gc
@cython.freelist(64)
cdef class Hold:
    """What one open order has reserved: `amount` of `asset`, owned by `participant_id`.

    Keeps a reference to the reserving balance so that settling and releasing need no lookup.
    """

    def __init__(self, order_id, participant_id, asset, amount, limit_price, Balance balance):
        self.order_id = order_id
        self.participant_id = participant_id
        self.asset = asset
        self.amount = amount
        self.limit_price = limit_price
        self.balance = balance


cdef inline Hold _new_hold(object order_id, object participant_id, object asset,
                           object amount, object limit_price, Balance balance):
    cdef Hold hold = Hold.__new__(Hold)
    hold.order_id = order_id
    hold.participant_id = participant_id
    hold.asset = asset
    hold.amount = amount
    hold.limit_price = limit_price
    hold.balance = balance
    return hold


cdef class Risk:
    """Holds for open orders and the settlement of trades against them.

    The `def` methods the trading path calls only call their C twins (`hold_for_buy_c` and so
    on, declared in compiled_clearing.pxd), which `exchange/compiled_core.pyx` calls directly.
    """

    def __init__(self, Accounts accounts):
        self.accounts = accounts
        self._holds = {}

    # ------------------------------------------------------------------ placing

    def hold_for_buy(self, order_id, participant_id, price, quantity, lot_size, fees):
        """Reserve the cash a buy needs; returns the amount, or None (nothing held) if short."""
        return self.hold_for_buy_c(order_id, participant_id, price, quantity, lot_size, fees)

    cdef object hold_for_buy_c(
        self, object order_id, object participant_id, object price, object quantity,
        object lot_size, object fees,
    ):
        amount = _cash_to_hold(price, quantity, lot_size, fees.max_bps)
        return self._hold(order_id, participant_id, _CASH, amount, price)

    def hold_for_sell(self, order_id, participant_id, symbol, quantity):
        """Reserve the goods a sell delivers; returns the lots, or None (nothing held) if short."""
        return self.hold_for_sell_c(order_id, participant_id, symbol, quantity)

    cdef object hold_for_sell_c(
        self, object order_id, object participant_id, object symbol, object quantity
    ):
        return self._hold(order_id, participant_id, symbol, quantity, 0)

    cdef object _hold(self, object order_id, object participant_id, object asset,
                      object amount, object limit_price):
        assert order_id not in self._holds, order_id
        assert amount >= 0
        cdef Balance balance
        # risk.py's available-then-balance in one lookup: a refusal makes no empty balance.
        owned = self.accounts._balances.get(participant_id)
        found = None if owned is None else (<dict>owned).get(asset)
        if found is None:
            if amount > 0:
                return None
            balance = self.accounts._balance(participant_id, asset)
        else:
            balance = <Balance>found
            if amount > balance.available:
                return None
        balance.available -= amount
        balance.reserved += amount
        self._holds[order_id] = _new_hold(
            order_id, participant_id, asset, amount, limit_price, balance
        )
        return amount

    def resize_buy(self, order_id, price, remaining, lot_size, fees):
        """Re-base a buy's hold on a new limit price and remaining quantity (amend)."""
        return self.resize_buy_c(order_id, price, remaining, lot_size, fees)

    cdef bint resize_buy_c(
        self, object order_id, object price, object remaining, object lot_size, object fees
    ) except -1:
        cdef Hold hold = self._holds[order_id]
        return self._resize(hold, _cash_to_hold(price, remaining, lot_size, fees.max_bps), price)

    def resize_sell(self, order_id, remaining):
        return self.resize_sell_c(order_id, remaining)

    cdef bint resize_sell_c(self, object order_id, object remaining) except -1:
        return self._resize(self._holds[order_id], remaining, 0)

    cdef bint _resize(self, Hold hold, object amount, object limit_price) except -1:
        delta = amount - hold.amount
        cdef Balance balance = hold.balance
        if delta > balance.available:
            return False
        balance.available -= delta  # a negative delta releases
        balance.reserved += delta
        hold.amount = amount
        hold.limit_price = limit_price
        return True

    def release(self, order_id):
        """The order is closed: release whatever its hold still has; returns that amount."""
        return self.release_c(order_id)

    cdef object release_c(self, object order_id):
        found = self._holds.pop(order_id, None)
        if found is None:
            return 0
        cdef Hold hold = <Hold>found
        amount = hold.amount
        cdef Balance balance
        if amount:
            balance = hold.balance
            assert amount <= balance.reserved
            balance.reserved -= amount
            balance.available += amount
        return amount

    def held(self, order_id):
        return self.held_c(order_id)

    cdef object held_c(self, object order_id):
        found = self._holds.get(order_id)
        return (<Hold>found).amount if found is not None else 0

    # ------------------------------------------------------------------ settling

    def settle(
        self,
        symbol,
        trade_id,
        buy_order_id,
        sell_order_id,
        price,
        quantity,
        buy_remaining,
        lot_size,
        buyer_fee_bps,
        seller_fee_bps,
        max_fee_bps,
    ):
        """Settle one trade delivery versus payment out of both orders' holds."""
        return self.settle_c(
            symbol, trade_id, buy_order_id, sell_order_id, price, quantity, buy_remaining,
            lot_size, buyer_fee_bps, seller_fee_bps, max_fee_bps,
        )

    cdef object settle_c(
        self, object symbol, object trade_id, object buy_order_id, object sell_order_id,
        object price, object quantity, object buy_remaining, object lot_size,
        object buyer_fee_bps, object seller_fee_bps, object max_fee_bps,
    ):
        cdef Accounts accounts = self.accounts
        cdef Hold buy_hold = self._holds[buy_order_id]
        cdef Hold sell_hold = self._holds[sell_order_id]
        buyer, seller = buy_hold.participant_id, sell_hold.participant_id
        notional = _notional(price, quantity, lot_size)
        buyer_fee = _fee(notional, buyer_fee_bps)
        seller_fee = _fee(notional, seller_fee_bps)

        # Payment: the buyer's held cash pays the seller (net of the seller's fee) and the
        # exchange's fee account; what the hold no longer needs goes back to the buyer.
        still_needed = _cash_to_hold(buy_hold.limit_price, buy_remaining, lot_size, max_fee_bps)
        released = buy_hold.amount - notional - buyer_fee - still_needed
        assert released >= 0, (buy_order_id, buy_hold.amount, notional, buyer_fee, still_needed)
        cdef Balance buyer_cash = buy_hold.balance
        buyer_cash.reserved -= buy_hold.amount - still_needed
        buyer_cash.available += released
        buy_hold.amount = still_needed
        accounts._credit(seller, _CASH, notional - seller_fee)
        if buyer_fee or seller_fee:
            accounts._credit(_FEE_ACCOUNT, _CASH, buyer_fee + seller_fee)

        # Delivery: the seller's held goods go to the buyer.
        assert quantity <= sell_hold.amount, (sell_order_id, quantity, sell_hold.amount)
        sell_hold.balance.reserved -= quantity
        sell_hold.amount -= quantity
        accounts._credit(buyer, symbol, quantity)
        return _Settlement(
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

    def check_invariants(self):
        """Holds add up to exactly what the accounts show as reserved."""
        cdef Hold hold
        reserved = {}
        for value in self._holds.values():
            hold = <Hold>value
            assert hold.amount >= 0, hold.order_id
            assert hold.balance is self.accounts._balance(hold.participant_id, hold.asset)
            key = (hold.participant_id, hold.asset)
            reserved[key] = reserved.get(key, 0) + hold.amount
        assert reserved == self.accounts.reserved_by_account() | {
            key: 0 for key, amount in reserved.items() if amount == 0
        }
        self.accounts.check_invariants()

    def state(self):
        cdef Hold h
        holds = []
        for _, value in sorted(self._holds.items()):
            h = <Hold>value
            holds.append(_HoldState(h.order_id, h.participant_id, h.asset, h.amount, h.limit_price))
        return _RiskState(holds)

    @classmethod
    def from_state(cls, Accounts accounts, state):
        cdef Risk risk = cls(accounts)
        for h in state.holds:
            balance = accounts._balance(h.participant_id, h.asset)
            risk._holds[h.order_id] = _new_hold(
                h.order_id, h.participant_id, h.asset, h.amount, h.limit_price, balance
            )
        return risk
