"""Builds the compiled twins (matching_engine/compiled_book.pyx, exchange/compiled_journal.pyx,
clearing/compiled_clearing.pyx, exchange/compiled_core.pyx); everything else is in
pyproject.toml. Each extension is optional: without Cython, a C compiler or the headers it needs
(OpenSSL and zlib for the journal codec), the install still succeeds and the exchange runs the
pure-Python twin (matching_engine/book.py, exchange/journal.py, clearing/accounts.py and
clearing/risk.py, exchange/core.py's own trading path)."""

from __future__ import annotations

from pathlib import Path

from setuptools import Extension, setup


def compiled_twins() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython: the pure-Python twins only
        return []
    extensions = [
        Extension(
            "matching_engine.compiled_book",
            ["matching_engine/compiled_book.pyx"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "exchange.compiled_journal",
            ["exchange/compiled_journal.pyx"],
            libraries=["crypto", "z"],
            # SHA256_Init and friends are deprecated in OpenSSL 3 but stay, and are the
            # cheapest way to hash 100 bytes: no context allocated per record.
            extra_compile_args=["-O2", "-Wno-deprecated-declarations"],
        ),
        Extension(
            "clearing.compiled_clearing",
            ["clearing/compiled_clearing.pyx"],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "exchange.compiled_core",
            ["exchange/compiled_core.pyx"],
            extra_compile_args=["-O2"],
        ),
    ]
    # compiled_core cimports compiled_clearing (compiled_clearing.pxd): the repo root is where
    # `clearing.compiled_clearing` is found, and cythonize() then knows that compiled_core
    # depends on that .pxd, so a change to it regenerates and rebuilds both. compiled_core then
    # imports only beside a built compiled_clearing; without one, exchange/core.py runs its own
    # trading path.
    root = str(Path(__file__).resolve().parent)
    built = list(cythonize(extensions, language_level=3, quiet=True, include_path=[root]))
    for extension in built:
        # A failed compile (no compiler, no headers) is then a warning, not an error. Set after
        # cythonize(), which makes new Extension objects without this flag.
        extension.optional = True
    return built


setup(ext_modules=compiled_twins())
