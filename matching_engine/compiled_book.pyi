# The compiled twin of book.py (compiled_book.pyx) has book.py's interface exactly.
from matching_engine.book import OrderBook as OrderBook

__all__ = ["OrderBook"]
