"""DDP on CPU (two gloo processes through the real `mcu` CLI) and bf16-mixed, on the embedded QA data.

Each run goes through `python -m mcu_lightning.cli` with configs/trainer/ddp_cpu.yaml, as a user would launch it;
Lightning's DDP launcher starts the second process itself.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mcu_lightning.models import load_model, save_model, tiny_causal_lm
from mcu_lightning.modules import CurveModule

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.slow, pytest.mark.ddp]

DATA = {
    "class_path": "mcu_lightning.data.QADataModule",
    "init_args": {
        "data": "fictitious",
        "tokenizer": "fictitious",
        "forget_split": "forget10",
        "batch_size": 4,
        "eval_batch_size": 16,
        "max_length": 48,
        "eval_splits": ["forget", "retain", "holdout"],
    },
}
SUITE = {
    "class_path": "mcu_lightning.metrics.QASuite",
    "init_args": {"max_new_tokens": 4, "mia_splits": ["forget", "holdout"]},
}


def mcu(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_lightning.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two different tiny LMs on the fictitious vocabulary (random inits are valid endpoints for DDP mechanics)."""
    root = tmp_path_factory.mktemp("ddp_endpoints")
    paths = []
    for seed in (0, 1):
        model = tiny_causal_lm(tokenizer="fictitious", hidden_size=32, intermediate_size=64, seed=seed)
        paths.append(str(save_model(model, root / f"seed{seed}")))
    return paths


def trainer(root: Path, **extra) -> dict:
    return {
        "default_root_dir": str(root),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "limit_val_batches": 0,
        **extra,
    }


def curve_config(root: Path, endpoints: list[str], **extra) -> dict:
    return {
        "seed_everything": 0,
        "trainer": trainer(root, max_steps=4),
        "model": {
            "class_path": "mcu_lightning.modules.CurveModule",
            "init_args": {
                "endpoints": endpoints,
                "objective": {"class_path": "mcu_lightning.losses.NLL", "init_args": {"split": "retain"}},
                "eval_ts": 3,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
                "suite": SUITE,
                "output_dir": str(root / "out"),
                **extra,
            },
        },
        "data": DATA,
    }


def test_curve_control_points_agree_across_ranks(tmp_path: Path, endpoints: list[str]) -> None:
    config = curve_config(tmp_path, endpoints)
    config["trainer"]["callbacks"] = [
        {"class_path": "rank_dump.DumpTrainable", "init_args": {"dirpath": str(tmp_path)}}
    ]
    mcu(
        [
            "fit",
            "--config",
            str(write(tmp_path / "c.yaml", config)),
            "--trainer",
            str(REPO / "configs/trainer/ddp_cpu.yaml"),
        ],
        tmp_path,
    )
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert set(rank0) == {"curve.control_points.0"}
    initial = CurveModule(endpoints=endpoints).curve.control_points[0].detach()
    assert not torch.equal(rank0["curve.control_points.0"], initial), "the control point never moved"
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks after DDP steps"


def test_curve_metrics_under_ddp_equal_one_process(tmp_path: Path, endpoints: list[str]) -> None:
    """`mcu test` of the same curve (at its linear init) on 2 processes and on 1 gives the same aggregates."""
    results = {}
    for name, preset in (("one", "cpu"), ("two", "ddp_cpu")):
        root = tmp_path / name
        root.mkdir()
        path = write(root / "c.yaml", curve_config(root, endpoints))
        mcu(["test", "--config", str(path), "--trainer", str(REPO / f"configs/trainer/{preset}.yaml")], root)
        results[name] = (root / "out" / "curve_metrics.csv").read_text().splitlines()
    one, two = results["one"], results["two"]
    assert one[0] == two[0] and len(one) == 4  # header + 3 values of t
    for row_one, row_two in zip(one[1:], two[1:], strict=True):
        a = [float(v) for v in row_one.split(",")]
        b = [float(v) for v in row_two.split(",")]
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6, nan_ok=True)


def test_unlearning_under_ddp_bf16_mixed_is_finite(tmp_path: Path, endpoints: list[str]) -> None:
    config = {
        "seed_everything": 0,
        "trainer": trainer(tmp_path, max_steps=3, precision="bf16-mixed"),
        "model": {
            "class_path": "mcu_lightning.modules.UnlearningModule",
            "init_args": {
                "model": endpoints[0],
                "loss": {"class_path": "mcu_lightning.losses.NPO", "init_args": {"beta": 0.1}},
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}},
                "suite": SUITE,
                "output_dir": str(tmp_path / "out"),
            },
        },
        "data": DATA,
    }
    config["trainer"]["callbacks"] = [
        {"class_path": "rank_dump.DumpTrainable", "init_args": {"dirpath": str(tmp_path)}}
    ]
    path = write(tmp_path / "u.yaml", config)
    mcu(
        [
            "fit",
            "--config",
            str(path),
            "--trainer",
            str(REPO / "configs/trainer/ddp_cpu.yaml"),
            "--trainer.precision",
            "bf16-mixed",
        ],
        tmp_path,
    )
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.isfinite(rank0[name]).all(), name
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    exported = load_model(tmp_path / "out" / "model")
    before = load_model(endpoints[0]).state_dict()
    after = exported.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before), "unlearning changed nothing"
    mcu(
        [
            "test",
            "--config",
            str(path),
            "--model.init_args.model",
            str(tmp_path / "out" / "model"),
            "--trainer",
            str(REPO / "configs/trainer/cpu.yaml"),
            "--trainer.precision",
            "bf16-mixed",
        ],
        tmp_path,
    )
    metrics = json.loads((tmp_path / "out" / "test_metrics.json").read_text())["aggregates"]
    assert math.isfinite(metrics["forget/loss"]) and math.isfinite(metrics["retain/loss"])
