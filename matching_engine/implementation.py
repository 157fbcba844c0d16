"""Which `OrderBook` the exchange runs: the compiled twin of `book.py` when it is built.

`book.py` is the readable statement of the rules and the fallback when the extension was not
built (no C compiler at install time). `HOGX_PURE_PYTHON_BOOK=1` forces it, for debugging or
to compare. Both behave identically; the tests hold them to that.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from matching_engine import book

PURE_PYTHON_ENV = "HOGX_PURE_PYTHON_BOOK"

PythonOrderBook = book.OrderBook
CompiledOrderBook: type[book.OrderBook] | None
try:
    from matching_engine.compiled_book import OrderBook as CompiledOrderBook
except ImportError:  # not built: no compiler or no Cython at install time
    CompiledOrderBook = None

if TYPE_CHECKING:
    # The type checker reads book.py's class: the compiled one has the same interface.
    from matching_engine.book import OrderBook
elif CompiledOrderBook is not None and os.environ.get(PURE_PYTHON_ENV) != "1":
    OrderBook = CompiledOrderBook
else:
    OrderBook = PythonOrderBook

BOOK_IMPLEMENTATION = "compiled" if OrderBook is CompiledOrderBook else "python"
"""Which implementation `OrderBook` is: "compiled" or "python"."""

__all__ = [
    "BOOK_IMPLEMENTATION",
    "CompiledOrderBook",
    "OrderBook",
    "PythonOrderBook",
]
