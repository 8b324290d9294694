"""`mcu experiment` killed with SIGKILL in the middle of a curve stage continues from that stage on rerun:
complete stages are skipped (their `stage.json` untouched), the killed stage resumes from its mid-stage
`last.ckpt`, and the report is the one an uninterrupted study writes, byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart" / "experiment.yaml"

pytestmark = pytest.mark.slow
CURVE_STEPS = 120


def reduced_study(tmp_path: Path) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["output_dir"] = "runs"  # relative: two studies in two folders write the same report text
    raw["progress"] = False
    raw["checkpoint_every_n_steps"] = 2
    raw["base"]["model"]["init_args"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    raw["base"]["train"] = {
        "max_epochs": 2,
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
    }
    for endpoint in raw["endpoints"]:
        endpoint["train"] = {
            "max_steps": 3,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}},
        }
    raw["curves"] = [
        dict(
            raw["curves"][0],
            train={
                "max_steps": CURVE_STEPS,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}},
            },
        )
    ]
    raw["evaluation"]["eval_ts"] = 3
    raw["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 4
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def launch(config: Path, cwd: Path, log: Path) -> subprocess.Popen:
    """The study in a subprocess, its output to a file (a full pipe would block it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "mcu_lightning.cli", "experiment", "--config", str(config)],
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def report_files(root: Path) -> dict[str, bytes]:
    report = root / "report"
    return {str(p.relative_to(report)): p.read_bytes() for p in sorted(report.rglob("*")) if p.is_file()}


def test_killed_study_resumes_at_the_killed_stage_and_writes_the_same_report(tmp_path: Path) -> None:
    """Killed during the curve fit right after a checkpoint on an epoch's last batch (2 batches an epoch, a
    checkpoint every 2 steps), then rerun with the same config: complete stages are skipped, the curve resumes,
    and the report is byte-identical to the one of an uninterrupted study run beside it."""
    config = reduced_study(tmp_path)
    (tmp_path / "killed").mkdir()
    (tmp_path / "uninterrupted").mkdir()
    root = tmp_path / "killed" / "runs" / "quickstart"
    curve = root / "curves" / "graddiff-npo"
    last = curve / "checkpoints" / "last.ckpt"
    reference = launch(config, tmp_path / "uninterrupted", tmp_path / "uninterrupted.log")  # on the other core
    proc = launch(config, tmp_path / "killed", tmp_path / "first.log")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a mid-stage checkpoint of the curve
        if last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= 4:
            break
        time.sleep(0.2)
    log = (tmp_path / "first.log").read_text()
    assert proc.poll() is None, f"the study ended before it could be killed: {log[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (curve / "stage.json").exists(), "the killed stage must not be marked complete"
    assert (curve / "stage.partial.json").is_file(), "a started stage records the config it runs"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    killed_at = checkpoint["global_step"]
    assert 0 < killed_at < CURVE_STEPS and killed_at % 2 == 0, "the checkpoint must sit on an epoch's last batch"
    done = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("stage.json")}
    assert len(done) == 4, sorted(str(p) for p in done)  # oracle, base, two endpoints

    rerun = launch(config, tmp_path / "killed", tmp_path / "rerun.log")
    rerun.wait(timeout=600)
    stderr = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, stderr[-3000:]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in done} == done, "complete stages were rerun"
    assert "complete, skipped" in stderr
    assert (curve / "stage.json").is_file()
    resumed = torch.load(curve / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == CURVE_STEPS
    reference.wait(timeout=600)
    assert reference.returncode == 0, (tmp_path / "uninterrupted.log").read_text()[-3000:]
    expected = report_files(tmp_path / "uninterrupted" / "runs" / "quickstart")
    got = report_files(root)
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name] == expected[name], f"report/{name} differs from the uninterrupted study's"
