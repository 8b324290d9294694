"""Where the package caches what it builds once (generated data sets, models converted from GGUF files).

``$MCU_CACHE`` when set, else ``$XDG_CACHE_HOME/mcu_lightning`` (the XDG base-directory convention that the
Hugging Face caches follow too), else ``~/.cache/mcu_lightning``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE = "~/.cache/mcu_lightning"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$MCU_CACHE``, else ``$XDG_CACHE_HOME/mcu_lightning``, else ``~/.cache/mcu_lightning``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("MCU_CACHE"):
        return Path(os.environ["MCU_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mcu_lightning"
    return Path(DEFAULT_CACHE).expanduser()
