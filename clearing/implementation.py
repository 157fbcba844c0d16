"""Which `Accounts` and `Risk` the exchange runs: the compiled twins when they are built.

`accounts.py` and `risk.py` are the readable statement of the custody and pre-trade risk rules,
and the fallback when the extension (`compiled_clearing.pyx`) was not built (no C compiler at
install time). `HOGX_PURE_PYTHON_CLEARING=1` forces them, for debugging or to compare. Both
behave identically; the tests hold them to that. Take both classes from here, never one from
each: a compiled `Risk` holds a compiled `Accounts`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from clearing import accounts, risk

PURE_PYTHON_ENV = "HOGX_PURE_PYTHON_CLEARING"

PythonAccounts = accounts.Accounts
PythonRisk = risk.Risk
CompiledAccounts: type[accounts.Accounts] | None
CompiledRisk: type[risk.Risk] | None
try:
    from clearing.compiled_clearing import Accounts as CompiledAccounts
    from clearing.compiled_clearing import Risk as CompiledRisk
except ImportError:  # not built: no compiler or no Cython at install time
    CompiledAccounts = CompiledRisk = None

if TYPE_CHECKING:
    # The type checker reads the .py classes: the compiled ones have the same interface.
    from clearing.accounts import Accounts
    from clearing.risk import Risk
elif (
    CompiledAccounts is not None
    and CompiledRisk is not None
    and os.environ.get(PURE_PYTHON_ENV) != "1"
):
    Accounts, Risk = CompiledAccounts, CompiledRisk
else:
    Accounts, Risk = PythonAccounts, PythonRisk

CLEARING_IMPLEMENTATION = "compiled" if Accounts is CompiledAccounts else "python"
"""Which implementation `Accounts` and `Risk` are: "compiled" or "python"."""

__all__ = [
    "CLEARING_IMPLEMENTATION",
    "Accounts",
    "CompiledAccounts",
    "CompiledRisk",
    "PythonAccounts",
    "PythonRisk",
    "Risk",
]
