"""Representation Misdirection for Unlearning (RMU; Li et al., 2024, "The WMDP Benchmark", Sec. 5.2).

At one decoder layer ``l`` with hidden size ``d``, the forget activations are steered to a fixed random direction
and the retain activations are held at the frozen model's:

    L = gamma * mean_b [ sum_{i in A_b} ||h_l(x_f)_i - c u||^2 / d ] / |A_b|
      + alpha * mean_b [ sum_{i in A_b} ||h_l(x_r)_i - h_l^ref(x_r)_i||^2 / d ] / |A_b|

with ``u`` a random unit vector (uniform entries, normalised, fixed by ``seed``), ``c`` the steering coefficient and
``A_b`` the answer tokens of sample ``b`` (labels != -100): the per-token mean squared error of each sample,
averaged over the batch, ``mean_b(S_b / n_b)``. Only parameters matching ``trainable`` are updated.

open-unlearning's RMU (``src/trainer/unlearn/rmu.py``, ``compute_activation_loss``) intends the same but divides
the ``[b]`` vector of sums ``S`` by a ``[b, 1]`` token count ``n``; the division broadcasts to ``[b, b]`` and its
mean is ``mean(S) * mean(1 / n)``. The two agree when every answer in the batch has the same length and differ
otherwise; ``compat: open_unlearning`` (:mod:`mcu_lightning.core.compat`) computes theirs.

Defaults follow open-unlearning's shipped ``configs/trainer/RMU.yaml`` (``steering_coeff: 2``, ``alpha: 1``,
``gamma: 1``, every parameter trainable) except the layer: theirs names ``model.layers.7`` (the middle of
Llama-3.2-1B's 16 layers, minus one), which presumes a depth; ours is the middle decoder layer of whatever model
it meets (``layers.8`` on Llama-3.2-1B). Set ``layer: "model\\.layers\\.7$"`` to reproduce theirs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mcu_lightning.core.compat import OPEN_UNLEARNING
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import Policy
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.losses.nll import require_split

_LAYER_NAME = re.compile(r"(^|\.)layers\.(\d+)$")


def activation_loss(activations: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mean_b [sum_{i: mask} mean_d (a - target)^2] / |mask_b|`` (samples without a masked token count 0)."""
    per_token = (activations.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_token.dtype)
    return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).mean()


def activation_loss_open_unlearning(activations: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """open-unlearning's reduction (``compute_activation_loss``): ``mean_{j,b} S_b / n_j = mean(S) * mean(1 / n)``,
    ``S_b = sum_{i: mask} mean_d (a - target)^2`` and ``n_j = |mask_j|`` (a sample without answer tokens gives
    inf or NaN there, as it does in theirs)."""
    per_token = (activations.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_token.dtype)
    sums = (per_token * mask).sum(dim=1)  # [b]
    counts = mask.sum(dim=1, keepdim=True)  # [b, 1]
    return (sums / counts).mean()  # [b, b]: the broadcast of their code


def decoder_layer(model: nn.Module, pattern: str | None) -> tuple[str, nn.Module]:
    """The module whose output RMU reads: the one name matching ``pattern`` (``re.search``), or by default the
    middle of the numbered ``layers.<i>`` blocks (a Hugging Face decoder's layer list)."""
    named = dict(model.named_modules())
    if pattern is None:
        layers = sorted((int(m.group(2)), name) for name in named if (m := _LAYER_NAME.search(name)))
        if not layers:
            raise InputError("RMU found no 'layers.<i>' blocks in the model; set `layer` to a module name regex")
        name = layers[len(layers) // 2][1]
        return name, named[name]
    matches = [name for name in named if name and re.search(pattern, name)]
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(matches[:4]) + (" ..." if len(matches) > 4 else "")
        raise InputError(f"RMU layer={pattern!r} must match exactly one module; it matches {found}")
    return matches[0], named[matches[0]]


class RMU(UnlearningLoss):
    """RMU: forget activations at one layer steered to ``c u``, retain activations kept at the reference's.

    Args:
        layer: regex (``re.search``) of the one module whose output is steered, e.g. ``"model\\.layers\\.7$"``;
            default: the middle decoder layer.
        steering_coeff: ``c``, the norm of the target activation (2, open-unlearning's shipped RMU.yaml; its class
            default and the WMDP code use 20, the WMDP paper 6.5 to 300 depending on the model).
        alpha: weight of the retain term.
        gamma: weight of the forget term.
        trainable: regex of the parameters to update (e.g. ``"layers\\.(5|6|7)\\.mlp\\.down_proj\\.weight"``); the
            module freezes the others before training. Default: every trainable parameter.
        seed: the seed of the random direction ``u``.
    """

    needs_reference = True
    supports_classification = False  # it steers a decoder layer's hidden states at the answer tokens

    def __init__(
        self,
        layer: str | None = None,
        steering_coeff: float = 2.0,
        alpha: float = 1.0,
        gamma: float = 1.0,
        trainable: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.layer, self.steering_coeff, self.alpha, self.gamma = layer, steering_coeff, alpha, gamma
        self.trainable_regex, self.seed = trainable, seed
        self._handles: list[Any] = []
        self._capturing = False
        self._captured: Tensor | None = None

    # -- hooks the modules call ---------------------------------------------------------------------------------
    def is_trainable(self, name: str) -> bool:
        return self.trainable_regex is None or re.search(self.trainable_regex, name) is not None

    def attach(self, model: nn.Module, reference: nn.Module | None = None) -> None:
        """Read layer ``l``'s output of ``model`` (the trained network or a curve's template) and ``reference``."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for network in (model, reference):
            if network is not None:
                _, module = decoder_layer(network, self.layer)
                self._handles.append(module.register_forward_hook(self._capture))

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._capturing:
            self._captured = output[0] if isinstance(output, (tuple, list)) else output

    def _activations(self, policy: Policy, batch: Mapping[str, Any]) -> Tensor:
        self._captured, self._capturing = None, True
        try:
            policy(batch)
        finally:
            self._capturing = False
        captured, self._captured = self._captured, None
        if captured is None:
            raise RuntimeError(
                "RMU read no activation: the module must call loss.attach(model, reference) before training "
                "(UnlearningModule and CurveModule do)"
            )
        return captured

    def control_vector(self, dim: int, device: torch.device) -> Tensor:
        """``c u`` with ``u = r / ||r||``, ``r ~ U[0, 1)^d`` from ``seed`` (the same on every rank and resume)."""
        generator = torch.Generator().manual_seed(self.seed)
        direction = torch.rand(dim, generator=generator, dtype=torch.float64)
        return (self.steering_coeff * direction / direction.norm()).float().to(device)

    # -- the loss -----------------------------------------------------------------------------------------------
    def forward(self, policy: Policy, batch: Mapping[str, Any], reference: Policy | None = None) -> LossOutput:
        forget = require_split(batch, "forget", type(self).__name__)
        h_forget = self._activations(policy, forget)
        target = self.control_vector(h_forget.shape[-1], h_forget.device)
        reduce = activation_loss_open_unlearning if self.compat == OPEN_UNLEARNING else activation_loss
        forget_term = reduce(h_forget, target, forget["labels"] != -100)
        loss, logs = self.gamma * forget_term, {"forget_rmu": forget_term.detach()}
        retain = batch.get("retain")
        if retain is not None and self.alpha:
            reference = self.require_reference(reference)
            h_retain = self._activations(policy, retain)
            with torch.no_grad():
                h_reference = self._activations(reference, retain)
            retain_term = reduce(h_retain, h_reference, retain["labels"] != -100)
            loss = loss + self.alpha * retain_term
            logs["retain_rmu"] = retain_term.detach()
        return LossOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"layer={self.layer!r}, steering_coeff={self.steering_coeff}, alpha={self.alpha}, gamma={self.gamma}, "
            f"trainable={self.trainable_regex!r}"
        )
