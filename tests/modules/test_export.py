"""``mcu export`` / ``CurveModule.model_at``: the exported folder reloads and computes what the curve does at t."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from mcu_lightning.cli import main
from mcu_lightning.core.forward import call_model
from mcu_lightning.curves import recompute_batchnorm, recompute_curve_batchnorm
from mcu_lightning.models.hf import load_tokenizer, tiny_causal_lm
from mcu_lightning.models.io import load_model, save_model
from mcu_lightning.modules.curve import CurveModule
from mcu_lightning.modules.export import EXPORT_JSON, load_curve_checkpoint, retain_batches
from tests.reliability.helpers import CONFIGS, mlp_endpoint, one_error_line

T = 0.35


def _save_curve(module: CurveModule, path: Path) -> Path:
    """A checkpoint as Lightning writes it for a curve: control points, hyperparameters, the shape."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def _bend(module: CurveModule, seed: int = 3) -> None:
    """Move the control points off the straight line, so t = 0.35 is not a plain average of the endpoints."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for point in module.curve.control_points:
            point.add_(0.05 * torch.randn_like(point))


@pytest.fixture(scope="module")
def digits_curve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mcu fit`` of the tiny digits MLP curve (one epoch), in this process; its last checkpoint."""
    root = tmp_path_factory.mktemp("digits")
    a, b = mlp_endpoint(root / "a", seed=0), mlp_endpoint(root / "b", seed=1)
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "curve_digits.yaml"),
            "--model.init_args.endpoints",
            f"[{a}, {b}]",
            "--trainer.default_root_dir",
            str(root / "run"),
            "--trainer.max_epochs",
            "1",
        ]
    )
    return root / "run" / "checkpoints" / "last.ckpt"


def test_digits_export_equals_curve_at_t(digits_curve: Path, tmp_path: Path) -> None:
    out = tmp_path / "t035"
    main(["export", "--ckpt_path", str(digits_curve), "--t", str(T), "--output_dir", str(out)])
    record = json.loads((out / EXPORT_JSON).read_text())
    assert record["t"] == T and record["weights"] == "full" and record["batchnorm_recomputed"]
    assert not list(tmp_path.glob(".t035.tmp-*"))  # the temporary sibling was renamed away

    module, checkpoint = load_curve_checkpoint(digits_curve)
    batches = retain_batches(checkpoint, module.bn_batches)
    exported = load_model(out).eval()
    buffers = recompute_curve_batchnorm(module.curve, T, batches)  # the curve's own path, not model_at's
    batch = batches[0]
    with torch.no_grad():
        torch.testing.assert_close(call_model(exported, batch), module.curve(T, batch, buffers=buffers))


def test_digits_export_at_zero_is_endpoint_zero(digits_curve: Path, tmp_path: Path) -> None:
    main(["export", "--ckpt_path", str(digits_curve), "--t", "0", "--output_dir", str(tmp_path / "t0")])
    module, checkpoint = load_curve_checkpoint(digits_curve)
    exported, endpoint = load_model(tmp_path / "t0"), load_model(module.hparams["endpoints"][0])
    params = dict(endpoint.named_parameters())
    for name, tensor in exported.named_parameters():
        torch.testing.assert_close(tensor, params[name])
    batches = retain_batches(checkpoint, module.bn_batches)
    recompute_batchnorm(endpoint, batches)  # the export's statistics are re-estimated at t=0 on the same data
    with torch.no_grad():
        torch.testing.assert_close(call_model(exported.eval(), batches[0]), call_model(endpoint.eval(), batches[0]))


@pytest.fixture(scope="module")
def llama_curve(tmp_path_factory: pytest.TempPathFactory) -> tuple[CurveModule, Path]:
    root = tmp_path_factory.mktemp("llama")
    tokenizer = load_tokenizer("fictitious")
    ends = [save_model(tiny_causal_lm(seed=s, num_hidden_layers=1), root / f"e{s}", tokenizer) for s in (0, 1)]
    module = CurveModule(endpoints=[str(e) for e in ends], eval_ts=3)
    _bend(module)
    return module, _save_curve(module, root / "curve.ckpt")


def test_llama_export_equals_curve_at_t(llama_curve: tuple[CurveModule, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    module, ckpt = llama_curve
    out = tmp_path / "llama_t035"
    main(["export", "--ckpt_path", str(ckpt), "--t", str(T), "--output_dir", str(out)])
    ids = AutoTokenizer.from_pretrained(out)(["the author was born in"], return_tensors="pt")["input_ids"]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        expected = module.curve(T, batch)
        for model in (load_model(out), AutoModelForCausalLM.from_pretrained(out)):
            torch.testing.assert_close(model.eval()(**batch).logits, expected)
        torch.testing.assert_close(module.model_at(T)(**batch).logits, expected)


def test_lora_exports(tmp_path: Path) -> None:
    """factors space: a peft adapter folder; delta space: merged full weights; both equal the curve at t."""
    tokenizer = load_tokenizer("fictitious")
    base_dir = save_model(tiny_causal_lm(seed=0, num_hidden_layers=1), tmp_path / "base", tokenizer)
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft_model = get_peft_model(load_model(base_dir), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.05)
        adapters.append(str(save_model(peft_model, tmp_path / f"adapter{seed}")))
    ids = torch.tensor([[1, 5, 7, 9, 4]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for space, kind in (("factors", "lora_adapter"), ("delta", "merged_delta")):
        module = CurveModule(endpoints=adapters, base=str(base_dir), space=space, eval_ts=3)
        _bend(module)
        ckpt = _save_curve(module, tmp_path / f"{space}.ckpt")
        out = tmp_path / f"export_{space}"
        main(["export", "--ckpt_path", str(ckpt), "--t", str(T), "--output_dir", str(out)])
        assert json.loads((out / EXPORT_JSON).read_text())["weights"] == kind
        assert (out / "adapter_config.json").is_file() == (space == "factors")
        with torch.no_grad():
            torch.testing.assert_close(load_model(out).eval()(**batch).logits, module.curve(T, batch))


def test_refusals_are_one_line(digits_curve: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", "--ckpt_path", str(digits_curve), "--output_dir"]
    assert "outside [0, 1]" in one_error_line([*args, str(tmp_path / "x"), "--t", "1.5"], capsys)
    used = tmp_path / "used"
    used.mkdir()
    (used / "file").write_text("x")
    assert "not empty" in one_error_line([*args, str(used), "--t", "0.5"], capsys)
    module, _ = load_curve_checkpoint(digits_curve)
    not_curve = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {"lr": 1.0}}, not_curve)
    line = one_error_line(
        ["export", "--ckpt_path", str(not_curve), "--t", "0.5", "--output_dir", str(tmp_path / "y")], capsys
    )
    assert "not a curve checkpoint" in line
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a zip")
    line = one_error_line(
        ["export", "--ckpt_path", str(damaged), "--t", "0.5", "--output_dir", str(tmp_path / "y")], capsys
    )
    assert "cannot be read" in line
    assert not (tmp_path / "y").exists() and not (tmp_path / "x").exists()  # nothing written on a refusal
    with pytest.raises(ValueError, match="outside"):
        module.model_at(-0.1)


def test_an_rmu_curve_checkpoint_rebuilds_with_the_objectives_parameters(tmp_path: Path) -> None:
    """RMU keeps one layer's MLP on the curve; the checkpoint records that, so export and the study's ensembles, plane
    and export_best (``load_curve_checkpoint``) rebuild the same curve instead of an all-parameter NLL one."""
    from mcu_lightning.curves import Ensemble
    from mcu_lightning.losses import RMU

    rmu = RMU(trainable=r"layers\.1\.mlp\.", layer=r"layers\.1$")
    first = tiny_causal_lm(hidden_size=16, intermediate_size=32, seed=0)
    second = tiny_causal_lm(hidden_size=16, intermediate_size=32, seed=0)
    with torch.no_grad():  # two endpoints that differ only where RMU trains, as two RMU runs from one base do
        for name, param in second.named_parameters():
            if rmu.is_trainable(name):
                param.add_(0.05 * torch.randn_like(param))
    ends = [str(save_model(model, tmp_path / name)) for model, name in ((first, "a"), (second, "b"))]
    module = CurveModule(ends, objective=rmu, reference=ends[0])
    _bend(module)
    assert 0 < len(module.curve.names) < len(list(first.named_parameters()))
    ckpt = _save_curve(module, tmp_path / "rmu.ckpt")
    loaded, _ = load_curve_checkpoint(ckpt)
    assert loaded.curve.names == module.curve.names
    for mine, theirs in zip(loaded.curve.control_points, module.curve.control_points, strict=True):
        assert torch.equal(mine, theirs)
    ids = torch.tensor([[3, 4, 5, 6]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        torch.testing.assert_close(loaded.curve(T, batch), module.curve(T, batch))
        ensemble = Ensemble.from_curve(loaded.curve, [0.0, 1.0], working=loaded.template)
        assert torch.isfinite(ensemble(**batch)).all()
    out = tmp_path / "rmu_t035"
    main(["export", "--ckpt_path", str(ckpt), "--t", str(T), "--output_dir", str(out)])
    with torch.no_grad():
        torch.testing.assert_close(load_model(out).eval()(**batch).logits, module.curve(T, batch))


def test_a_factors_lora_export_loads_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The curve names its base relative to where it ran; the exported adapter names it so it loads from anywhere."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    save_model(tiny_causal_lm(seed=0, num_hidden_layers=1), Path("base"), load_tokenizer("fictitious"))
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft_model = get_peft_model(load_model("base"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        adapters.append(str(save_model(peft_model, Path(f"adapter{seed}"))))
    module = CurveModule(endpoints=adapters, base="base", space="factors", eval_ts=3)
    _bend(module)
    ckpt = _save_curve(module, Path("factors.ckpt"))
    main(["export", "--ckpt_path", str(ckpt), "--t", str(T), "--output_dir", "exported"])
    monkeypatch.chdir(elsewhere)
    ids = torch.tensor([[1, 5, 7, 9, 4]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        torch.testing.assert_close(load_model(work / "exported").eval()(**batch).logits, module.curve(T, batch))


def test_a_trained_polychain_loaded_with_fixed_bends_is_one_line(tmp_path: Path) -> None:
    from mcu_lightning.callbacks.checkpoint import CheckpointError
    from mcu_lightning.curves import PolyChain

    ends = [str(mlp_endpoint(tmp_path / name, seed)) for name, seed in (("a", 0), ("b", 1), ("base", 2))]
    trained = CurveModule(endpoints=ends[:2], shape=PolyChain(3), init=ends[2])
    checkpoint = torch.load(_save_curve(trained, tmp_path / "trained.ckpt"), weights_only=False)
    fixed = CurveModule(endpoints=ends[:2], shape=PolyChain(3), init=ends[2], fixed_bends=True)
    with pytest.raises(CheckpointError, match=r"holds 1 trained control point\(s\) and this curve has 0 \(fixed_bends"):
        fixed.on_load_checkpoint(checkpoint)
