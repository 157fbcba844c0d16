"""The two `OrderBook` implementations every engine rule test runs against.

`book.py` states the rules; `compiled_book.pyx` is its compiled twin, which the exchange runs
when it is built. A test parametrized with `IMPLEMENTATIONS` runs once for each.
"""

from __future__ import annotations

import os

import pytest

from matching_engine.implementation import CompiledOrderBook, PythonOrderBook

NOT_BUILT = "the compiled book is not built (pip install -e . builds it where a compiler exists)"
# CI builds on a machine with a compiler: there a missing compiled book fails, never skips.
SKIP_COMPILED = CompiledOrderBook is None and os.environ.get("CI") != "true"

IMPLEMENTATIONS = [
    pytest.param(PythonOrderBook, id="python-book"),
    pytest.param(
        CompiledOrderBook,
        id="compiled-book",
        marks=pytest.mark.skipif(SKIP_COMPILED, reason=NOT_BUILT),
    ),
]
