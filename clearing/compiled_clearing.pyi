# The compiled twin of accounts.py and risk.py (compiled_clearing.pyx) has their interface exactly.
from clearing.accounts import Accounts as Accounts
from clearing.accounts import Balance as Balance
from clearing.risk import Hold as Hold
from clearing.risk import Risk as Risk

__all__ = ["Accounts", "Balance", "Hold", "Risk"]
