"""Resume after a real SIGKILL at any step: every module killed right after a checkpoint and resumed from
``last.ckpt`` ends bitwise equal to an uninterrupted run with the same seed, at the same epoch and step.

The matrix is module x kill point. Each run is a subprocess of ``python -m mcu_lightning.cli fit`` with one
intra-op thread, checkpointing every step (``save_top_k=-1`` keeps each step's file), 3 epochs x 5 batches
(143 forget digits, batch 32). One killed run per module dies at each kill point in turn, resuming in between:

- after step 1 (the first step),
- after step 5 (the last batch of epoch 0: Lightning resumes it at the start of epoch 1),
- after step 7 (mid-epoch: epoch 1, batch 2 of 5),
- after step 15 (the last step, in ``on_train_end``); the final resume then has nothing left to train.

At each kill, the killed run's checkpoint of that step equals the uninterrupted run's checkpoint of the same step
(weights, optimizer state, epoch, step); after the last resume, the final weights are equal too.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mcu_lightning.data.loader import ResumableDataLoader
from mcu_lightning.data.samplers import EpochRandomSampler, ForgetRetainSampler
from tests.reliability.helpers import CONFIGS, mlp_endpoint, run_cli, start_cli

EPOCHS, STEPS = 3, 15  # 3 epochs x 5 batches
KILL_POINTS = {"first step": 1, "epoch end": 5, "mid-epoch": 7, "last step": STEPS}
MODULES = {
    "finetune": ("finetune", "model."),
    "unlearn": ("unlearn", "model."),
    "unlearn+curriculum": ("unlearn", "model."),
    "curve": ("curve", "curve.control_points"),
}


def _config(tmp_path: Path, module: str) -> Path:
    """The module's test config with a checkpoint after every step, each kept as ``step=N.ckpt``."""
    kind = MODULES[module][0]
    raw = yaml.safe_load((CONFIGS / f"{kind}_digits.yaml").read_text())
    raw["trainer"]["callbacks"][0]["init_args"] = {
        "every_n_train_steps": 1,
        "save_last": True,
        "save_top_k": -1,
        "filename": "{step}",
    }
    if module == "unlearn+curriculum":
        raw["data"]["init_args"]["curriculum"] = {
            "scoring": "loss",
            "pacing": {
                "class_path": "mcu_lightning.data.samplers.LinearPacing",
                "init_args": {"start_fraction": 0.5, "full_at_epoch": 2},
            },
        }
    path = tmp_path / f"{module}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _args(config: Path, run_dir: Path, models: dict[str, Path], module: str) -> list[str]:
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(run_dir)]
    kind = MODULES[module][0]
    if kind == "unlearn":
        return [*args, "--model.init_args.model", str(models["base"])]
    if kind == "finetune":
        return [*args, "--model.init_args.output_dir", str(run_dir)]
    return [*args, f"--model.init_args.endpoints=[{models['a']}, {models['b']}]"]


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def _max_difference(got: dict[str, Any], expected: dict[str, Any], prefix: str) -> float:
    """Largest absolute difference over the trained tensors and the optimizer state (inf if they do not match)."""
    names = sorted(k for k in expected["state_dict"] if k.startswith(prefix))
    tensors = [(got["state_dict"].get(n), expected["state_dict"][n]) for n in names]
    for a, b in zip(got["optimizer_states"], expected["optimizer_states"], strict=True):
        for key, state in b["state"].items():
            tensors += [(a["state"].get(key, {}).get(k), v) for k, v in state.items() if torch.is_tensor(v)]
    worst = 0.0
    for a, b in tensors:
        if a is None or a.shape != b.shape:
            return float("inf")
        worst = max(worst, (a.double() - b.double()).abs().max().item() if a.numel() else 0.0)
    return worst if names else float("inf")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("endpoints")
    return {"base": mlp_endpoint(root / "base", 0), "a": mlp_endpoint(root / "a", 1), "b": mlp_endpoint(root / "b", 2)}


@pytest.mark.slow
@pytest.mark.parametrize("module", list(MODULES))
def test_sigkill_at_every_kind_of_step_then_resume_matches_uninterrupted_run(
    tmp_path: Path, models: dict[str, Path], module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config, prefix = _config(tmp_path, module), MODULES[module][1]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = start_cli(_args(config, reference_dir, models, module), tmp_path)  # on the other core
    killed_at = {}
    for point, step in KILL_POINTS.items():
        resume = ["--ckpt_path", "last"] if point != "first step" else []
        killed = run_cli([*_args(config, killed_dir, models, module), *resume], tmp_path, kill=step)
        assert killed.returncode == -signal.SIGKILL, f"{module}: not killed after {point}:\n{killed.stderr[-3000:]}"
        killed_at[point] = _load(killed_dir / "checkpoints" / "last.ckpt")
    _, stderr = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, stderr[-3000:]
    reference = {step: _load(reference_dir / "checkpoints" / f"step={step}.ckpt") for step in KILL_POINTS.values()}

    differences = {}
    for point, step in KILL_POINTS.items():
        last = killed_at[point]
        assert (last["epoch"], last["global_step"]) == (reference[step]["epoch"], step), f"{module}: {point}"
        differences[point] = _max_difference(last, reference[step], prefix)
    resumed = run_cli([*_args(config, killed_dir, models, module), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final, expected = _load(killed_dir / "checkpoints" / "last.ckpt"), reference[STEPS]
    # nothing was left to train: the resumed run ends at once, as the uninterrupted one did, with its 3 epochs
    # complete (ModelCheckpoint's on_train_end saves last.ckpt again in a process that has not saved it yet)
    assert (final["epoch"], final["global_step"]) == (EPOCHS, STEPS)
    differences["final"] = _max_difference(final, expected, prefix)
    print(f"resume matrix {module}: {differences}")  # the closing note's figures (pytest -s)
    assert differences == dict.fromkeys(differences, 0.0), f"{module}: {differences}"
    if MODULES[module][0] != "curve":  # the exported model is the uninterrupted run's, bit for bit
        from mcu_lightning.models.io import load_state_dict

        exported = load_state_dict(killed_dir / "model")
        for name, value in load_state_dict(reference_dir / "model").items():
            assert torch.equal(exported[name], value), f"{module}: exported {name}"


def _batches(loader: ResumableDataLoader) -> list[list[int]]:
    return [batch.tolist() for batch in loader]


def test_resumable_loader_skips_exactly_the_batches_already_trained() -> None:
    sampler = ForgetRetainSampler(num_forget=23, num_retain=40, seed=5)
    loader = ResumableDataLoader(list(range(23)), batch_size=4, sampler=EpochRandomSampler(23, seed=5))
    sampler.set_epoch(0)
    full = _batches(loader)
    iterator = iter(loader)
    seen = [next(iterator).tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state == {"batches_yielded": 3} and seen == full[:3]
    fresh = ResumableDataLoader(list(range(23)), batch_size=4, sampler=EpochRandomSampler(23, seed=5))
    fresh.load_state_dict(state)
    assert _batches(fresh) == full[3:]  # the rest of the epoch, nothing repeated, nothing lost
    assert _batches(fresh) == full  # the skip applies to one pass only
    assert fresh.state_dict() == {"batches_yielded": 0}  # a finished pass resumes at the next one's start


def test_loader_at_the_last_batch_of_a_pass_records_a_finished_pass() -> None:
    """A checkpoint on an epoch's last batch (the generator not yet exhausted) must not skip the next epoch."""
    loader = ResumableDataLoader(list(range(20)), batch_size=4, sampler=EpochRandomSampler(20, seed=1))
    iterator = iter(loader)
    for _ in range(len(loader)):
        next(iterator)
    assert loader.state_dict() == {"batches_yielded": 0}
    fresh = ResumableDataLoader(list(range(20)), batch_size=4, sampler=EpochRandomSampler(20, seed=1))
    fresh.load_state_dict(loader.state_dict())
    assert len(_batches(fresh)) == len(loader)


def test_epoch_sampler_order_depends_only_on_seed_and_epoch() -> None:
    first, second = EpochRandomSampler(50, seed=1), EpochRandomSampler(50, seed=1)
    first.set_epoch(0)
    epoch0 = list(first)
    first.set_epoch(1)
    epoch1 = list(first)
    second.set_epoch(1)  # a fresh process resumed at epoch 1: no history needed
    assert list(second) == epoch1 != epoch0
    assert sorted(epoch1) == list(range(50))
