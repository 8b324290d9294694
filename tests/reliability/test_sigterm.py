"""SIGTERM (what SLURM and ``scancel`` send before SIGKILL) stops a study with exit status 143, marks nothing
complete that did not finish, writes no report, and a rerun resumes the stopped stage exactly.

Each study is a subprocess of ``python -m mcu_lightning.cli experiment`` on a tiny digits MLP study (oracle, base,
one endpoint, one curve from the base), the signal sent for real at a fit and at a curve's test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.reliability.helpers import REPO, tiny_study

pytestmark = pytest.mark.slow
CURVE_STEPS = 150


def launch(config: Path) -> subprocess.Popen:
    """The study in a subprocess, its output to a file beside the config (a full pipe would block it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MCU_NUM_THREADS": "1"}
    env.pop("MCU_TRACEBACK", None)
    with open(config.parent / "log.txt", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mcu_lightning.cli", "experiment", "--config", str(config)],
            cwd=config.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def curve_step(last: Path) -> int:
    try:
        return torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    except Exception:  # not there yet, or being replaced
        return -1


def terminate_when(proc: subprocess.Popen, ready: Any, log: Path) -> int:
    """SIGTERM ``proc`` once ``ready()`` holds; its exit status."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, f"the study ended before the signal: {log.read_text()[-2000:]}"
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def stopped_cleanly(root: Path, log: Path) -> None:
    text = log.read_text()
    curve = root / "curves" / "base-ga"
    assert "stopped by SIGTERM during curve 'base-ga'" in text, text[-2000:]
    assert not (curve / "stage.json").exists(), "the stopped stage must not be marked complete"
    assert (curve / "stage.partial.json").is_file()
    assert not (root / "report" / "summary.md").exists(), "a stopped study writes no report"
    assert "report:" not in text


def test_sigterm_during_a_fit_exits_143_and_the_rerun_resumes_exactly(tmp_path: Path) -> None:
    stopped, reference = (
        tiny_study(tmp_path / "stopped", curve_steps=CURVE_STEPS),
        tiny_study(tmp_path / "reference", curve_steps=CURVE_STEPS),
    )
    uninterrupted = launch(reference)  # on the other core
    proc = launch(stopped)
    root = stopped.parent / "runs" / "tiny"
    last = root / "curves" / "base-ga" / "checkpoints" / "last.ckpt"
    status = terminate_when(proc, lambda: 0 < curve_step(last) < CURVE_STEPS, stopped.parent / "log.txt")
    assert status == 143, (stopped.parent / "log.txt").read_text()[-2000:]
    stopped_cleanly(root, stopped.parent / "log.txt")
    assert 0 < curve_step(last) < CURVE_STEPS

    rerun = launch(stopped)
    assert rerun.wait(timeout=300) == 0, (stopped.parent / "log.txt").read_text()[-3000:]
    assert uninterrupted.wait(timeout=300) == 0, (reference.parent / "log.txt").read_text()[-3000:]
    assert "Restored all states from the checkpoint" in (stopped.parent / "log.txt").read_text()
    expected = reference.parent / "runs" / "tiny" / "curves" / "base-ga"
    for name in ("curve_metrics.csv", "barrier_summary.json"):
        assert (root / "curves" / "base-ga" / name).read_bytes() == (expected / name).read_bytes(), name
    got = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    want = torch.load(expected / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_sigterm_during_a_curve_test_exits_143(tmp_path: Path) -> None:
    config = tiny_study(tmp_path, eval_ts=401, curve_steps=CURVE_STEPS)  # a long test: hundreds of points of t
    proc = launch(config)
    root = tmp_path / "runs" / "tiny"
    last = root / "curves" / "base-ga" / "checkpoints" / "last.ckpt"
    fitted = time.monotonic() + 1e9

    def testing() -> bool:  # the fit's final checkpoint is there; a moment later the test of 401 points runs
        nonlocal fitted
        if curve_step(last) == CURVE_STEPS:
            fitted = min(fitted, time.monotonic())
        return time.monotonic() > fitted + 1.0

    status = terminate_when(proc, testing, tmp_path / "log.txt")
    assert status == 143, (tmp_path / "log.txt").read_text()[-2000:]
    stopped_cleanly(root, tmp_path / "log.txt")
    assert not (root / "curves" / "base-ga" / "curve_metrics.csv").exists(), "the test ran to its end"
