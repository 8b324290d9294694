"""Class paths named in YAML: resolve them early and, when one is wrong, say which names are close."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from mcu_lightning.core.errors import InputError

#: Where the package's pluggable classes live, for suggestions.
PLUGGABLE_MODULES = (
    "mcu_lightning.losses",
    "mcu_lightning.curves",
    "mcu_lightning.modules",
    "mcu_lightning.data",
    "mcu_lightning.metrics",
    "mcu_lightning.models",
    "mcu_lightning.optim",
    "torch.optim",
)


def known_class_paths() -> list[str]:
    paths = []
    for module_name in PLUGGABLE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        paths += [f"{module_name}.{name}" for name in names if callable(getattr(module, name, None))]
    return paths


def close_matches(class_path: str, limit: int = 3) -> list[str]:
    known = known_class_paths()
    by_name = {path.rsplit(".", 1)[-1].lower(): path for path in known}
    short = class_path.rsplit(".", 1)[-1].lower()
    matches = difflib.get_close_matches(class_path, known, n=limit, cutoff=0.6)
    matches += [by_name[n] for n in difflib.get_close_matches(short, list(by_name), n=limit, cutoff=0.6)]
    return list(dict.fromkeys(matches))[:limit]


def resolve_class_path(class_path: str, what: str = "class_path") -> Any:
    """Import ``pkg.module.Name`` and return the object, or raise one clear ``InputError`` with close matches."""
    module_name, _, name = class_path.rpartition(".")
    obj = None
    if module_name:
        try:
            obj = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            obj = None
    if obj is None:
        suggestions = close_matches(class_path)
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise InputError(f"{what}: unknown class_path {class_path!r}{hint}")
    return obj
