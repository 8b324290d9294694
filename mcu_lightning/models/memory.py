"""Bytes per device for curve fitting, unlearning and fine-tuning: a model of what ``Curve`` and the optimizer hold.

Full-weight curve (``mode="curve"``, ``lora_params=0``), ``b`` the endpoints' bytes per element (2 for bf16),
``n`` bends, per model parameter, as :class:`~mcu_lightning.curves.curve.Curve` stores things:

==================  ==================  =====================================================================
term                bytes (bf16, n=3)   where
==================  ==================  =====================================================================
endpoints           2 b = 4             ``_start``, ``_end``: one flat buffer each, the endpoints' own dtype
template            b = 2               the module ``functional_call`` runs (its weights exist, though never
                                        read for on-curve names)
control points      4 (n-2) = 4         ``control_points``: fp32 flat ``nn.Parameter`` per inner bend
their gradients     4 (n-2) = 4         ``.grad`` of each control point, fp32
optimizer state     8 (n-2) = 8         AdamW ``exp_avg``, ``exp_avg_sq`` (SophiaG: ``m``, ``h``), fp32
------------------  ------------------  ---------------------------------------------------------------------
persistent          22                  the "~22 bytes per parameter": what lives between steps
theta(t) cast       b = 2               ``flat_params(t).to(dtype)`` split into the weights ``functional_call``
                                        uses; autograd keeps it from forward to backward
theta(t) fp32       4                   the fp32 sum ``sum_k c_k P_k``, freed right after the cast
==================  ==================  =====================================================================

So a step peaks at 22 + 2 + 4 = 28 bytes per parameter plus activations (and the transient gradient of theta(t)
in backward, ``b + 4`` more for an instant, not modelled).

LoRA-space curve (``lora_params = L > 0``, the parameters of ONE endpoint adapter): the base once, ``N b`` (the
template; base weights are off the curve and shared, never copied), plus adapter-sized terms in fp32 (peft keeps
adapters fp32): endpoints ``2 * 4L``, control points, gradients, optimizer state, theta(t) and the template's own
adapter. In ``space="delta"`` the control point has rank ``2r`` (``2L`` parameters) and the template adapter rank
``(2 + 2(n-2)) r``; see :mod:`mcu_lightning.curves.lora`.

Unlearning / fine-tuning: weights, gradients and optimizer state in ``param_dtype`` (torch optimizers keep state in
the parameter's dtype), plus a frozen reference copy when the loss needs one (NPO, IdkDPO, SCRUB...). With LoRA the
base is frozen and the adapters (fp32) carry gradients and optimizer state; the reference is the base with the
adapter disabled, at no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from mcu_lightning.core.errors import InputError

_OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sophiag": 2, "sgd": 0}

LLAMA_3: dict[str, dict[str, Any]] = {
    "Llama-3.2-1B": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        tie_word_embeddings=True,
    ),
    "Llama-3.1-8B": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=False,
    ),
    "Llama-3.1-70B": dict(
        vocab_size=128256,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=False,
    ),
}
"""The public Llama-3 configs' dimensions (``config.json`` on the Hub), written out so no download is needed."""


@dataclass
class MemoryEstimate:
    """Predicted bytes per device, by term (see the module doc). ``persistent`` lives across steps."""

    mode: str
    weights: int = 0  # endpoints (curve) or the model's weights (unlearn/finetune)
    template: int = 0  # the module a curve runs; the shared base of a LoRA-space curve
    trainable: int = 0  # control points, or the trained parameters when they are a separate fp32 copy
    grads: int = 0
    optimizer: int = 0
    reference: int = 0  # frozen reference model
    working: int = 0  # theta(t): fp32 sum + its cast, alive during forward/backward
    activations: int = 0

    @property
    def persistent(self) -> int:
        return self.weights + self.template + self.trainable + self.grads + self.optimizer + self.reference

    @property
    def total(self) -> int:
        return self.persistent + self.working + self.activations

    def gib(self) -> float:
        return self.total / 2**30

    def as_dict(self) -> dict[str, int]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "mode"}
        return {**out, "persistent": self.persistent, "total": self.total}


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _head_dim(config: Any) -> int:
    return _get(config, "head_dim") or _get(config, "hidden_size") // _get(config, "num_attention_heads")


def param_count(config: Any) -> int:
    """Parameters of a Llama-style causal LM (Llama, Mistral) from its config (a ``PretrainedConfig`` or dict).

    ``V H`` embeddings; per layer ``H (q + 2 kv) d_h + q d_h H`` attention (``q``, ``kv`` the head counts, ``d_h``
    the head dim; biases when ``attention_bias``), ``3 H I`` MLP (biases when ``mlp_bias``), ``2 H`` RMSNorm weights;
    a final ``H`` norm; ``V H`` for ``lm_head`` unless tied to the embeddings. Tied weights count once.
    """
    if _get(config, "model_type", "llama") not in ("llama", "mistral"):
        raise InputError(f"param_count knows Llama-style configs, not {_get(config, 'model_type')!r}; pass num_params")
    v, h, i = _get(config, "vocab_size"), _get(config, "hidden_size"), _get(config, "intermediate_size")
    layers, heads = _get(config, "num_hidden_layers"), _get(config, "num_attention_heads")
    kv, d = _get(config, "num_key_value_heads") or heads, _head_dim(config)
    attention = h * (heads + 2 * kv) * d + heads * d * h
    if _get(config, "attention_bias", False):
        attention += (heads + 2 * kv) * d + h
    mlp = 3 * h * i + (2 * i + h if _get(config, "mlp_bias", False) else 0)
    lm_head = 0 if _get(config, "tie_word_embeddings", False) else v * h
    return v * h + layers * (attention + mlp + 2 * h) + h + lm_head


def lora_param_count(config: Any, r: int = 8, target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> int:
    """LoRA parameters ``r (in + out)`` per adapted projection (Hu et al., 2022) over all layers of a Llama config."""
    h, i, d = _get(config, "hidden_size"), _get(config, "intermediate_size"), _head_dim(config)
    heads = _get(config, "num_attention_heads")
    kv = _get(config, "num_key_value_heads") or heads
    shapes = {
        "q_proj": (h, heads * d), "k_proj": (h, kv * d), "v_proj": (h, kv * d), "o_proj": (heads * d, h),
        "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
    }  # fmt: skip
    unknown = [name for name in target_modules if name not in shapes]
    if unknown:
        raise InputError(f"unknown LoRA target modules {unknown}; use some of {list(shapes)}")
    return _get(config, "num_hidden_layers") * sum(r * sum(shapes[name]) for name in target_modules)


def _bytes(dtype: str | torch.dtype) -> int:
    if isinstance(dtype, str):
        from mcu_lightning.models.hf import resolve_dtype

        dtype = resolve_dtype(dtype)
    return torch.empty(0, dtype=dtype).element_size()


def estimate_memory(
    num_params: int | None = None,
    config: Any = None,
    param_dtype: str | torch.dtype = "bfloat16",
    mode: Literal["curve", "unlearn", "finetune"] = "curve",
    num_bends: int = 3,
    lora_params: int = 0,
    optimizer: Literal["adamw", "sophiag", "sgd"] = "adamw",
    activations_bytes: int = 0,
    reference: bool = False,
    space: Literal["factors", "delta"] = "factors",
) -> MemoryEstimate:
    """Bytes per device (no sharding) for ``mode`` on a model of ``num_params`` (or ``param_count(config)``)
    parameters stored in ``param_dtype``; ``lora_params > 0`` for LoRA (adapter parameters, one adapter).
    """
    if num_params is None:
        if config is None:
            raise InputError("estimate_memory needs num_params or a config")
        num_params = param_count(config)
    if optimizer not in _OPTIMIZER_STATES:
        raise InputError(f"unknown optimizer {optimizer!r}; use one of {sorted(_OPTIMIZER_STATES)}")
    if mode not in ("curve", "unlearn", "finetune"):
        raise InputError(f"unknown mode {mode!r}; use curve, unlearn or finetune")
    b, states, inner = _bytes(param_dtype), _OPTIMIZER_STATES[optimizer], num_bends - 2
    est = MemoryEstimate(mode=mode, activations=activations_bytes)
    if mode == "curve" and lora_params == 0:
        est.weights = 2 * b * num_params
        est.template = b * num_params
        est.trainable = est.grads = 4 * inner * num_params
        est.optimizer = 4 * states * inner * num_params
        est.working = (4 + b) * num_params
    elif mode == "curve":
        control = 2 * lora_params if space == "delta" else lora_params  # delta: control points of rank 2r
        template_adapter = (2 * lora_params + inner * control) if space == "delta" else lora_params
        est.weights = 2 * 4 * lora_params
        est.template = b * num_params + 4 * template_adapter
        est.trainable = est.grads = 4 * inner * control
        est.optimizer = 4 * states * inner * control
        est.working = 2 * 4 * template_adapter
    elif lora_params:
        est.weights = b * num_params + 4 * lora_params
        est.grads = 4 * lora_params
        est.optimizer = 4 * states * lora_params
    else:
        est.weights = est.grads = b * num_params
        est.optimizer = b * states * num_params
        est.reference = b * num_params if reference and mode == "unlearn" else 0
    return est


def memory_table(lora_r: int = 8, target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> str:
    """Markdown: GiB per device for the Llama-3 sizes, bf16, AdamW, quadratic curve, activations excluded."""
    rows = [
        "| model | parameters | unlearn (full, + reference) | unlearn (LoRA) "
        "| curve (full weights) | curve (LoRA space) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, config in LLAMA_3.items():
        n, lora = param_count(config), lora_param_count(config, lora_r, target_modules)
        cells = [
            estimate_memory(n, mode="unlearn", reference=True),
            estimate_memory(n, mode="unlearn", lora_params=lora),
            estimate_memory(n, mode="curve"),
            estimate_memory(n, mode="curve", lora_params=lora),
        ]
        rows.append(f"| {name} | {n / 1e9:.2f} B | " + " | ".join(f"{e.gib():,.1f} GiB" for e in cells) + " |")
    targets = ", ".join(target_modules)
    rows.append(f"\nbf16 weights, AdamW, Bezier(3); LoRA r={lora_r} on {targets}; activations not included.")
    return "\n".join(rows)
