"""Activation checkpointing with curves: ``functional_call`` swaps theta(t) in only while the forward runs, but a
non-reentrant checkpoint recomputes the layer during BACKWARD, after the swap is undone: the recomputation then sees
the template's own weights, and the control-point gradients come out silently wrong. Re-entering the same
reparametrisation during recomputation (``checkpoint(..., context_fn=...)``, which HF forwards from
``gradient_checkpointing_kwargs``) makes them exact again.
"""

import pytest
import torch
from torch.func import functional_call

from mcu_lightning.core.forward import logits_of, model_inputs
from mcu_lightning.curves import Curve
from mcu_lightning.curves.template import enable_gradient_checkpointing, uses_activation_checkpointing
from mcu_lightning.models import tiny_causal_lm


class UnprotectedCurve(Curve):
    """What a curve would do without the recomputation context: a bare ``functional_call``."""

    def forward(self, t, batch, buffers=None):
        args, kwargs = model_inputs(batch)
        state = {**self.params(t), **(buffers if buffers is not None else self.buffers_at(t))}
        return logits_of(functional_call(self.template, state, args, kwargs))


def tiny_llama(seed: int) -> torch.nn.Module:
    return tiny_causal_lm(tokenizer=None, vocab_size=64, hidden_size=32, intermediate_size=64, seed=seed)


def control_point_grad(curve_cls, checkpoint_kwargs: dict | None, explicit: bool = False) -> torch.Tensor:
    template = tiny_llama(2)
    if checkpoint_kwargs is not None:
        template.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs)
    curve = curve_cls(template, [tiny_llama(0).state_dict(), tiny_llama(1).state_dict()]).train()
    if explicit:
        enable_gradient_checkpointing(template)
    checkpointing = checkpoint_kwargs is not None or explicit
    assert template.training and uses_activation_checkpointing(template) == checkpointing
    torch.manual_seed(5)
    with torch.no_grad():  # off the straight line, so theta(t) differs from the template everywhere
        curve.control_points[0].add_(torch.randn_like(curve.control_points[0]) * 0.1)
    batch = {"input_ids": torch.randint(0, 64, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    logits = curve(0.3, batch)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), batch["input_ids"][:, 1:].reshape(-1)).backward()
    return curve.control_points[0].grad.clone()


@pytest.fixture(scope="module")
def reference_grad():
    return control_point_grad(Curve, None)


def test_bare_functional_call_with_checkpointing_gives_wrong_gradients(reference_grad):
    """The hazard the curve guards against: recomputation outside theta(t) silently changes the gradients."""
    grad = control_point_grad(UnprotectedCurve, {"use_reentrant": False})
    assert not torch.allclose(grad, reference_grad, atol=1e-6)
    # wrong by the same order as the gradient itself, not by rounding
    assert (grad - reference_grad).abs().max() > 0.1 * reference_grad.abs().max()


def test_curve_over_a_checkpointed_template_gives_exact_gradients(reference_grad):
    """A template whose user switched checkpointing on: the curve re-enables it with its recomputation context."""
    grad = control_point_grad(Curve, {"use_reentrant": False})
    torch.testing.assert_close(grad, reference_grad, atol=1e-6, rtol=0)


def test_enable_gradient_checkpointing_gives_exact_gradients(reference_grad):
    grad = control_point_grad(Curve, None, explicit=True)
    torch.testing.assert_close(grad, reference_grad, atol=1e-6, rtol=0)


def test_enable_gradient_checkpointing_refuses_plain_modules():
    with pytest.raises(ValueError, match="gradient_checkpointing_enable"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))
