"""Custody accounts in memory: what each participant holds at the exchange, available and reserved.

One account per participant and asset: `VND` for cash and one goods asset per instrument (whole
lots held in the exchange's custody, named by the instrument's symbol). Every movement between
accounts conserves the total of each asset, so for every asset the sum over all accounts equals
deposits minus withdrawals; nothing is ever negative. Deterministic: no clock, no I/O.

With shards, each shard's accounts hold that shard's allocation of every participant's cash.
Cash transferred out to another shard counts here as withdrawn and cash transferred in as
deposited, so each shard's accounts conserve on their own.
"""

from __future__ import annotations

import msgspec

CASH = "VND"
# The exchange's own account, credited with trading fees.
FEE_ACCOUNT = 0


class Balance:
    """One participant's holding of one asset; integers, never negative."""

    __slots__ = ("available", "reserved")

    def __init__(self, available: int = 0, reserved: int = 0) -> None:
        self.available = available
        self.reserved = reserved


class BalanceState(msgspec.Struct, frozen=True, array_like=True):
    participant_id: int
    asset: str
    available: int
    reserved: int


class AccountsState(msgspec.Struct, frozen=True):
    balances: list[BalanceState]
    net_deposits: dict[str, int]


class InsufficientFunds(Exception):
    """Raised only by code that forgot to check `can_reserve` first: a bug, not a rejection."""


class Accounts:
    """All custody balances, with the movements the market is allowed to make between them."""

    __slots__ = ("_balances", "_net_deposits")

    def __init__(self) -> None:
        # participant_id -> {asset: Balance}: two lookups by keys that hash cheaply (an int
        # is its own hash, a str keeps its hash once computed), where one (participant_id,
        # asset) key was a new tuple to build and hash on every movement
        self._balances: dict[int, dict[str, Balance]] = {}
        self._net_deposits: dict[str, int] = {}

    # ------------------------------------------------------------------ queries

    def balance(self, participant_id: int, asset: str) -> Balance:
        """The live balance (created empty on first use); callers must not mutate it."""
        owned = self._balances.get(participant_id)
        if owned is None:
            owned = self._balances[participant_id] = {}
        balance = owned.get(asset)
        if balance is None:
            balance = owned[asset] = Balance()
        return balance

    def available(self, participant_id: int, asset: str) -> int:
        owned = self._balances.get(participant_id)
        balance = owned.get(asset) if owned is not None else None
        return balance.available if balance is not None else 0

    def _each(self) -> list[tuple[int, str, Balance]]:
        """`(participant_id, asset, balance)` of every balance, in no particular order."""
        return [
            (participant_id, asset, balance)
            for participant_id, owned in self._balances.items()
            for asset, balance in owned.items()
        ]

    def balances_of(self, participant_id: int) -> list[tuple[str, int, int]]:
        """`(asset, available, reserved)` of one participant, sorted by asset."""
        owned = self._balances.get(participant_id, {})
        return sorted((asset, b.available, b.reserved) for asset, b in owned.items())

    def reserved_by_account(self) -> dict[tuple[int, str], int]:
        """Every non-zero reserved amount, by (participant, asset)."""
        return {
            (participant_id, asset): b.reserved
            for participant_id, asset, b in self._each()
            if b.reserved
        }

    def net_deposits(self, asset: str) -> int:
        return self._net_deposits.get(asset, 0)

    # ------------------------------------------------------------------ movements

    def deposit(self, participant_id: int, asset: str, amount: int) -> None:
        assert amount > 0
        self.balance(participant_id, asset).available += amount
        self._net_deposits[asset] = self._net_deposits.get(asset, 0) + amount

    def can_withdraw(self, participant_id: int, asset: str, amount: int) -> bool:
        return 0 < amount <= self.available(participant_id, asset)

    def withdraw(self, participant_id: int, asset: str, amount: int) -> None:
        """Take `amount` out of custody; never touches what is reserved."""
        if not 0 < amount <= self.available(participant_id, asset):  # before: no empty balance
            raise InsufficientFunds(f"withdraw {amount} {asset} from {participant_id}")
        self.balance(participant_id, asset).available -= amount
        self._net_deposits[asset] -= amount

    def transfer_out(self, participant_id: int, amount: int) -> None:
        """Cash leaves this shard's custody for another shard's: like a withdrawal."""
        self.withdraw(participant_id, CASH, amount)

    def transfer_in(self, participant_id: int, amount: int) -> None:
        """Cash arrives from another shard's custody: like a deposit."""
        self.deposit(participant_id, CASH, amount)

    def can_reserve(self, participant_id: int, asset: str, amount: int) -> bool:
        return 0 <= amount <= self.available(participant_id, asset)

    def reserve(self, participant_id: int, asset: str, amount: int) -> None:
        if not self.can_reserve(participant_id, asset, amount):  # before: no empty balance
            raise InsufficientFunds(f"reserve {amount} {asset} for {participant_id}")
        balance = self.balance(participant_id, asset)
        balance.available -= amount
        balance.reserved += amount

    def release(self, participant_id: int, asset: str, amount: int) -> None:
        balance = self.balance(participant_id, asset)
        assert 0 <= amount <= balance.reserved, (participant_id, asset, amount, balance.reserved)
        balance.reserved -= amount
        balance.available += amount

    def pay_from_reserved(self, payer: int, payee: int, asset: str, amount: int) -> None:
        """Move reserved funds of `payer` to the available funds of `payee` (settlement)."""
        source = self.balance(payer, asset)
        assert 0 <= amount <= source.reserved, (payer, asset, amount, source.reserved)
        source.reserved -= amount
        self.balance(payee, asset).available += amount

    def pay_from_available(self, payer: int, payee: int, asset: str, amount: int) -> None:
        source = self.balance(payer, asset)
        assert 0 <= amount <= source.available, (payer, asset, amount, source.available)
        source.available -= amount
        self.balance(payee, asset).available += amount

    # ------------------------------------------------------------------ invariants and state

    def check_invariants(self) -> None:
        """Every asset sums to its net deposits; no balance is negative. Raises AssertionError."""
        totals: dict[str, int] = {}
        for participant_id, asset, balance in self._each():
            assert balance.available >= 0, (participant_id, asset, balance.available)
            assert balance.reserved >= 0, (participant_id, asset, balance.reserved)
            totals[asset] = totals.get(asset, 0) + balance.available + balance.reserved
        for asset in totals.keys() | self._net_deposits.keys():
            assert totals.get(asset, 0) == self._net_deposits.get(asset, 0), asset

    def state(self) -> AccountsState:
        balances = [
            BalanceState(participant_id, asset, b.available, b.reserved)
            # (participant, asset) pairs are unique, so the sort never compares two balances
            for participant_id, asset, b in sorted(self._each())
            if b.available or b.reserved
        ]
        return AccountsState(balances, dict(sorted(self._net_deposits.items())))

    @classmethod
    def from_state(cls, state: AccountsState) -> Accounts:
        accounts = cls()
        for b in state.balances:
            balance = accounts.balance(b.participant_id, b.asset)
            balance.available, balance.reserved = b.available, b.reserved
        accounts._net_deposits = dict(state.net_deposits)
        return accounts
