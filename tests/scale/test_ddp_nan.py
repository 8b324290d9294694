"""A NaN loss on one DDP process (two gloo processes through the real `mcu` CLI): every process skips the step and the
DivergenceGuard stops every process, instead of one process skipping alone and the other waiting in the gradient
all-reduce for ever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.scale.test_ddp_cli import DATA, HERE, REPO, trainer

pytestmark = [pytest.mark.slow, pytest.mark.ddp]
#: A healthy run of this config takes ~20 s on two busy cores; a hang is cut off here.
HANG_S = 300


def test_a_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    from mcu_lightning.models import save_model, tiny_causal_lm

    model = save_model(tiny_causal_lm(tokenizer="fictitious", hidden_size=32, intermediate_size=64), tmp_path / "m")
    config = {
        "seed_everything": 0,
        "trainer": trainer(tmp_path, max_steps=8),
        "model": {
            "class_path": "mcu_lightning.modules.UnlearningModule",
            "init_args": {
                "model": str(model),
                "loss": {"class_path": "rank_dump.NaNOnOneRank", "init_args": {"at_call": 3}},
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}},
                "output_dir": str(tmp_path / "out"),
            },
        },
        "data": DATA,
    }
    config["trainer"]["callbacks"] = [
        {"class_path": "mcu_lightning.callbacks.DivergenceGuard", "init_args": {"dirpath": str(tmp_path / "ck")}},
        {"class_path": "rank_dump.DumpTrainable", "init_args": {"dirpath": str(tmp_path)}},
    ]
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "mcu_lightning.cli", "fit", "--config", str(path)]
    args += ["--trainer", str(REPO / "configs/trainer/ddp_cpu.yaml")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks: Lightning's launcher started rank 1 in this session
        proc.communicate()
        pytest.fail(f"the DDP run hung after one rank's NaN (killed after {HANG_S} s)")
    assert proc.returncode == 0, output[-3000:]
    record = json.loads((tmp_path / "out" / "divergence.json").read_text())
    assert any(r.startswith("rank 1: train/loss = nan") for r in record["reasons"]), record
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:  # every rank skipped the NaN step and restored the same last good weights
        assert torch.isfinite(rank0[name]).all(), name
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
