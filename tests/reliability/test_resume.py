"""Resume after a real SIGKILL: ``mcu fit`` killed mid-epoch and resumed from ``last.ckpt`` ends where an
uninterrupted run with the same seed ends (UnlearningModule weights and CurveModule control points).

The killed runs are subprocesses of ``python -m mcu_lightning.cli fit`` that SIGKILL themselves when step 7
starts (epoch 1 of 3, batch 2 of 5; checkpoints every 3 steps, so ``last.ckpt`` holds step 6). The reference
and resumed runs are subprocesses of the same entry point with the same environment (one intra-op thread),
so no state of the test process (thread count, seeds, environment) can make the comparison differ.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from mcu_lightning.data.datamodule import EpochRandomSampler, ForgetRetainSampler, ResumableDataLoader
from tests.reliability.helpers import CONFIGS, checkpoint_state, mlp_endpoint, run_cli, start_cli

STEPS = 15  # 3 epochs x 5 batches (143 forget digits, batch 32)


def _args(kind: str, run_dir: Path, models: dict[str, Path]) -> list[str]:
    args = ["fit", "--config", str(CONFIGS / f"{kind}_digits.yaml"), "--trainer.default_root_dir", str(run_dir)]
    if kind == "unlearn":
        return [*args, "--model.init_args.model", str(models["base"])]
    return [*args, f"--model.init_args.endpoints=[{models['a']}, {models['b']}]"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("endpoints")
    return {"base": mlp_endpoint(root / "base", 0), "a": mlp_endpoint(root / "a", 1), "b": mlp_endpoint(root / "b", 2)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # both killed runs start first and work in the background while the references run here
    killed = {
        kind: start_cli(_args(kind, tmp_path / f"{kind}_killed", models), tmp_path, kill=True)
        for kind in ("unlearn", "curve")
    }
    for kind in ("unlearn", "curve"):
        done = run_cli(_args(kind, tmp_path / f"{kind}_reference", models), tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    for kind, process in killed.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, f"{kind} run was not killed:\n{stderr[-3000:]}"
        last = tmp_path / f"{kind}_killed" / "checkpoints" / "last.ckpt"
        assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6
        resumed = run_cli([*_args(kind, tmp_path / f"{kind}_killed", models), "--ckpt_path", "last"], tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]

    for kind, prefix in (("unlearn", "model."), ("curve", "curve.control_points")):
        reference = tmp_path / f"{kind}_reference" / "checkpoints" / "last.ckpt"
        resumed = tmp_path / f"{kind}_killed" / "checkpoints" / "last.ckpt"
        assert torch.load(resumed, map_location="cpu", weights_only=False)["global_step"] == STEPS
        expected, got = checkpoint_state(reference, prefix), checkpoint_state(resumed, prefix)
        assert expected and expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=f"{kind}: {name}")
    from mcu_lightning.models.io import load_state_dict

    exported = load_state_dict(tmp_path / "unlearn_killed" / "model")
    reference = load_state_dict(tmp_path / "unlearn_reference" / "model")
    base = load_state_dict(models["base"])
    for name, value in reference.items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=1e-6)
    assert any(not torch.equal(base[n], reference[n]) for n in reference if reference[n].is_floating_point())


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


def test_epoch_sampler_order_depends_only_on_seed_and_epoch() -> None:
    first, second = EpochRandomSampler(50, seed=1), EpochRandomSampler(50, seed=1)
    first.set_epoch(0)
    epoch0 = list(first)
    first.set_epoch(1)
    epoch1 = list(first)
    second.set_epoch(1)  # a fresh process resumed at epoch 1: no history needed
    assert list(second) == epoch1 != epoch0
    assert sorted(epoch1) == list(range(50))
