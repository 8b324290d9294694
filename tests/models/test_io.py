import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mcu_lightning.models import tiny_causal_lm
from mcu_lightning.models.io import load_model, load_state_dict, save_model

PLAIN_MODULE = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.init_args = {"width": width}
        self.fc = nn.Linear(2, width)
        self.bn = nn.BatchNorm1d(width)
        self.out = nn.Linear(width, 2)
        self.aux = nn.Linear(width, 2, bias=False)
        self.aux.weight = self.out.weight  # tied

    def forward(self, x):
        h = self.bn(self.fc(x))
        return self.out(h) + self.aux(h)
"""


@pytest.fixture
def tiny_net_cls(tmp_path, monkeypatch):
    (tmp_path / "mcu_io_fixture_net.py").write_text(textwrap.dedent(PLAIN_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import mcu_io_fixture_net

    return mcu_io_fixture_net.TinyNet


def tiny_llama(seed: int = 0) -> nn.Module:
    return tiny_causal_lm(
        tokenizer=None, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, seed=seed
    ).eval()


def test_plain_module_round_trip(tmp_path, tiny_net_cls):
    torch.manual_seed(0)
    model = tiny_net_cls(width=5)
    model.bn.running_mean.normal_()
    folder = save_model(model, tmp_path / "net")
    spec = json.loads((folder / "mcu_model.json").read_text())
    assert spec == {"class_path": "mcu_io_fixture_net.TinyNet", "init_args": {"width": 5}}
    loaded = load_model(folder)
    assert type(loaded).__name__ == "TinyNet" and loaded.fc.out_features == 5
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert loaded.aux.weight is loaded.out.weight
    state = load_state_dict(folder)
    assert len({"out.weight", "aux.weight"} & set(state)) == 1  # one name of a tied pair is stored
    assert set(state) | {"out.weight", "aux.weight"} == set(model.state_dict())
    assert load_model(folder, dtype=torch.float64).fc.weight.dtype == torch.float64
    # replacing an existing folder leaves the new model and no temporary siblings
    torch.manual_seed(1)
    save_model(tiny_net_cls(width=5), folder)
    assert not torch.equal(load_state_dict(folder)["fc.weight"], state["fc.weight"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_plain_module_without_init_args_is_refused(tmp_path):
    with pytest.raises(ValueError, match="init_args"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "linear")
    assert not (tmp_path / "linear").exists() and list(tmp_path.iterdir()) == []


def test_hf_round_trip_and_tied_weights(tmp_path):
    model = tiny_llama()
    folder = save_model(model, tmp_path / "llama")
    loaded = load_model(folder)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = torch.randint(0, 64, (1, 5))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    state = load_state_dict(folder)
    assert "lm_head.weight" not in state  # dropped by save_pretrained; the Curve re-ties it
    assert torch.equal(state["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert load_model(folder, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_sharded_and_bin_folders(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    state = load_state_dict(tmp_path / "sharded")
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    assert set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    (tmp_path / "bin").mkdir()
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert torch.equal(load_state_dict(tmp_path / "bin")["model.norm.weight"], model.model.norm.weight)


def test_ckpt_and_safetensors(tmp_path):
    weights = {"fc.weight": torch.randn(3, 2), "fc.bias": torch.randn(3)}
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in weights.items()}, "epoch": 1}
    checkpoint["state_dict"]["reference.fc.weight"] = torch.zeros(3, 2)  # other submodules are not the model
    torch.save(checkpoint, tmp_path / "a.ckpt")
    state = load_state_dict(tmp_path / "a.ckpt")
    assert set(state) == set(weights) and torch.equal(state["fc.bias"], weights["fc.bias"])
    torch.save({"state_dict": {"curve.control_points.0": torch.zeros(3)}}, tmp_path / "curve.ckpt")
    with pytest.raises(ValueError, match=r"holds no 'model\.' weights .*\['curve'\]"):
        load_state_dict(tmp_path / "curve.ckpt")
    save_file(weights, tmp_path / "w.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "w.safetensors")["fc.weight"], weights["fc.weight"])
    with pytest.raises(ValueError, match="exported next to it"):
        load_model(tmp_path / "a.ckpt")


def test_missing_and_non_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"endpoint '.*x' does not exist; pass a save_pretrained folder"):
        load_state_dict(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "runs" / "endpoint_a"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is not a model folder"):
        load_model(tmp_path / "folder")


def test_curve_reties_whichever_name_was_stored(tmp_path, tiny_net_cls):
    from mcu_lightning.curves import Curve

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        folders.append(save_model(tiny_net_cls(width=4), tmp_path / f"net{seed}"))
    curve = Curve(tiny_net_cls(width=4), folders).eval()
    assert "out.weight" in curve.names and "aux.weight" not in curve.names
    x = {"inputs": torch.randn(3, 2)}
    with torch.no_grad():
        assert torch.equal(curve(1.0, x), load_model(folders[1]).eval()(x["inputs"]))


def test_peft_adapter_folder(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_llama()
    base.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(load_model(tmp_path / "base"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # non-zero adapters, so the round trip is visible in the logits
    folder = save_model(peft_model, tmp_path / "adapter")
    assert (folder / "adapter_config.json").exists()
    loaded = load_model(folder)
    ids = torch.randint(0, 64, (1, 5))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, peft_model.eval()(input_ids=ids).logits, atol=1e-6)
        assert not torch.allclose(loaded(input_ids=ids).logits, base(input_ids=ids).logits)
    with pytest.raises(ValueError, match="peft adapter folder"):
        load_state_dict(folder)


def test_saved_model_files_follow_the_umask(tmp_path: Path) -> None:
    """safetensors writes owner-only files; a saved model gets ``0o666 & ~umask`` like every other file of a study."""
    from mcu_lightning.models.small import MLP

    previous = os.umask(0o022)
    try:
        folder = save_model(MLP(in_features=4, num_classes=2, hidden=3, depth=1), tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"mcu_model.json": 0o644, "model.safetensors": 0o644}
