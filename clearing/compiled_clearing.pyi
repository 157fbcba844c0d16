# The compiled twin of accounts.py and risk.py (compiled_clearing.pyx) has their interface exactly.
from clearing.accounts import Accounts as Accounts
from clearing.accounts import Balance as Balance
from clearing.risk import Hold as Hold
from clearing.risk import Risk as Risk

# The SHA-256 of compiled_clearing.pxd it was built with (exchange/compiled_core.pyx checks it).
PXD_DIGEST: str

__all__ = ["PXD_DIGEST", "Accounts", "Balance", "Hold", "Risk"]
