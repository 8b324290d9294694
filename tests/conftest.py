"""Shared test fixtures: offline everywhere, a per-session cache for the generated data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TOFU_SAMPLE = SHARED / "data" / "tofu_sample"


@pytest.fixture(scope="session", autouse=True)
def _mcu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated datasets and tokenizers go to a temporary cache, never the user's home."""
    cache = tmp_path_factory.mktemp("mcu_cache")
    os.environ["MCU_CACHE"] = str(cache)
    return cache


@pytest.fixture
def tofu_sample() -> Path:
    if not TOFU_SAMPLE.is_dir():
        pytest.skip(f"the shared TOFU sample is not at {TOFU_SAMPLE}")
    return TOFU_SAMPLE
