"""UnlearningModule on the embedded QA data with a tiny LM, through the Lightning Trainer and through ``mcu fit``.

GradDiff and NPO raise the forget NLL while the retain NLL stays close; the reference model is frozen and
never checkpointed; the export is a model folder and a curve endpoint; SophiaG works by class path and its
state survives a checkpoint; LoRA trains adapters only; every ``configs/quickstart/unlearn_*.yaml`` runs.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from mcu_lightning.cli import main
from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.data import QADataModule
from mcu_lightning.losses import CEU, NPO, PDU, UNDIAL, WGA, GradDiff, SatImp
from mcu_lightning.models import load_model, load_state_dict, tiny_causal_lm
from mcu_lightning.models.hf import LoraSpec
from mcu_lightning.modules import FineTuneModule, UnlearningModule
from mcu_lightning.study.build import optimizer_factory

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "quickstart"
UNLEARN_CONFIGS = sorted(CONFIGS.glob("unlearn_*.yaml"))
ADAMW = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}


def quiet_trainer(root: Path, **kwargs: Any) -> Trainer:
    """A CPU Trainer without logger, progress bar, summary or validation (tests add what they need)."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "default_root_dir": str(root),
    }
    options.update(kwargs)
    return Trainer(**options)


def qa_data(**kwargs: Any) -> QADataModule:
    """The quickstart's QA data: fictitious facts, forget10, the generated word-level tokenizer."""
    options: dict[str, Any] = {
        "data": "fictitious",
        "forget_split": "forget10",
        "tokenizer": "fictitious",
        "max_length": 48,
        "batch_size": 16,
        "eval_batch_size": 64,
    }
    options.update(kwargs)
    return QADataModule(**options)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, hidden-32 causal LM fine-tuned on ``full`` with ``FineTuneModule`` and exported: its folder."""
    root = tmp_path_factory.mktemp("tiny_base")
    seed_everything(0)
    model = tiny_causal_lm(tokenizer="fictitious", hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    module = FineTuneModule(model, optimizer=partial(torch.optim.AdamW, lr=1e-2), output_dir=str(root))
    quiet_trainer(root, max_epochs=5).fit(module, datamodule=qa_data(finetune_split="full"))
    folder = root / "model"
    assert (folder / "config.json").is_file(), f"FineTuneModule did not export the base model to {folder}"
    return folder


@torch.no_grad()
def split_nll(model: torch.nn.Module, split: str) -> float:
    """Mean answer NLL per sample on an evaluation split (the TOFU ``*/loss``)."""
    from mcu_lightning.core.forward import call_model
    from mcu_lightning.core.per_sample import mean_nll

    data = qa_data()
    data.setup("test")
    model.eval()
    losses = [mean_nll(call_model(model, batch), batch["labels"]) for batch in data.eval_dataloader(split)]
    return torch.cat(losses).mean().item()


def unlearn(base: Path, loss: Any, out: Path, optimizer: dict | None = None, **kwargs: Any) -> UnlearningModule:
    seed_everything(0)
    module = UnlearningModule(
        str(base), loss, optimizer=optimizer_factory(optimizer or ADAMW), output_dir=str(out), **kwargs
    )
    return module


@pytest.fixture(scope="module")
def base_nll(tiny_base: Path) -> dict[str, float]:
    model = load_model(tiny_base)
    return {split: split_nll(model, split) for split in ("forget", "retain")}


@pytest.mark.parametrize("loss_cls", [GradDiff, NPO], ids=["graddiff", "npo"])
def test_unlearning_raises_forget_nll_and_keeps_retain(
    loss_cls: type, tiny_base: Path, base_nll: dict[str, float], tmp_path: Path
) -> None:
    module = unlearn(tiny_base, loss_cls(), tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=0)
    quiet_trainer(tmp_path, max_epochs=4, callbacks=[checkpoint], enable_checkpointing=True).fit(
        module, datamodule=qa_data()
    )
    exported = load_model(tmp_path / "model")
    forget, retain = split_nll(exported, "forget"), split_nll(exported, "retain")
    assert forget > base_nll["forget"] + 0.1, (base_nll, forget)
    assert retain < base_nll["retain"] + 0.5 * (forget - base_nll["forget"]), (base_nll, forget, retain)

    # the export is the trained model, and a valid curve endpoint (t=1 is exactly it)
    trained = {k: v for k, v in module.model.state_dict().items()}
    saved = load_state_dict(tmp_path / "model")
    for name, tensor in saved.items():
        assert torch.equal(tensor, trained[name]), name
    curve = Curve(load_model(tiny_base), [str(tiny_base), str(tmp_path / "model")], shape=Bezier(3))
    for name, tensor in curve.params(1.0).items():
        assert torch.equal(tensor.detach(), saved[name]), name

    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not any("reference" in key for key in state), "the reference model must not be checkpointed"
    model_keys = {f"model.{k}" for k in module.model.state_dict()}
    assert model_keys <= set(state) and all(k.startswith(("model.", "loss.")) for k in state)


@torch.no_grad()
def forget_probability(model: torch.nn.Module) -> float:
    """Mean answer probability per sample on the forget split, ``exp(-mean answer NLL)`` (the TOFU ``forget/prob``)."""
    from mcu_lightning.core.forward import call_model
    from mcu_lightning.core.per_sample import mean_nll

    data = qa_data()
    data.setup("test")
    model.eval()
    nll = [mean_nll(call_model(model, batch), batch["labels"]) for batch in data.eval_dataloader("forget")]
    return torch.exp(-torch.cat(nll)).mean().item()


#: SatImp without its retain term: at its defaults (gamma 0.1, alpha 1) on a base that knows the forget answers
#: (p ~ 1, weights p^5 (1 - p) ~ 0) the retain NLL's step outweighs the forget term's and raises them in one step.
OPEN_UNLEARNING_METHODS = [UNDIAL(), CEU(), SatImp(retain_loss=None), WGA(), PDU(retain_loss_eps=0.05)]


@pytest.mark.parametrize("loss", OPEN_UNLEARNING_METHODS, ids=lambda loss: type(loss).__name__)
def test_one_step_of_open_unlearnings_methods_lowers_the_forget_probability(
    loss: Any, tiny_base: Path, tmp_path: Path
) -> None:
    module = unlearn(tiny_base, loss, tmp_path)
    quiet_trainer(tmp_path, max_steps=1).fit(module, datamodule=qa_data())
    before, after = forget_probability(load_model(tiny_base)), forget_probability(load_model(tmp_path / "model"))
    assert after < before, (before, after)


def test_reference_model_is_frozen_and_untouched(tiny_base: Path, tmp_path: Path) -> None:
    module = unlearn(tiny_base, NPO(), tmp_path)
    reference = module.reference
    assert reference is not None and reference is not module.model
    before = copy.deepcopy(reference.state_dict())
    assert all(id(p) not in {id(q) for q in module.parameters()} for p in reference.parameters())
    quiet_trainer(tmp_path, max_steps=3).fit(module, datamodule=qa_data())
    assert all(not p.requires_grad and p.grad is None for p in reference.parameters())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, before[name]), f"reference {name} changed"
    assert any(not torch.equal(t, before[k]) for k, t in module.model.state_dict().items()), "the model did not train"


class _OptimizerState(Callback):
    """Records the optimizer state when training starts (after Lightning restored a checkpoint)."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizer = trainer.optimizers[0]
        self.kind = type(optimizer).__name__
        self.state = [
            {k: v.clone() for k, v in optimizer.state[p].items()}
            for g in optimizer.param_groups
            for p in g["params"]
            if p in optimizer.state
        ]


def test_sophia_by_class_path_and_its_state_is_restored(tiny_base: Path, tmp_path: Path) -> None:
    sophia = {"class_path": "mcu_lightning.optim.SophiaG", "init_args": {"lr": 3e-4, "rho": 0.04}}
    module = unlearn(tiny_base, NPO(), tmp_path, optimizer=sophia)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=0)
    quiet_trainer(tmp_path, max_steps=3, callbacks=[checkpoint], enable_checkpointing=True).fit(
        module, datamodule=qa_data()
    )
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved_state and all({"exp_avg", "hessian", "step"} <= set(s) for s in saved_state.values())
    assert all(float(s["step"]) == 3 for s in saved_state.values())

    resumed = unlearn(tiny_base, NPO(), tmp_path / "resumed", optimizer=sophia)
    probe = _OptimizerState()
    quiet_trainer(tmp_path / "resumed", max_steps=4, callbacks=[probe]).fit(
        resumed, datamodule=qa_data(), ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt")
    )
    assert probe.kind == "SophiaG"
    assert len(probe.state) == len(saved_state)
    for restored, original in zip(probe.state, saved_state.values(), strict=True):
        for key in ("exp_avg", "hessian", "step"):
            assert torch.equal(restored[key], original[key]), key
    assert resumed.global_step == 4


def test_lora_trains_only_adapters_and_exports_an_adapter_folder(tiny_base: Path, tmp_path: Path) -> None:
    lora = LoraSpec(r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    module = unlearn(tiny_base, NPO(), tmp_path, lora=lora)
    assert module.reference is None, "with LoRA the reference is the adapter-free network, not a second copy"
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert all(("lora_A" in n or "lora_B" in n) and ("q_proj" in n or "v_proj" in n) for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    quiet_trainer(tmp_path, max_steps=4).fit(module, datamodule=qa_data())
    for name, tensor in module.named_parameters():
        if name in frozen_before:
            assert torch.equal(tensor, frozen_before[name]), f"frozen {name} changed"
    lora_b = [p for n, p in module.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero and must have moved"
    folder = tmp_path / "model"
    assert (folder / "adapter_config.json").is_file()
    reloaded = load_model(folder)
    ids = torch.tensor([[1, 5, 9, 4]])
    module.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, module.model(input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("config", UNLEARN_CONFIGS, ids=lambda p: p.stem)
def test_quickstart_unlearn_config_fits_two_steps(config: Path, tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(
        [
            "fit",
            "--config", str(config),
            "--model.init_args.model", str(tiny_base),
            "--model.init_args.output_dir", str(out),
            "--trainer.default_root_dir", str(out),
            "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false",
        ]
    )  # fmt: skip
    exported = load_state_dict(out / "model")
    base = load_state_dict(tiny_base)
    assert set(exported) == set(base)
    assert all(torch.isfinite(t).all() for t in exported.values())
    assert any(not torch.equal(exported[name], base[name]) for name in base), "two steps left every weight unchanged"
