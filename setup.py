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
        extra_compile_args=["-O2"],
    )
    extensions = list(cythonize([extension], language_level=3, quiet=True))
    for built in extensions:
        # A failed compile (no compiler, no headers) is then a warning, not an error. Set after
        # cythonize(), which makes new Extension objects without this flag.
        built.optional = True
    return extensions


setup(ext_modules=compiled_book())
