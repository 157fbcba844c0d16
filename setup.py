"""Builds the compiled twins (matching_engine/compiled_book.pyx, exchange/compiled_journal.pyx,
clearing/compiled_clearing.pyx, exchange/compiled_core.pyx); everything else is in
pyproject.toml. Each extension is optional: without Cython, a C compiler or the headers it needs
(OpenSSL and zlib for the journal codec), the install still succeeds and the exchange runs the
pure-Python twin (matching_engine/book.py, exchange/journal.py, clearing/accounts.py and
clearing/risk.py, exchange/core.py's own trading path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def pxd_digest(macro: str, path: str) -> tuple[str, str]:
    """C macro `macro` defined as the SHA-256 of the .pxd at `path` (a C interface another
    compiled module cimports).

    The module that declares the interface and every module that cimports it are compiled with
    it; at import, compiled_core compares its own with the one the declaring module was built
    with, and refuses to load on a difference (exchange/core.py then runs its Python trading
    path). That is the check Cython does not make: a C method table that changed while the
    classes kept their sizes would otherwise send calls to the wrong methods."""
    return macro, '"' + hashlib.sha256((ROOT / path).read_bytes()).hexdigest() + '"'


def compiled_twins() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython: the pure-Python twins only
        return []
    book_interface = pxd_digest("HOGX_BOOK_PXD_DIGEST", "matching_engine/compiled_book.pxd")
    clearing_interface = pxd_digest("HOGX_CLEARING_PXD_DIGEST", "clearing/compiled_clearing.pxd")
    extensions = [
        Extension(
            "matching_engine.compiled_book",
            ["matching_engine/compiled_book.pyx"],
            define_macros=[book_interface],
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
            define_macros=[clearing_interface],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "exchange.compiled_core",
            ["exchange/compiled_core.pyx"],
            define_macros=[book_interface, clearing_interface],
            extra_compile_args=["-O2"],
        ),
    ]
    # compiled_core cimports compiled_book and compiled_clearing (their .pxd files): the repo
    # root is where `matching_engine.compiled_book` and `clearing.compiled_clearing` are found,
    # and cythonize() then knows that compiled_core depends on those .pxd files, so a change to
    # one regenerates and rebuilds both modules. compiled_core then imports only beside a built
    # compiled_book and compiled_clearing; without them, exchange/core.py runs its own trading
    # path.
    built = list(cythonize(extensions, language_level=3, quiet=True, include_path=[str(ROOT)]))
    for extension in built:
        # A failed compile (no compiler, no headers) is then a warning, not an error. Set after
        # cythonize(), which makes new Extension objects without this flag.
        extension.optional = True
    return built


setup(ext_modules=compiled_twins())
