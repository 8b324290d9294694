"""Shared pieces of the reliability tests: tiny endpoints, a real SIGKILL at a chosen step, file hashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from mcu_lightning.models.io import save_model
from mcu_lightning.models.small import MLP

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
KILL_ENV = "MCU_TEST_KILL"


class KillAtStep(Callback):
    """SIGKILL this very process at a chosen point (no cleanup, no finally), read from ``MCU_TEST_KILL``.

    ``MCU_TEST_KILL=after:k`` kills when step k+1 starts, i.e. right after step k and its checkpoint (with a
    checkpoint every step, ``last.ckpt`` then holds step k); ``k`` equal to the run's last step kills in
    ``on_train_end``, after the final checkpoint. ``MCU_TEST_KILL=1``: after the ``step`` given here.
    ``0`` or unset: no kill.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def kill_after(self) -> int | None:
        value = os.environ.get(KILL_ENV, "0")
        if value.startswith("after:"):
            return int(value.removeprefix("after:"))
        return self.step if value == "1" else None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        after = self.kill_after()
        if after is not None and trainer.global_step == after:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        after = self.kill_after()
        if after is not None and trainer.global_step == after:
            os.kill(os.getpid(), signal.SIGKILL)


def mlp_endpoint(folder: Path, seed: int, hidden: int = 16) -> Path:
    """A digits MLP (64 -> hidden -> 10) with weights from ``seed``, saved as an endpoint folder."""
    torch.manual_seed(seed)
    model = MLP(in_features=64, num_classes=10, hidden=hidden, depth=1)
    return save_model(model, folder)


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (or of ``root`` itself), keyed by relative path."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def cli_env(kill: bool | int = False) -> dict[str, str]:
    # one intra-op thread: bitwise-reproducible CPU reductions whatever the machine's load
    # True: after the config's step; an int k: right after step k (see KillAtStep)
    code = f"after:{kill}" if not isinstance(kill, bool) else str(int(kill))
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: code, "OMP_NUM_THREADS": "1"}
    env.pop("MCU_TRACEBACK", None)
    return env


def run_cli(args: list[str], cwd: Path, kill: bool | int = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m mcu_lightning.cli ARGS`` in a subprocess (the real entry point, killable for real)."""
    return subprocess.run(
        [sys.executable, "-m", "mcu_lightning.cli", *args],
        cwd=cwd,
        env=cli_env(kill),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(args: list[str], cwd: Path, kill: bool | int = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mcu_lightning.cli", *args],
        cwd=cwd,
        env=cli_env(kill),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_state(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` entries of a Lightning checkpoint whose names start with ``prefix``."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def one_error_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``mcu ARGS`` in this process must exit 2 with exactly one ``error:`` line on stderr; returns that line."""
    from mcu_lightning.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def adamw(lr: float) -> dict[str, Any]:
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}}


def tiny_study(folder: Path, eval_ts: int = 3, curve_steps: int = 3) -> Path:
    """A digits study small enough for a subprocess test: an MLP base and oracle, GradAscent, a curve from the base."""
    folder.mkdir(parents=True, exist_ok=True)
    mlp = {"class_path": "mcu_lightning.models.MLP", "init_args": {"in_features": 64, "hidden": 16, "depth": 1}}
    raw = {
        "name": "tiny",
        "output_dir": "runs",
        "seed": 0,
        "progress": False,
        "checkpoint_every_n_steps": 5,
        "trainer": {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1},
        "data": {
            "class_path": "mcu_lightning.data.ClassificationDataModule",
            "init_args": {"dataset": "digits", "image_size": 8, "forget_fraction": 0.1, "batch_size": 64},
        },
        "base": {"model": mlp, "split": "full", "train": {"max_steps": 3, "optimizer": adamw(0.003)}},
        "oracle": {"split": "retain"},
        "endpoints": [
            {
                "name": "ga",
                "loss": {"class_path": "mcu_lightning.losses.GradAscent"},
                "train": {"max_steps": 2, "optimizer": adamw(5e-4)},
            }
        ],
        "curves": [
            {
                "name": "base-ga",
                "endpoints": ["base", "ga"],
                "train": {"max_steps": curve_steps, "optimizer": adamw(1e-3)},
            }
        ],
        "evaluation": {"suite": {"class_path": "mcu_lightning.metrics.ClassificationSuite"}, "eval_ts": eval_ts},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
