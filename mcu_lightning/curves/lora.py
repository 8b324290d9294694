"""Curves between two LoRA adapters on one shared, frozen base model (the MCU authors' TOFU setting at scale).

A LoRA adapter (Hu et al., 2022) changes each target weight by ``dW = s B A`` with ``A: r x in``, ``B: out x r`` and
``s = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA). The base ``W0`` is loaded once and never copied; only adapter
tensors live on the curve. Two spaces:

**factors** (default; what the MCU authors ran): ``A`` and ``B`` are each a Bezier curve (Garipov et al., 2018,
Eq. 1-2), ``A(t) = sum_k c_k(t) A_k``, ``B(t) = sum_k c_k(t) B_k``, and ``W(t) = W0 + s B(t) A(t)``. This is the
plain :class:`~mcu_lightning.curves.curve.Curve` over the peft model with ``include="lora_"``; the base weights are
identical in both endpoints, so they sit off the curve. ``B(t) A(t)`` is NOT the straight line in ``dW``: for
``Bezier(3)`` it is a degree-4 polynomial in ``t``, and even the ``Line`` shape gives
``dW(t) = s [(1-t)^2 B0 A0 + t(1-t)(B0 A1 + B1 A0) + t^2 B1 A1]``.

**delta** (exact): the curve lives in ``dW`` itself, ``dW(t) = s sum_k c_k(t) B_k A_k``. It is realised as ONE
adapter of the summed rank, ``A_cat = [A_0; A_1; ...; A_{n-1}]`` (rows stacked, fixed in ``t``) and
``B_cat(t) = [c_0 B_0, c_1 B_1, ..., c_{n-1} B_{n-1}]`` (columns stacked), since ``B_cat(t) A_cat =
sum_k c_k(t) B_k A_k``. The endpoints' ``(A_0, B_0)``, ``(A_{n-1}, B_{n-1})`` are frozen; each control point's
``(A_k, B_k)`` is trainable. A control point has rank ``2r`` under ``init="linear"``: the straight line
``(1-t) dW_0 + t dW_1`` needs bend ``k`` at ``(1-t_k) B0 A0 + t_k B1 A1``, a rank-``2r`` matrix, set exactly by
``A_k = [A0; A1]``, ``B_k = [(1-t_k) B0, t_k B1]`` (Bernstein weights of collinear, evenly spaced bends reproduce
the line). With ``init=<adapter folder>`` a control point has that adapter's rank ``r``. The template is the base
wrapped by peft with rank ``R = 2r + (n-2) r_c`` adapters (``apply_lora`` / ``get_peft_model`` with ``r=R``,
``alpha`` scaled by ``R / r`` so peft's scaling stays ``s``; any remaining ratio is folded into ``B_cat``); the
forward runs it with the adapter tensors swapped in (a ``Reparametrization``), like ``Curve``. At
``t = 0`` or ``1`` the extra blocks are exactly zero, but the rank-``R`` matmul sums in another order than the
rank-``r`` one, so outputs agree with the endpoint adapters to fp32 rounding (``allclose``), not bit for bit.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import ADAPTER_CONFIG
from mcu_lightning.curves.curve import Curve
from mcu_lightning.curves.endpoints import check_distinct, check_two_endpoints
from mcu_lightning.curves.reparametrize import Reparametrization
from mcu_lightning.curves.shapes import Bezier, CurveShape
from mcu_lightning.curves.template import NamedGradients, TemplateCurve, functional_forward
from mcu_lightning.models.io import load_model

_CONFIG_FIELDS = ("r", "lora_alpha", "target_modules", "use_rslora", "rank_pattern", "alpha_pattern")


def _lora_config(folder: str | os.PathLike) -> Any:
    from peft import LoraConfig

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file():
        raise InputError(
            f"'{folder}' is not a peft adapter folder (no adapter_config.json); save it with save_pretrained"
        )
    return LoraConfig.from_pretrained(str(folder))


def _config_key(config: Any) -> dict[str, Any]:
    values = {name: getattr(config, name, None) for name in _CONFIG_FIELDS}
    targets = values["target_modules"]
    values["target_modules"] = sorted(targets) if isinstance(targets, (list, set, tuple)) else targets
    return values


def check_same_config(first: Any, second: Any, labels: Sequence[str]) -> None:
    """Two LoRA configs agree on rank, alpha, target modules, rsLoRA and rank/alpha patterns, or a clear error."""
    a, b = _config_key(first), _config_key(second)
    diffs = [f"{name}: {a[name]!r} vs {b[name]!r}" for name in _CONFIG_FIELDS if a[name] != b[name]]
    if diffs:
        raise InputError(
            f"LoRA adapters {labels[0]} and {labels[1]} have different configs ({'; '.join(diffs)}); "
            "a LoRA-space curve needs adapters of one config (same r, lora_alpha, target_modules)"
        )


def _adapter_param_names(model: nn.Module, adapter_name: str) -> list[str]:
    """``named_parameters()`` names of adapter ``adapter_name``'s LoRA factors, found through peft's LoRA layers."""
    from peft.tuners.lora import LoraLayer

    by_id = {id(param): name for name, param in model.named_parameters()}
    names = []
    for module in model.modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            names += [by_id[id(module.lora_A[adapter_name].weight)], by_id[id(module.lora_B[adapter_name].weight)]]
    if not names:
        raise InputError(f"the model has no LoRA adapter named '{adapter_name}'; wrap it with apply_lora first")
    return names


def _saved_module_param_names(model: nn.Module, adapter_name: str) -> list[str]:
    """``named_parameters()`` names of the modules adapter ``adapter_name`` trains in full (peft's
    ``modules_to_save``, e.g. a fresh classification head)."""
    from peft.utils import ModulesToSaveWrapper

    by_id = {id(param): name for name, param in model.named_parameters()}
    names = []
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            names += [by_id[id(param)] for param in module.modules_to_save[adapter_name].parameters()]
    return names


def load_adapter_state(folder: str | os.PathLike, model: nn.Module, adapter_name: str = "default") -> dict[str, Tensor]:
    """The LoRA factors (and ``modules_to_save`` weights) saved in an adapter ``folder``, keyed by
    ``model.named_parameters()`` names.

    peft saves keys without the adapter name (``...q_proj.lora_A.weight``); the live model has
    ``...q_proj.lora_A.default.weight``. peft's own ``set_peft_model_state_dict`` does the mapping: the folder is
    loaded into ``model``'s adapter, read back, and the adapter's previous values are restored. The folder's config
    must match the model's adapter config (rank, alpha, target modules).
    """
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    check_same_config(_lora_config(folder), model.peft_config[adapter_name], [f"'{folder}'", "of the model"])
    names = _adapter_param_names(model, adapter_name) + _saved_module_param_names(model, adapter_name)
    params = {name: model.get_parameter(name) for name in names}
    backup = {name: param.detach().clone() for name, param in params.items()}
    try:
        result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"), adapter_name)
        missing = [key for key in result.missing_keys if key in params]
        if missing or result.unexpected_keys:
            problem = f"lacks '{missing[0]}'" if missing else f"has unexpected tensor '{result.unexpected_keys[0]}'"
            raise InputError(f"adapter folder '{folder}' {problem}; is it an adapter of this base model?")
        return {name: param.detach().clone() for name, param in params.items()}
    except RuntimeError as error:  # shape mismatch from load_state_dict
        raise InputError(f"adapter folder '{folder}' does not fit the model's adapter: {error}") from error
    finally:
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(backup[name])


class _Unmappable(Sequence):
    """Named gradients of a curve whose control points are not slices of named parameters (LoRA-delta curves):
    empty for losses that never read them, a clear error for one that does (SalUn)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _fail(self) -> None:
        raise InputError(
            f"this objective edits gradients by parameter name, but a {self.kind}'s control points are not slices "
            "of named parameters; use space='factors' for a LoRA-space curve"
        )

    def __len__(self) -> int:
        self._fail()
        return 0

    def __getitem__(self, index: Any) -> Any:
        self._fail()

    def __iter__(self) -> Iterator[tuple[str, Tensor]]:
        self._fail()
        return iter(())


class LoraDeltaCurve(TemplateCurve):
    """A curve in ``dW`` space between two LoRA adapters: ``dW(t) = s sum_k c_k(t) B_k A_k`` (see the module doc).

    Args:
        template: the base wrapped by peft with ONE adapter (``adapter_name``) of rank ``R = 2r + (n-2) r_c``; only
            read, never trained (like ``Curve``'s template).
        endpoints: the two endpoint adapters' factors of rank ``r``, keyed by the template's parameter names (as
            :func:`load_adapter_state` returns them on a rank-``r`` model with the same adapter name).
        shape: the curve shape (``Bezier(3)`` by default).
        init: ``"linear"`` (control points of rank ``2r`` on the straight line in ``dW``) or an adapter state of the
            endpoints' form (control points at that adapter, rank ``r_c`` = its rank).
        scaling: the endpoint adapters' ``s`` (``alpha / r``); the template's own scaling is divided out.
    """

    def __init__(
        self,
        template: nn.Module,
        endpoints: Sequence[Mapping[str, Tensor]],
        shape: CurveShape | None = None,
        init: str | Mapping[str, Tensor] = "linear",
        scaling: float = 1.0,
        adapter_name: str = "default",
    ) -> None:
        super().__init__(template)
        from peft.tuners.lora import LoraLayer

        check_two_endpoints(endpoints)
        self.shape = shape if shape is not None else Bezier(3)
        names = _adapter_param_names(template, adapter_name)
        self.a_names, self.b_names = names[0::2], names[1::2]
        self._reparametrization = Reparametrization(template, names)  # the order adapter_params gives
        for i, state in enumerate(endpoints):
            for name in names:
                if name not in state:
                    raise InputError(f"endpoint #{i} lacks LoRA factor '{name}' of the template")
        start, end = ({name: state[name].detach() for name in names} for state in endpoints)
        check_distinct([start, end], names, "the two adapters")
        n = self.shape.num_bends
        r = start[self.a_names[0]].shape[0]
        init_state = None if isinstance(init, str) and init == "linear" else init
        if init_state is None and not (isinstance(init, str) and init == "linear"):
            raise InputError(f"init must be 'linear' or an adapter state dict, got {init!r}")
        r_c = 2 * r if init_state is None else init_state[self.a_names[0]].shape[0]
        self.ranks = [r] + [r_c] * (n - 2) + [r]
        template_rank = template.get_parameter(self.a_names[0]).shape[0]
        if template_rank != sum(self.ranks):
            raise InputError(
                f"the delta-space template's adapter has rank {template_rank} but {n} bends of ranks {self.ranks} need "
                f"{sum(self.ranks)}; wrap the base with r={sum(self.ranks)} (lora_curve does this)"
            )
        layers = [m for m in template.modules() if isinstance(m, LoraLayer) and adapter_name in m.lora_A]
        self.scaling = scaling
        self._ratios = [scaling / layer.scaling[adapter_name] for layer in layers]
        self._a_dtypes = [template.get_parameter(name).dtype for name in self.a_names]
        self._b_dtypes = [template.get_parameter(name).dtype for name in self.b_names]

        def flat(state: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> Tensor:
            return torch.cat([state[name].reshape(-1).to(dtype or state[name].dtype) for name in names])

        self.register_buffer("_start", flat(start, torch.float32), persistent=False)
        self.register_buffer("_end", flat(end, torch.float32), persistent=False)
        bends = []
        for t_k in self.shape.bend_ts()[1:-1]:
            if init_state is None:  # A_k = [A0; A1], B_k = [(1-t_k) B0, t_k B1]: on the straight line in dW
                bend = {}
                for a, b in zip(self.a_names, self.b_names, strict=True):
                    bend[a] = torch.cat([start[a], end[a]]).float()
                    bend[b] = torch.cat([(1 - t_k) * start[b].float(), t_k * end[b].float()], dim=1)
            else:
                bend = {name: init_state[name].detach().float() for name in names}
            bends.append(nn.Parameter(flat(bend, torch.float32)))
        self.control_points = nn.ParameterList(bends)
        self._sizes = [self._factor_sizes(start, rank) for rank in self.ranks]
        if not all(torch.isfinite(p).all() for p in (self._start, self._end, *bends)):
            raise InputError("an endpoint or init adapter has non-finite values (NaN or inf)")

    def _factor_sizes(self, start: Mapping[str, Tensor], rank: int) -> list[int]:
        sizes = []
        for a, b in zip(self.a_names, self.b_names, strict=True):
            sizes += [rank * start[a].shape[1], start[b].shape[0] * rank]
        return sizes

    def trained_names(self) -> list[str]:
        """The template's adapter factors: every ``A``, then every ``B`` (the frozen base is never moved)."""
        return [*self.a_names, *self.b_names]

    def control_point_gradients(self) -> NamedGradients:
        """Not available by name: a control point here is a stack of rank blocks, not slices of named parameters.
        Empty for losses that never read it; reading it is an error that says to use ``space='factors'``."""
        return _Unmappable(type(self).__name__)

    def _bends(self) -> list[Tensor]:
        return [self._start, *self.control_points, self._end]

    def factors(self, k: int) -> dict[str, Tensor]:
        """Bend ``k``'s ``(A_k, B_k)`` by template name (rank ``self.ranks[k]``), fp32 views."""
        flat, rank = self._bends()[k], self.ranks[k]
        pieces = flat.split(self._sizes[k])
        out = {}
        for i, (a, b) in enumerate(zip(self.a_names, self.b_names, strict=True)):
            out[a] = pieces[2 * i].view(rank, -1)
            out[b] = pieces[2 * i + 1].view(-1, rank)
        return out

    def adapter_params(self, t: float | Tensor) -> dict[str, Tensor]:
        """The template's LoRA factors at ``t``: ``A_cat`` and ``B_cat(t)`` (see the module doc), template dtypes."""
        c = self.shape.weights(t)
        bends = [self.factors(k) for k in range(self.num_bends)]
        out = {}
        for i, (a, b) in enumerate(zip(self.a_names, self.b_names, strict=True)):
            out[a] = torch.cat([bend[a] for bend in bends]).to(self._a_dtypes[i])
            b_cat = torch.cat([bend[b] * c_k for bend, c_k in zip(bends, c, strict=True)], dim=1)
            out[b] = (b_cat * self._ratios[i] if self._ratios[i] != 1.0 else b_cat).to(self._b_dtypes[i])
        return out

    def params(self, t: float | Tensor) -> dict[str, Tensor]:
        """Every template parameter at ``t``: the adapter factors at ``t``, the frozen base as is (not copied)."""
        return {**dict(self._template.named_parameters()), **self.adapter_params(t)}

    def forward(self, t: float | Tensor, batch: Mapping[str, Any]) -> Tensor:
        """Logits of the template, adapters at ``t``, on the batch's model inputs (``policy = partial(curve, t)``)."""
        return functional_forward(self._template, self._reparametrization, list(self.adapter_params(t).values()), batch)

    @torch.no_grad()
    def write_to(self, model: nn.Module, t: float | Tensor) -> nn.Module:
        """Copy the adapter factors at ``t`` into ``model`` (the template's architecture, rank-``R`` adapter).

        Only adapter tensors are written: the base of ``model`` must already be the template's base.
        """
        for name, value in self.adapter_params(t).items():
            try:
                target = model.get_parameter(name)
            except AttributeError as error:
                raise InputError(
                    f"write_to: the model has no LoRA factor '{name}'; is it the delta template?"
                ) from error
            if target.shape != value.shape:
                raise InputError(
                    f"write_to: '{name}' has shape {tuple(target.shape)}, {tuple(value.shape)} on the curve"
                )
            target.copy_(value)
        return model

    @torch.no_grad()
    def path_length(self, ts: Sequence[float]) -> float:
        """``sum_i ||dW(t_{i+1}) - dW(t_i)||_F`` over all adapted weights, in ``dW`` space (exact, adapter-sized).

        ``dW(u) - dW(v) = s B_cat D A_cat`` with ``D = diag(c(u) - c(v))`` per rank block, and
        ``||B D A||_F^2 = tr(G_B D G_A D)`` with the Gram matrices ``G_B = B^T B``, ``G_A = A A^T`` (``R x R``).
        """
        ts = [float(t) for t in ts]
        if len(ts) < 2:
            raise InputError(f"path_length needs at least two t values, got {ts}")
        bends = [self.factors(k) for k in range(self.num_bends)]
        grams = []
        for a, b in zip(self.a_names, self.b_names, strict=True):
            a_cat = torch.cat([bend[a] for bend in bends]).double()
            b_cat = torch.cat([bend[b] for bend in bends], dim=1).double()
            grams.append((self.scaling**2 * b_cat.T @ b_cat, a_cat @ a_cat.T))
        ranks = torch.tensor(self.ranks)
        total = 0.0
        for u, v in itertools.pairwise(ts):
            dc = (self.shape.coefficients(v) - self.shape.coefficients(u)).double().repeat_interleave(ranks)
            squared = sum(float((g_b * (dc[:, None] * g_a * dc[None, :]).T).sum()) for g_b, g_a in grams)
            total += math.sqrt(max(squared, 0.0))
        return total

    def extra_repr(self) -> str:
        return f"shape={self.shape}, ranks={self.ranks}, lora_factors={len(self.a_names) * 2}"


def _base_module(base: nn.Module | str | os.PathLike, dtype: torch.dtype | None) -> nn.Module:
    if isinstance(base, nn.Module):
        return base
    if (Path(base) / ADAPTER_CONFIG).exists():
        raise InputError(f"'{base}' is an adapter folder; pass the base model it was trained on")
    return load_model(base, dtype=dtype)


def is_base_folder(folder: str | os.PathLike | None, base: nn.Module | str | os.PathLike) -> bool:
    """Whether a curve end names the base itself (``None``, or the base's own folder): the zero adapter."""
    if folder is None:
        return True
    if isinstance(base, nn.Module) or (Path(folder) / ADAPTER_CONFIG).is_file():
        return False
    return Path(folder).resolve() == Path(base).resolve()


def zero_adapter_state(model: nn.Module, adapter_name: str = "default") -> dict[str, Tensor]:
    """The base as an adapter of ``model``'s config: every LoRA factor zero (``A = B = 0``, so ``dW = BA = 0``), any
    ``modules_to_save`` copy at the base's own weights (peft copies them from the base when it wraps it)."""
    state = {name: torch.zeros_like(model.get_parameter(name)) for name in _adapter_param_names(model, adapter_name)}
    for name in _saved_module_param_names(model, adapter_name):
        state[name] = model.get_parameter(name).detach().clone()
    return state


def lora_curve(
    base: nn.Module | str | os.PathLike,
    adapter_folders: Sequence[str | os.PathLike | None],
    shape: CurveShape | None = None,
    init: str | os.PathLike = "linear",
    space: Literal["factors", "delta"] = "factors",
    dtype: torch.dtype | None = None,
    trainable: Callable[[str], bool] | None = None,
) -> Curve | LoraDeltaCurve:
    """A curve between two LoRA adapter folders on one shared ``base`` (a module, wrapped by peft IN PLACE, or a
    path loaded once in ``dtype``), in ``space="factors"`` (a :class:`Curve` with ``include="lora_"``) or
    ``"delta"`` (a :class:`LoraDeltaCurve`). One end may be the base itself (``None`` or the base's folder): the
    zero adapter (:func:`zero_adapter_state`), so a curve runs from the base to an unlearned adapter in LoRA space.
    ``init`` is ``"linear"`` or a third adapter folder. ``trainable``
    restricts a factor-space curve to the adapter tensors it accepts (a curve objective's ``is_trainable``).
    """
    from peft import get_peft_model

    if len(adapter_folders) != 2:
        raise InputError(f"a curve needs exactly two adapter folders, got {len(adapter_folders)}")
    if space not in ("factors", "delta"):
        raise InputError(f"space must be 'factors' or 'delta', got {space!r}")
    zero = [is_base_folder(folder, base) for folder in adapter_folders]
    if all(zero):
        raise InputError("a LoRA-space curve needs an adapter folder at one end at least; both ends are the base")
    adapters = [folder for folder, is_base in zip(adapter_folders, zero, strict=True) if not is_base]
    configs = [_lora_config(folder) for folder in adapters]
    if len(configs) == 2:
        check_same_config(*configs, [f"'{folder}'" for folder in adapters])
    config = copy.deepcopy(configs[0])
    config.inference_mode = False
    model = get_peft_model(_base_module(base, dtype), config)
    states = [
        zero_adapter_state(model) if is_base else load_adapter_state(folder, model)
        for folder, is_base in zip(adapter_folders, zero, strict=True)
    ]
    linear = isinstance(init, str) and init == "linear"
    init_state = None if linear else load_adapter_state(init, model)
    if space == "factors":
        adapter = set(states[0])
        fixed = {name: param for name, param in model.named_parameters() if name not in adapter}
        init_arg = "linear" if linear else {**fixed, **init_state}
        include = r"lora_|\.modules_to_save\."  # the factors, and any head trained in full next to them
        states = [{**fixed, **state} for state in states]
        return Curve(model, states, shape, init_arg, include=include, trainable=trainable)
    rejected = [name for name in states[0] if trainable is not None and not trainable(name)]
    if rejected:
        raise InputError(
            f"the curve objective does not train adapter tensor '{rejected[0]}', but a space='delta' curve moves "
            "every adapter; use space='factors' to restrict the curve to the objective's parameters"
        )
    if _saved_module_param_names(model, "default"):
        raise InputError(
            "space='delta' curves LoRA factors only, but these adapters also train modules in full (peft "
            "modules_to_save, e.g. a classification head); use space='factors'"
        )
    shape = shape if shape is not None else Bezier(3)
    r, alpha = config.r, config.lora_alpha
    scaling = alpha / math.sqrt(r) if config.use_rslora else alpha / r
    rank = 2 * r + (shape.num_bends - 2) * (2 * r if linear else r)
    wide = copy.deepcopy(config)
    wide.r, wide.lora_alpha = rank, alpha * (rank // r)  # rank is a multiple of r: peft's scaling stays alpha / r
    template = get_peft_model(model.unload(), wide)
    return LoraDeltaCurve(template, states, shape, "linear" if linear else init_state, scaling=scaling)
