"""Shared pieces of the reliability tests: tiny endpoints, a real SIGKILL at a chosen step, file hashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from mcu_lightning.models.io import save_model
from mcu_lightning.models.small import MLP

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
KILL_ENV = "MCU_TEST_KILL"


class KillAtStep(Callback):
    """SIGKILL this very process when step ``step`` starts, if ``MCU_TEST_KILL=1`` (no cleanup, no finally).

    With checkpoints every 3 steps and ``step=7``, the process dies inside epoch 1 with ``last.ckpt`` at step 6:
    the resumed run must replay steps 7.. on exactly the batches the uninterrupted run saw.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if os.environ.get(KILL_ENV) == "1" and trainer.global_step == self.step:
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


def cli_env(kill: bool = False) -> dict[str, str]:
    # one intra-op thread: bitwise-reproducible CPU reductions whatever the machine's load
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: "1" if kill else "0", "OMP_NUM_THREADS": "1"}
    env.pop("MCU_TRACEBACK", None)
    return env


def run_cli(args: list[str], cwd: Path, kill: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m mcu_lightning.cli ARGS`` in a subprocess (the real entry point, killable for real)."""
    return subprocess.run(
        [sys.executable, "-m", "mcu_lightning.cli", *args],
        cwd=cwd,
        env=cli_env(kill),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(args: list[str], cwd: Path, kill: bool = False) -> subprocess.Popen:
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
