# The compiled twin of book.py (compiled_book.pyx) has book.py's interface exactly.
from matching_engine.book import OrderBook as OrderBook

# The SHA-256 of compiled_book.pxd it was built with (exchange/compiled_core.pyx checks it).
PXD_DIGEST: str

__all__ = ["PXD_DIGEST", "OrderBook"]
