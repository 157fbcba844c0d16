"""The compiled core calls the compiled book and clearing as C, through the methods their .pxd
files declare; it is compiled against those files. It loads only beside modules built from the
same ones: Cython checks the sizes of the classes, not their method tables, so a module rebuilt
alone could otherwise take the core's calls into the wrong methods."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
try:
    from clearing import compiled_clearing
    from exchange import compiled_core
    from matching_engine import compiled_book
except ImportError:  # not built: the Python twins run, and these tests have nothing to check
    compiled_core = None

pytestmark = pytest.mark.skipif(
    compiled_core is None and os.environ.get("CI") != "true",
    reason="the compiled twins are not built (no C compiler or Cython at install time)",
)

INTERFACES = {
    "matching_engine.compiled_book": ROOT / "matching_engine" / "compiled_book.pxd",
    "clearing.compiled_clearing": ROOT / "clearing" / "compiled_clearing.pxd",
}


def test_the_built_modules_were_built_from_the_interfaces_in_this_tree() -> None:
    # A .pxd edited without a rebuild (`pip install -e .`) fails here, not in a wrong C call.
    assert compiled_core is not None
    for module in (compiled_book, compiled_clearing):
        on_disk = hashlib.sha256(INTERFACES[module.__name__].read_bytes()).hexdigest()
        assert on_disk == module.PXD_DIGEST, module.__name__
        assert compiled_core.BUILT_AGAINST[module.__name__] == on_disk, module.__name__


def test_the_core_loads_beside_modules_built_from_the_same_interfaces() -> None:
    assert compiled_core is not None
    compiled_core.check_interfaces(compiled_book, compiled_clearing)


@pytest.mark.parametrize("name", sorted(INTERFACES))
def test_the_core_refuses_a_module_built_from_another_interface(name: str) -> None:
    assert compiled_core is not None
    rebuilt_alone = SimpleNamespace(__name__=name, PXD_DIGEST="0" * 64)
    with pytest.raises(ImportError, match="rebuild them together"):
        compiled_core.check_interfaces(rebuilt_alone)
    built_before_the_check = SimpleNamespace(__name__=name)  # no digest at all
    with pytest.raises(ImportError, match="rebuild them together"):
        compiled_core.check_interfaces(built_before_the_check)


@pytest.mark.parametrize("name", sorted(INTERFACES))
def test_the_core_refuses_a_module_whose_build_recorded_no_interface(name: str) -> None:
    """Built without setup.py, a module's digest is "": were the core built so too, the two
    empty digests would match whatever their .pxd files said. An empty one never matches."""
    assert compiled_core is not None
    unrecorded = SimpleNamespace(__name__=name, PXD_DIGEST="")
    built_against = compiled_core.BUILT_AGAINST[name]
    try:
        compiled_core.BUILT_AGAINST[name] = ""  # as if the core had been built without setup.py
        with pytest.raises(ImportError, match="rebuild them together"):
            compiled_core.check_interfaces(unrecorded)
    finally:
        compiled_core.BUILT_AGAINST[name] = built_against
