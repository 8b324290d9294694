"""Every ``super().__init__`` call in ``mcu_lightning/modules`` passes the base class's arguments by keyword, so
reordering two parameters of a base (two ``int``s, two optional paths) cannot silently swap them."""

from __future__ import annotations

import ast
from pathlib import Path

MODULES = Path(__file__).resolve().parents[2] / "mcu_lightning" / "modules"


def _super_init_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "super"
    ]


def test_super_init_takes_keywords_only() -> None:
    calls = 0
    for path in sorted(MODULES.glob("*.py")):
        for call in _super_init_calls(ast.parse(path.read_text())):
            calls += 1
            assert not call.args, f"{path.name}:{call.lineno} passes {len(call.args)} base argument(s) by position"
    assert calls >= 4  # MCUModule, FineTuneModule, UnlearningModule, CurveModule (and RecordedObjective)
