"""Every writer a later stage reads is atomic: an exception in the middle of a write leaves the destination
with its old content (or absent), never truncated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mcu_lightning.callbacks.checkpoint as checkpoint_io
from mcu_lightning.callbacks import AtomicCheckpointIO
from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.metrics.suite import EvalResult
from mcu_lightning.models.io import load_state_dict, save_model
from mcu_lightning.models.small import MLP


def _truncating_fdopen(real_fdopen):
    """``os.fdopen`` whose files write half of what they are given, then fail (a full disk, a kill)."""

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        write = handle.write

        def half(data):
            write(data[: len(data) // 2])
            raise OSError("No space left on device (simulated mid-write)")

        handle.write = half
        return handle

    return fdopen


def test_checkpoint_io_interrupted_write_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io_plugin = AtomicCheckpointIO()
    io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 3}, path)
    monkeypatch.setattr(checkpoint_io.os, "fdopen", _truncating_fdopen(checkpoint_io.os.fdopen))
    with pytest.raises(OSError, match="simulated mid-write"):
        io_plugin.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 6}, path)
    monkeypatch.undo()
    loaded = torch.load(path, weights_only=False)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_checkpoint_io_first_write_interrupted_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint_io.os, "fdopen", _truncating_fdopen(checkpoint_io.os.fdopen))
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_lightning_trainer_uses_the_atomic_plugin(tmp_path: Path, monkeypatch) -> None:
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    calls = []
    real = checkpoint_io.atomic_write
    monkeypatch.setattr(checkpoint_io, "atomic_write", lambda p, d: calls.append(Path(p)) or real(p, d))
    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=2,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(BoringModel())
    assert calls and calls[-1].name.endswith(".ckpt") and torch.load(calls[-1], weights_only=False)["global_step"] == 2


def test_eval_result_json_interrupted_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    import mcu_lightning.core.atomic as atomic

    path = tmp_path / "test_metrics.json"
    EvalResult(aggregates={"forget/loss": 1.0}, per_sample={}).to_json(path)
    monkeypatch.setattr(atomic.os, "fdopen", _truncating_fdopen(atomic.os.fdopen))
    with pytest.raises(OSError):
        EvalResult(aggregates={"forget/loss": 2.0}, per_sample={}).to_json(path)
    monkeypatch.undo()
    assert json.loads(path.read_text())["aggregates"] == {"forget/loss": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["test_metrics.json"]


def test_report_writer_interrupted_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    import mcu_lightning.core.atomic as atomic

    path = tmp_path / "barrier_summary.json"
    atomic_write(path, b'{"old": true}')
    monkeypatch.setattr(atomic.os, "fdopen", _truncating_fdopen(atomic.os.fdopen))
    with pytest.raises(OSError):
        atomic_write(path, b'{"new": true, "padding": "' + b"x" * 100 + b'"}')
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True} and len(list(tmp_path.iterdir())) == 1


def test_save_model_interrupted_keeps_the_old_model(tmp_path: Path, monkeypatch) -> None:
    import mcu_lightning.models.io as model_io

    torch.manual_seed(0)
    old = MLP(hidden=8, depth=1)
    folder = save_model(old, tmp_path / "model")

    def failing(model: nn.Module, filename: str) -> None:
        Path(filename).write_bytes(b"half a safetensors file")
        raise OSError("killed mid-write (simulated)")

    monkeypatch.setattr(model_io, "_save_safetensors_from", failing)
    with pytest.raises(OSError, match="simulated"):
        save_model(MLP(hidden=8, depth=1), folder)
    monkeypatch.undo()
    state = load_state_dict(folder)
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
