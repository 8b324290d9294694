import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from mcu_lightning.curves import Curve
from mcu_lightning.models.memory import LLAMA_3, estimate_memory, lora_param_count, memory_table, param_count

TINY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def nbytes(tensors) -> int:
    unique = {id(t): t for t in tensors}
    return sum(t.numel() * t.element_size() for t in unique.values())


def measured_curve_bytes(curve: Curve, optimizer: torch.optim.Optimizer) -> int:
    """Endpoint buffers, control points, their grads, optimizer state and the template's parameters."""
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    grads = [p.grad for p in curve.control_points]
    return nbytes([curve._start, curve._end, *curve.control_points, *grads, *state, *curve.template.parameters()])


def one_step(curve: Curve, batch) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW(curve.parameters(), lr=1e-3)
    curve(0.3, batch).float().pow(2).mean().backward()
    optimizer.step()
    return optimizer


@pytest.mark.parametrize("tied", [True, False])
def test_param_count_matches_llama(tied):
    config = LlamaConfig(**TINY, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    assert param_count(config) == sum(p.numel() for p in model.parameters())
    assert param_count(config.to_dict()) == param_count(config)
    biased = LlamaConfig(**TINY, tie_word_embeddings=tied, attention_bias=True, mlp_bias=True)
    assert param_count(biased) == sum(p.numel() for p in LlamaForCausalLM(biased).parameters())


def test_public_llama_sizes():
    assert param_count(LLAMA_3["Llama-3.2-1B"]) == 1_235_814_400
    assert param_count(LLAMA_3["Llama-3.1-8B"]) == 8_030_261_248
    assert param_count(LLAMA_3["Llama-3.1-70B"]) == 70_553_706_496
    table = memory_table()
    assert table.count("\n| Llama-3") == 3 and "| 8.03 B |" in table


def test_bytes_per_parameter_arithmetic():
    full = estimate_memory(1000)
    assert full.persistent == 22 * 1000  # ~22 bytes per parameter (models/memory.py), bf16 quadratic curve with Adam
    assert full.total == 28 * 1000  # + theta(t) cast (2) + its fp32 sum (4) during a step
    assert estimate_memory(1000, optimizer="sgd").persistent == 14 * 1000
    assert estimate_memory(1000, param_dtype="float32", num_bends=4).persistent == (8 + 4 + 2 * (4 + 4 + 8)) * 1000
    lora = estimate_memory(1000, lora_params=10)
    assert lora.persistent == 2 * 1000 + 4 * 10 + 2 * 4 * 10 + (4 + 4 + 8) * 10
    assert estimate_memory(1000, mode="unlearn", reference=True).persistent == (2 + 2 + 4 + 2) * 1000
    assert estimate_memory(1000, mode="finetune", reference=True).reference == 0
    assert lora_param_count(LlamaConfig(**TINY), r=2) == 2 * 2 * ((32 + 32) + (32 + 16))
    with pytest.raises(ValueError, match="needs num_params or a config"):
        estimate_memory()


def test_full_curve_prediction_on_tiny_llama_bf16():
    config = LlamaConfig(**TINY, tie_word_embeddings=True)
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ends.append(LlamaForCausalLM(config).to(torch.bfloat16).state_dict())
    curve = Curve(LlamaForCausalLM(config).to(torch.bfloat16), ends)
    batch = {"input_ids": torch.randint(0, 64, (2, 5))}
    measured = measured_curve_bytes(curve, one_step(curve, batch))
    predicted = estimate_memory(config=config, param_dtype="bfloat16").persistent
    assert predicted == pytest.approx(measured, rel=0.10)


def test_full_curve_prediction_on_mlp_fp32():
    def mlp(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    curve = Curve(mlp(2), [mlp(0).state_dict(), mlp(1).state_dict()])
    measured = measured_curve_bytes(curve, one_step(curve, {"inputs": torch.randn(3, 8)}))
    num_params = sum(p.numel() for p in mlp(0).parameters())
    assert estimate_memory(num_params, param_dtype="float32").persistent == pytest.approx(measured, rel=0.10)


def test_lora_curve_prediction_on_tiny_llama():
    config = LlamaConfig(**TINY, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    named = dict(model.named_parameters())
    ends = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ends.append({n: torch.randn_like(p) if "lora_" in n else p for n, p in named.items()})
    curve = Curve(model, ends, include="lora_")
    measured = measured_curve_bytes(curve, one_step(curve, {"input_ids": torch.randint(0, 64, (2, 5))}))
    lora = lora_param_count(config, r=2)
    assert lora == sum(p.numel() for n, p in named.items() if "lora_" in n)
    predicted = estimate_memory(config=config, param_dtype="float32", lora_params=lora).persistent
    assert predicted == pytest.approx(measured, rel=0.10)
