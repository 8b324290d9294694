import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mcu_lightning.curves import Bezier, Curve, Linear, PolyChain
from mcu_lightning.models import tiny_causal_lm


def tiny_llama(seed: int) -> nn.Module:
    return tiny_causal_lm(
        tokenizer=None, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, seed=seed
    ).eval()


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.body(x))


def mlp_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return Mlp().state_dict()


@pytest.fixture(scope="module")
def llama_endpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    paths = []
    for seed in (0, 1):
        tiny_llama(seed).save_pretrained(root / f"end{seed}")
        paths.append(root / f"end{seed}")
    return paths


@pytest.fixture
def lm_batch():
    torch.manual_seed(7)
    return {"input_ids": torch.randint(0, 64, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}


def test_llama_endpoints_exact_and_tied(llama_endpoints, lm_batch):
    template = tiny_llama(2)
    curve = Curve(template, llama_endpoints)
    # one control-point set: the tied lm_head is not a second name
    assert "lm_head.weight" not in curve.names and "model.embed_tokens.weight" in curve.names
    with torch.no_grad():
        for t, seed in ((0.0, 0), (1.0, 1)):
            assert torch.equal(curve(t, lm_batch), tiny_llama(seed)(**lm_batch).logits)
    # also exact while autograd is on (the control points join the graph with weight 0)
    assert torch.equal(curve(0.0, lm_batch), tiny_llama(0)(**lm_batch).logits)
    # write_to gives a model that matches the functional forward at an interior t, with lm_head still tied
    model = curve.write_to(tiny_llama(3), 0.4)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.lm_head.weight, curve.params(0.4)["model.embed_tokens.weight"])
    with torch.no_grad():
        assert torch.allclose(model(**lm_batch).logits, curve(0.4, lm_batch), atol=1e-6)


def test_only_control_points_train_and_frozen_tensors_stay(llama_endpoints, lm_batch):
    template = tiny_llama(2)
    before = copy.deepcopy(template.state_dict())
    curve = Curve(template, llama_endpoints)
    start, end = curve._start.clone(), curve._end.clone()
    optimizer = torch.optim.SGD(curve.parameters(), lr=0.1)
    assert len(list(curve.parameters())) == 1
    for t in (0.3, 0.6, 0.5):
        optimizer.zero_grad()
        curve(t, lm_batch).logsumexp(-1).mean().backward()
        optimizer.step()
    assert curve.control_points[0].grad is not None and curve.control_points[0].grad.abs().sum() > 0
    assert all(p.grad is None for p in template.parameters())
    assert all(torch.equal(before[k], v) for k, v in template.state_dict().items())
    assert torch.equal(curve._start, start) and torch.equal(curve._end, end)
    assert list(curve.state_dict()) == ["control_points.0"]


def test_linear_init_is_the_straight_line():
    states = [mlp_state(0), mlp_state(1)]
    curve = Curve(Mlp(), states, shape=Bezier(3))
    for t in (0.1, 0.37, 0.5, 0.9):
        for name, value in curve.params(t).items():
            assert torch.allclose(value, torch.lerp(states[0][name], states[1][name], t), atol=1e-6), name
    chain = Curve(Mlp(), states, shape=PolyChain(4))
    assert len(chain.control_points) == 2
    mid = chain.control_point(1)["head.bias"]
    assert torch.allclose(mid, torch.lerp(states[0]["head.bias"], states[1]["head.bias"], 2 / 3))
    line = Curve(Mlp(), states, shape=Linear())
    assert len(list(line.parameters())) == 0
    # path length of a straight line is the endpoint distance
    distance = torch.cat([(states[1][n] - states[0][n]).flatten() for n in states[0]]).norm().item()
    assert line.path_length([0.0, 0.3, 1.0]) == pytest.approx(distance, rel=1e-5)
    assert curve.path_length([0.0, 0.5, 1.0]) == pytest.approx(distance, rel=1e-5)


def test_init_from_a_third_model(tmp_path):
    states = [mlp_state(0), mlp_state(1)]
    save_file(mlp_state(2), tmp_path / "original.safetensors")
    curve = Curve(Mlp(), states, init=tmp_path / "original.safetensors")
    original = mlp_state(2)
    # quadratic Bezier at t=0.5: 0.25 w0 + 0.5 theta + 0.25 w1
    expected = 0.25 * states[0]["body.0.weight"] + 0.5 * original["body.0.weight"] + 0.25 * states[1]["body.0.weight"]
    assert torch.allclose(curve.params(0.5)["body.0.weight"], expected, atol=1e-6)


def test_include_restricts_the_curve():
    a, b = mlp_state(0), mlp_state(0)
    b["head.weight"] = b["head.weight"] + 1.0
    curve = Curve(Mlp(), [a, b], include=r"^head\.")
    assert curve.names == ["head.weight", "head.bias"]
    assert curve.control_points[0].numel() == 2 * 3 + 2
    params = curve.params(0.5)
    assert torch.equal(params["body.0.weight"], a["body.0.weight"])
    assert torch.allclose(params["head.weight"], a["head.weight"] + 0.5)
    b["body.2.bias"] = b["body.2.bias"] + 1.0
    with pytest.raises(ValueError, match=r"'body\.2\.bias' is off the curve .* differs between endpoints"):
        Curve(Mlp(), [a, b], include=r"^head\.")
    with pytest.raises(ValueError, match="matches no parameter"):
        Curve(Mlp(), [a, b], include="lora_")


def test_validation_errors_name_the_tensor(tmp_path):
    a, b = mlp_state(0), mlp_state(1)
    missing = dict(b)
    del missing["body.2.weight"]
    with pytest.raises(ValueError, match=r"endpoint #1 lacks parameter 'body\.2\.weight' that endpoint #0 has"):
        Curve(Mlp(), [a, missing])
    wrong = dict(b, **{"head.bias": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"'head\.bias' has shape \(2,\) in endpoint #0 but \(5,\) in #1"):
        Curve(Mlp(), [a, wrong])
    bad = dict(b, **{"body.0.bias": torch.full((8,), float("nan"))})
    with pytest.raises(ValueError, match=r"endpoint #1 has non-finite values .* in 'body\.0\.bias'"):
        Curve(Mlp(), [a, bad])
    with pytest.raises(ValueError, match="a curve needs two different endpoints"):
        Curve(Mlp(), [a, dict(a)])
    with pytest.raises(FileNotFoundError, match=r"endpoint '.*nowhere' does not exist"):
        Curve(Mlp(), [a, tmp_path / "nowhere"])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="is not a model"):
        Curve(Mlp(), [a, tmp_path / "notes.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no model weights"):
        Curve(Mlp(), [tmp_path / "empty", b])
    with pytest.raises(ValueError, match="exactly two endpoints"):
        Curve(Mlp(), [a])


def test_gradient_is_the_bernstein_weight():
    curve = Curve(Mlp(), [mlp_state(0), mlp_state(1)])
    t = 0.3
    curve.params(t)["head.bias"].sum().backward()
    grad = curve.control_point(0)  # views of the flat parameter; its grad is split the same way
    flat_grad = curve.control_points[0].grad
    offset = sum(v.numel() for n, v in grad.items() if curve.names.index(n) < curve.names.index("head.bias"))
    expected = torch.zeros_like(flat_grad)
    expected[offset : offset + 2] = 2 * t * (1 - t)  # d theta / d P_1 = c_1(t) = 2 t (1 - t)
    assert torch.allclose(flat_grad, expected)


@pytest.mark.parametrize("template_dtype", [torch.bfloat16, torch.float32])
def test_bf16_endpoints_stay_bf16_and_exact(template_dtype):
    states = [{k: v.to(torch.bfloat16) for k, v in mlp_state(s).items()} for s in (0, 1)]
    curve = Curve(Mlp().to(template_dtype), states)
    assert curve._start.dtype == torch.bfloat16 and curve.control_points[0].dtype == torch.float32
    x = {"inputs": torch.randn(3, 4, dtype=template_dtype)}
    for t, state in ((0.0, states[0]), (1.0, states[1])):
        reference = Mlp().to(template_dtype)
        reference.load_state_dict(state)
        assert torch.equal(curve(t, x), reference(x["inputs"]))  # autograd on: the weighted sum is exact too
    assert curve.params(0.5)["head.weight"].dtype == template_dtype
