"""EvaluateDuringTraining: the suite while unlearning, TensorBoard scalars, the best checkpoint and ``select: best``.

The DDP test runs `python -m mcu_lightning.cli fit` on two gloo processes, keeps every epoch's checkpoint, and
re-evaluates each in this one process: the scores it logged and the checkpoint it selected are one process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from mcu_lightning.callbacks import EvaluateDuringTraining
from mcu_lightning.callbacks.during_training import BEST_CHECKPOINT, HISTORY_FILE
from mcu_lightning.core.errors import InputError
from mcu_lightning.data import QADataModule
from mcu_lightning.losses import GradDiff
from mcu_lightning.metrics import QASuite
from mcu_lightning.models import save_model, tiny_causal_lm
from mcu_lightning.modules import UnlearningModule

REPO = Path(__file__).resolve().parents[2]
SCORE = {"forget/loss": 1.0, "retain/loss": -1.0}  # unlearned forget, kept retain: no oracle needed
DATA = {"forget_split": "forget10", "num_people": 20, "batch_size": 4, "eval_batch_size": 16, "max_length": 48}
SPLITS = ["forget", "retain", "holdout"]


def _module(out: Path, select: str, model=None, **during) -> UnlearningModule:
    seed_everything(0)
    model = model or tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    callback = EvaluateDuringTraining(score=SCORE, select=select, **during)
    return UnlearningModule(
        model, GradDiff(), optimizer=partial(torch.optim.AdamW, lr=3e-2), suite=QASuite(rouge=False),
        output_dir=str(out), during_training=callback, export=False,
    )  # fmt: skip


def _fit(module: UnlearningModule, out: Path, epochs: int = 4) -> None:
    trainer = Trainer(
        accelerator="cpu", max_epochs=epochs, logger=TensorBoardLogger(str(out), name="tb"), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    with pytest.warns(UserWarning):  # no oracle: forget quality / privleak NaN
        trainer.fit(module, datamodule=QADataModule(**DATA, eval_splits=SPLITS))


def _trainable(module: UnlearningModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def test_best_checkpoint_and_select(tmp_path: Path) -> None:
    """GradDiff drives the forget loss up every epoch; ``mode: min`` then prefers an early epoch to the last."""
    out = tmp_path / "best"
    module = _module(out, "best", mode="min")
    _fit(module, out)
    history = json.loads((out / HISTORY_FILE).read_text())
    scores = [entry["score"] for entry in history["history"]]
    assert len(scores) == 4 and len(set(scores)) == 4
    for entry in history["history"]:
        agg = entry["aggregates"]
        assert entry["score"] == pytest.approx(agg["forget/loss"] - agg["retain/loss"])
    best = min(range(4), key=scores.__getitem__)
    assert history["best"]["epoch"] == best != 3
    saved = torch.load(out / "checkpoints" / BEST_CHECKPOINT, weights_only=False)
    assert saved["epoch"] == best
    final = _trainable(module)
    for name, value in final.items():  # select: best -> the module leaves fit with the best weights
        assert torch.equal(value, saved["state_dict"][name]), name

    # TensorBoard got one scalar per evaluation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "tb").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [round(e.value, 5) for e in events.Scalars("during/score")] == [round(s, 5) for s in scores]

    last_out = tmp_path / "last"  # select: last keeps the last weights (same seed, same run otherwise)
    last = _module(last_out, "last", mode="min")
    _fit(last, last_out)
    assert json.loads((last_out / HISTORY_FILE).read_text())["history"] == history["history"]
    assert any(not torch.equal(v, final[n]) for n, v in _trainable(last).items())


def test_every_n_steps_and_bad_settings(tmp_path: Path) -> None:
    module = _module(tmp_path, "last", every_n_epochs=None, every_n_steps=3, limit_batches=1)
    _fit(module, tmp_path, epochs=1)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())["history"]
    assert [entry["step"] for entry in history] == [3]  # 4 batches of 14 forget rows: steps 1..4
    with pytest.raises(InputError, match="never runs"):
        EvaluateDuringTraining(score=SCORE, every_n_epochs=None)
    with pytest.raises(InputError, match="select='top'"):
        EvaluateDuringTraining(score=SCORE, select="top")
    with pytest.raises(InputError, match=r"needs \['model_utility'\].*it reports"):
        EvaluateDuringTraining(score={"model_utility": 1.0}).score({"forget/loss": 1.0})


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_selects_the_checkpoint_one_process_selects(tmp_path: Path) -> None:
    start = save_model(tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32), tmp_path / "m")
    config = {
        "seed_everything": 0,
        "trainer": {
            "default_root_dir": str(tmp_path), "max_epochs": 3, "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "limit_val_batches": 0, "num_sanity_val_steps": 0,
            "callbacks": [{
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(tmp_path / "epochs"), "save_top_k": -1, "every_n_epochs": 1},
            }],
        },
        "model": {
            "class_path": "mcu_lightning.modules.UnlearningModule",
            "init_args": {
                "model": str(start),
                "loss": {"class_path": "mcu_lightning.losses.GradDiff"},
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-2}},
                "suite": {"class_path": "mcu_lightning.metrics.QASuite", "init_args": {"rouge": False}},
                "output_dir": str(tmp_path / "out"),
                "during_training": {
                    "class_path": "mcu_lightning.callbacks.EvaluateDuringTraining",
                    "init_args": {"score": SCORE, "select": "best"},
                },
            },
        },
        "data": {"class_path": "mcu_lightning.data.QADataModule", "init_args": {**DATA, "eval_splits": SPLITS}},
    }  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mcu_lightning.cli", "fit", "--config", str(path)]
    command += ["--trainer", str(REPO / "configs/trainer/ddp_cpu.yaml")]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    history = json.loads((tmp_path / "out" / HISTORY_FILE).read_text())
    callback = EvaluateDuringTraining(score=SCORE)
    data = QADataModule(**DATA, eval_splits=SPLITS)
    data.setup("test")
    scores = []
    for epoch in range(3):  # each epoch's weights, evaluated here on one process
        (checkpoint,) = (tmp_path / "epochs").glob(f"epoch={epoch}-*.ckpt")
        state = torch.load(checkpoint, weights_only=False)["state_dict"]
        model = tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32)
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        model.eval()
        suite = QASuite(rouge=False)
        with pytest.warns(UserWarning):
            for split in SPLITS:
                for batch in data.eval_dataloader(split):
                    suite.update(model, split, batch)
            scores.append(callback.score(suite.compute().aggregates))
    assert [entry["score"] for entry in history["history"]] == pytest.approx(scores, rel=1e-9, abs=1e-12)
    best = max(range(3), key=scores.__getitem__)
    assert history["best"]["epoch"] == best
    best_state = torch.load(tmp_path / "out" / "checkpoints" / BEST_CHECKPOINT, weights_only=False)["state_dict"]
    (chosen,) = (tmp_path / "epochs").glob(f"epoch={best}-*.ckpt")
    for name, value in torch.load(chosen, weights_only=False)["state_dict"].items():
        assert torch.equal(value, best_state[name]), name
