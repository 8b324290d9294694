"""RMU: the activation loss by hand, the layer it reads, its direction, and that training steers forget activations."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from tiny_lm import qa_batch, tiny_llama

from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.losses import RMU, activation_loss
from mcu_lightning.losses.rmu import decoder_layer
from mcu_lightning.models import as_policy, call_model
from mcu_lightning.modules import UnlearningModule


def test_activation_loss_by_hand():
    a = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [9.0, 9.0]], [[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    target = torch.tensor([1.0, 1.0])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    # sample 0: token 0 mean((0, 2)^2) = 2, token 1 mean((1, 1)^2) = 1 -> (2 + 1) / 2; sample 1 has no token: 0
    assert activation_loss(a, target, mask).item() == pytest.approx((1.5 + 0.0) / 2)


def test_default_layer_is_the_middle_one_and_bad_patterns_are_named():
    model = tiny_llama()  # two layers: layers.0, layers.1
    assert decoder_layer(model, None)[0] == "model.layers.1"
    assert decoder_layer(model, r"layers\.0$")[0] == "model.layers.0"
    with pytest.raises(ValueError, match=r"must match exactly one module; it matches model\.layers\.0"):
        decoder_layer(model, r"layers\.\d$")
    with pytest.raises(ValueError, match="matches none"):
        decoder_layer(model, "nope")


def _layer_output(model, batch, name="model.layers.1"):
    captured = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, a, out: captured.append(out))
    with torch.no_grad():
        call_model(model, batch)
    handle.remove()
    out = captured[0]
    return out[0] if isinstance(out, tuple) else out


def test_loss_matches_the_formula_and_retain_term_starts_at_zero():
    model, forget, retain = tiny_llama(0).eval(), qa_batch(1), qa_batch(2)
    reference = copy.deepcopy(model)
    loss = RMU(steering_coeff=5.0, alpha=2.0, gamma=3.0, seed=7)
    loss.attach(model, reference)
    out = loss(as_policy(model), {"forget": forget, "retain": retain}, as_policy(reference))
    target = loss.control_vector(32, torch.device("cpu"))
    assert target.norm().item() == pytest.approx(5.0, rel=1e-6) and (target > 0).all()
    expected = activation_loss(_layer_output(model, forget), target, forget["labels"] != -100)
    assert out.logs["forget_rmu"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.logs["retain_rmu"].item() == 0.0  # the model is its reference
    assert out.loss.item() == pytest.approx(3.0 * expected.item(), rel=1e-6)
    with pytest.raises(RuntimeError, match=r"loss\.attach"):
        RMU()(as_policy(model), {"forget": forget})


def test_training_steers_forget_activations_and_updates_only_trainable_params():
    module = UnlearningModule(tiny_llama(0), RMU(steering_coeff=4.0, trainable=r"layers\.1\.mlp\."), export=False)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1.mlp." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    module.loss.attach(module.model, module.reference)
    optimizer = torch.optim.Adam([p for p in module.model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"forget": qa_batch(1), "retain": qa_batch(2)}
    first = None
    for _ in range(20):
        out = module.loss(as_policy(module.model), batch, module.reference_policy())
        first = out.logs["forget_rmu"].item() if first is None else first
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert out.logs["forget_rmu"].item() < 0.8 * first
    changed = {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


def test_a_curve_objective_reads_the_template():
    ends = [tiny_llama(0).state_dict(), tiny_llama(1).state_dict()]
    template = tiny_llama(2).requires_grad_(False)
    curve = Curve(template, ends, shape=Bezier(3))
    reference = tiny_llama(0).eval()
    loss = RMU(steering_coeff=3.0)
    loss.attach(template, reference)
    out = loss(partial(curve, 0.0), {"forget": qa_batch(1), "retain": qa_batch(2)}, as_policy(reference))
    endpoint = tiny_llama(0).eval()
    direct = RMU(steering_coeff=3.0)
    direct.attach(endpoint, reference)
    expected = direct(as_policy(endpoint), {"forget": qa_batch(1), "retain": qa_batch(2)}, as_policy(reference))
    assert torch.allclose(out.loss, expected.loss, atol=1e-5)  # t = 0 is endpoint 0 itself
    out.loss.backward()
    assert curve.control_points[0].grad is not None
