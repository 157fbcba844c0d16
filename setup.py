"""Builds the compiled order book (matching_engine/compiled_book.pyx); everything else is in
pyproject.toml. The extension is optional: without Cython or a C compiler the install still
succeeds and the exchange runs the pure-Python book (matching_engine/book.py)."""

from __future__ import annotations

from setuptools import Extension, setup


def compiled_book() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython: the pure-Python book only
        return []
    extension = Extension(
        "matching_engine.compiled_book",
        ["matching_engine/compiled_book.pyx"],
        optional=True,  # a failed compile (no compiler, no headers) is a warning, not an error
        extra_compile_args=["-O2"],
    )
    return list(cythonize([extension], language_level=3, quiet=True))


setup(ext_modules=compiled_book())
