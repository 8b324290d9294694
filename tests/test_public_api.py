"""The public API: every exported name resolves, type checkers see the same names, and importing it stays cheap."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mcu_lightning

INIT = Path(mcu_lightning.__file__)


def _type_checking_imports() -> dict[str, str]:
    """``name -> module`` of the imports under ``if TYPE_CHECKING:`` in the package's ``__init__``."""
    found: dict[str, str] = {}
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                found.update({alias.name: statement.module for alias in statement.names})
    return found


@pytest.mark.parametrize("name", sorted(mcu_lightning.__all__))
def test_every_exported_name_resolves_to_its_module_object(name):
    value = getattr(mcu_lightning, name)
    module = importlib.import_module(mcu_lightning._EXPORTS[name])
    assert value is getattr(module, name)


def test_type_checkers_see_exactly_the_exported_names():
    """``__all__`` and the lazy loader come from the one table; the ``TYPE_CHECKING`` imports repeat it."""
    assert sum(len(names) for names in mcu_lightning._API.values()) == len(mcu_lightning._EXPORTS)  # no name twice
    assert sorted(mcu_lightning.__all__) == sorted(mcu_lightning._EXPORTS)
    assert _type_checking_imports() == mcu_lightning._EXPORTS


def test_the_names_a_user_reaches_for_are_exported():
    for name in ("RMU", "DivergenceGuard", "lora_curve", "CurveModule", "Slerp", "Ensemble", "metric_plane", "ties"):
        assert name in mcu_lightning.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        mcu_lightning.Nope  # noqa: B018


def test_importing_the_package_imports_no_torch():
    code = "import sys, mcu_lightning; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
