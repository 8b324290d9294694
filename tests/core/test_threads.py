"""The ``mcu`` command's intra-op thread count: one for small models, torch's default for large, the variable wins."""

from __future__ import annotations

import pytest
import torch

from mcu_lightning.core import threads


def test_a_small_model_runs_on_one_thread_a_large_one_on_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.choose(107_000, cpu_default=2)[0] == 1
    assert threads.choose(threads.SMALL_MODEL - 1, cpu_default=8)[0] == 1
    count, why = threads.choose(1_240_000_000, cpu_default=8)
    assert count == 8 and "a model of 1.24 B parameters" in why


def test_the_variable_overrides_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.choose(1_000, cpu_default=2) == (3, f"{threads.ENV}=3")


def test_library_use_changes_nothing_and_the_command_says_it_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "_state", {"enabled": False, "said": False})
    before = torch.get_num_threads()
    try:
        assert threads.apply(1_000) is None and torch.get_num_threads() == before
        threads.enable()
        assert threads.apply(1_000) == 1 and threads.apply(2_000) == 1
        assert torch.get_num_threads() == 1
        err = capsys.readouterr().err.splitlines()
        assert err == [
            "mcu: 1 intra-op CPU thread (a model of 1 k parameters, too small to gain from more; "
            "MCU_NUM_THREADS sets it)"
        ]
    finally:
        torch.set_num_threads(before)
