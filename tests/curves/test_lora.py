import copy
import itertools

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.curves.lora import LoraDeltaCurve, load_adapter_state, lora_curve

R, ALPHA = 2, 4
S = ALPHA / R
LAYERS, PROJS = 2, ("q_proj", "v_proj")


def base(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_adapter(folder, seed: int, r: int = R) -> None:
    model = get_peft_model(base(), LoraConfig(r=r, lora_alpha=ALPHA, target_modules=list(PROJS), lora_dropout=0.0))
    torch.manual_seed(100 + seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param) * 0.3)  # nonzero B: the adapters differ from the base
    model.save_pretrained(folder)


def raw_factors(folder) -> dict:
    """(A, B) per (layer, proj) straight from the saved file, by peft's saved key convention."""
    state = load_file(folder / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers"
    return {
        (i, p): (state[f"{prefix}.{i}.self_attn.{p}.lora_A.weight"], state[f"{prefix}.{i}.self_attn.{p}.lora_B.weight"])
        for i in range(LAYERS)
        for p in PROJS
    }


def live(i: int, p: str, factor: str) -> str:
    return f"base_model.model.model.layers.{i}.self_attn.{p}.{factor}.default.weight"


def dense_logits(delta: dict, batch: dict) -> torch.Tensor:
    """A plain LlamaForCausalLM with q/v weights set to W0 + dW."""
    model = base()
    with torch.no_grad():
        for (i, p), d in delta.items():
            getattr(model.model.layers[i].self_attn, p).weight.add_(d)
        return model(**batch).logits


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    for name, seed in (("a", 0), ("b", 1), ("init", 2)):
        save_adapter(root / name, seed)
    save_adapter(root / "wide", 3, r=4)
    return root


@pytest.fixture
def batch():
    torch.manual_seed(7)
    return {"input_ids": torch.randint(0, 64, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long)}


def bernstein(t: float) -> list[float]:
    return [(1 - t) ** 2, 2 * t * (1 - t), t**2]


def test_load_adapter_state_maps_keys_and_restores_model(adapters):
    model = get_peft_model(base(), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(PROJS)))
    before = {n: p.clone() for n, p in model.named_parameters()}
    state = load_adapter_state(adapters / "a", model)
    raw = raw_factors(adapters / "a")
    assert len(state) == 2 * LAYERS * len(PROJS)
    for (i, p), (a, b) in raw.items():
        assert torch.equal(state[live(i, p, "lora_A")], a)
        assert torch.equal(state[live(i, p, "lora_B")], b)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # the model's adapter is restored


def test_different_configs_refused(adapters):
    with pytest.raises(ValueError, match=r"different configs \(r: 2 vs 4"):
        lora_curve(base(), [adapters / "a", adapters / "wide"])
    with pytest.raises(ValueError, match="is an adapter folder; pass the base model"):
        lora_curve(adapters / "a", [adapters / "a", adapters / "b"])


def test_factors_space_matches_dense_model(adapters, batch):
    curve = lora_curve(base(), [adapters / "a", adapters / "b"])
    assert isinstance(curve, Curve) and curve.names == [
        live(i, p, f) for i in range(2) for p in PROJS for f in ("lora_A", "lora_B")
    ]
    torch.manual_seed(3)
    with torch.no_grad():
        curve.control_points[0].add_(torch.randn_like(curve.control_points[0]) * 0.2)
    ends = [raw_factors(adapters / "a"), raw_factors(adapters / "b")]
    mid = curve.control_point(0)
    for t in (0.0, 0.3, 0.75, 1.0):
        c = bernstein(t)
        delta = {}
        for key in ends[0]:
            (a0, b0), (a1, b1) = ends[0][key], ends[1][key]
            a_t = c[0] * a0 + c[1] * mid[live(*key, "lora_A")] + c[2] * a1
            b_t = c[0] * b0 + c[1] * mid[live(*key, "lora_B")] + c[2] * b1
            delta[key] = S * b_t @ a_t  # B(t) A(t): not on the straight line in dW
        with torch.no_grad():
            torch.testing.assert_close(curve(t, batch), dense_logits(delta, batch), atol=2e-5, rtol=1e-4)


def test_factors_space_endpoints_exact_and_only_adapters_learn(adapters, batch):
    curve = lora_curve(base(), [adapters / "a", adapters / "b"])
    for t, folder in ((0.0, "a"), (1.0, "b")):
        reference = PeftModel.from_pretrained(base(), adapters / folder).eval()
        with torch.no_grad():
            assert torch.equal(curve(t, batch), reference(**batch).logits)
    template = curve.template
    base_before = {n: p.clone() for n, p in template.named_parameters() if "lora_" not in n}
    curve(0.4, batch).pow(2).mean().backward()
    assert curve.control_points[0].grad.abs().sum() > 0
    assert all(p.grad is None for p in template.parameters())
    torch.optim.AdamW(curve.parameters(), lr=0.1).step()
    assert all(torch.equal(p, base_before[n]) for n, p in template.named_parameters() if "lora_" not in n)
    # one control point per layer: q (A 2x32, B 32x2) + v (A 2x32, B 16x2) = 128 + 96
    assert sum(p.numel() for p in curve.parameters()) == LAYERS * 224


def delta_hand(ends, mids, t):
    c = bernstein(t)
    out = {}
    for key in ends[0]:
        (a0, b0), (a1, b1) = ends[0][key], ends[1][key]
        out[key] = S * (
            c[0] * b0 @ a0 + c[1] * mids[live(*key, "lora_B")] @ mids[live(*key, "lora_A")] + c[2] * b1 @ a1
        )
    return out


def test_delta_space_is_exact_and_matches_dense_model(adapters, batch):
    curve = lora_curve(base(), [adapters / "a", adapters / "b"], space="delta")
    assert isinstance(curve, LoraDeltaCurve) and curve.ranks == [R, 2 * R, R]
    ends = [raw_factors(adapters / "a"), raw_factors(adapters / "b")]
    for t in (0.0, 0.25, 0.6, 1.0):  # linear init: exactly the straight line in dW
        params = curve.adapter_params(t)
        for key in ends[0]:
            straight = (1 - t) * S * ends[0][key][1] @ ends[0][key][0] + t * S * ends[1][key][1] @ ends[1][key][0]
            got = S * params[live(*key, "lora_B")] @ params[live(*key, "lora_A")]
            torch.testing.assert_close(got, straight, atol=1e-6, rtol=1e-5)
    straight_length = sum(
        float(torch.linalg.matrix_norm(S * (b1 @ a1 - b0 @ a0)) ** 2)
        for (a0, b0), (a1, b1) in zip(ends[0].values(), ends[1].values(), strict=True)
    )
    assert curve.path_length([0.0, 0.3, 1.0]) == pytest.approx(straight_length**0.5, rel=1e-6)  # fp32 reference
    torch.manual_seed(4)
    with torch.no_grad():
        curve.control_points[0].add_(torch.randn_like(curve.control_points[0]) * 0.2)
    mids = {name: factor.detach() for name, factor in curve.factors(1).items()}
    for t in (0.0, 0.3, 1.0):
        with torch.no_grad():
            torch.testing.assert_close(curve(t, batch), dense_logits(delta_hand(ends, mids, t), batch))
    ts = [0.0, 0.5, 1.0]
    dense = [delta_hand(ends, mids, t) for t in ts]
    expected = sum(
        sum(float(torch.linalg.matrix_norm(v[k] - u[k]) ** 2) for k in u) ** 0.5 for u, v in itertools.pairwise(dense)
    )
    assert curve.path_length(ts) == pytest.approx(expected, rel=1e-5)


def test_delta_space_endpoints_gradients_and_write_to(adapters, batch):
    curve = lora_curve(base(), [adapters / "a", adapters / "b"], space="delta", init=adapters / "init")
    assert curve.ranks == [R, R, R]
    init = raw_factors(adapters / "init")
    assert torch.equal(curve.factors(1)[live(0, "q_proj", "lora_A")], init[(0, "q_proj")][0])
    for t, folder in ((0.0, "a"), (1.0, "b")):  # a rank-3r matmul sums in another order: allclose, not equal
        reference = PeftModel.from_pretrained(base(), adapters / folder).eval()
        with torch.no_grad():
            torch.testing.assert_close(curve(t, batch), reference(**batch).logits, atol=1e-6, rtol=1e-5)
    template = curve.template
    base_before = {n: p.clone() for n, p in template.named_parameters() if "lora_" not in n}
    curve(0.4, batch).pow(2).mean().backward()
    assert len(curve.control_points) == 1 and curve.control_points[0].grad.abs().sum() > 0
    assert curve.trained_names() == [*curve.a_names, *curve.b_names]
    gradients = curve.control_point_gradients()  # not slices of named parameters: an error once read
    with pytest.raises(ValueError, match="space='factors'"):
        list(gradients)
    assert all(p.grad is None for p in template.parameters())
    torch.optim.AdamW(curve.parameters(), lr=0.1).step()
    assert all(torch.equal(p, base_before[n]) for n, p in template.named_parameters() if "lora_" not in n)
    target = copy.deepcopy(template)
    curve.write_to(target, 0.4)
    with torch.no_grad():
        torch.testing.assert_close(target(**batch).logits, curve(0.4, batch), atol=0, rtol=0)


def test_delta_curve_refuses_wrong_template_rank(adapters):
    model = get_peft_model(base(), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(PROJS)))
    states = [load_adapter_state(adapters / name, model) for name in ("a", "b")]
    with pytest.raises(ValueError, match=r"has rank 2 but 3 bends of ranks \[2, 4, 2\] need 8; wrap the base with r=8"):
        LoraDeltaCurve(model, states, Bezier(3), scaling=S)


@pytest.mark.parametrize("space", ["factors", "delta"])
def test_a_curve_from_the_base_starts_at_the_zero_adapter(adapters, batch, tmp_path, space):
    """The base at one end is the zero adapter (A = B = 0): t = 0 is the plain base, t = 1 the adapter."""
    base().save_pretrained(tmp_path / "base")
    curve = lora_curve(tmp_path / "base", [tmp_path / "base", adapters / "b"], space=space)
    reference = PeftModel.from_pretrained(base(), adapters / "b").eval()
    with torch.no_grad():
        torch.testing.assert_close(curve(0.0, batch), base()(**batch).logits, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(curve(1.0, batch), reference(**batch).logits, atol=1e-6, rtol=1e-5)
        middle = curve(0.5, batch)
    assert not torch.allclose(middle, curve(0.0, batch)) and not torch.allclose(middle, curve(1.0, batch))
    assert curve.path_length([0.0, 0.5, 1.0]) > 0
    by_module = lora_curve(base(), [None, adapters / "b"], space=space)  # None names the base too
    with torch.no_grad():
        torch.testing.assert_close(by_module(0.0, batch), base()(**batch).logits, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="both ends are the base"):
        lora_curve(base(), [None, None], space=space)
