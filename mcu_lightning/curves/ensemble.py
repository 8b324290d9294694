"""An ensemble of models along a curve: its prediction is the mean of its members' probabilities.

``p_ens(y | x) = (1 / K) sum_k softmax(f_k(x))_y`` over members ``f_1 .. f_K`` (the average of predictive
distributions of deep ensembles, Lakshminarayanan et al., 2017; ensembles of points along a mode-connecting curve,
Garipov et al., 2018). :class:`Ensemble`'s forward returns ``log p_ens`` as its logits, computed stably as
``logsumexp_k log_softmax(f_k(x)) - log K``, so any code that takes ``log_softmax``, ``softmax``, ``argmax`` or a
cross-entropy of the logits (every suite of the package) reads the ensemble's averaged probabilities.

Members are points of a curve (a ``t`` each), state dicts or model folders (written into one working copy), or
modules used as they are. Curve points and state dicts are written into the ONE working copy member by member,
so an ensemble of K points of an LLM curve holds one model (plus the curve), not K, and a forward costs K plain
forwards plus K writes (``Curve.write_to``: a copy of the weights). BatchNorm statistics of a curve point are
recomputed at its t on the first use (Garipov et al., 2018, Sec. 3.4) and cached.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.forward import kv_cache_off, logits_of
from mcu_lightning.curves.batchnorm import _batchnorms, has_batchnorm, recompute_batchnorm
from mcu_lightning.curves.template import TemplateCurve
from mcu_lightning.models.io import load_state_dict

MemberSource = nn.Module | Mapping[str, Tensor] | str | os.PathLike


def ensemble_ts(points: int | Sequence[float]) -> list[float]:
    """``points`` evenly spaced t on [0, 1], endpoints included (``i / (K - 1)``), or the given values, checked."""
    if isinstance(points, int):
        if points < 2:
            raise InputError(
                f"points={points}: K evenly spaced points need K >= 2 (both endpoints); give ts=[t] for one point"
            )
        return [i / (points - 1) for i in range(points)]
    ts = [float(t) for t in points]
    if not ts:
        raise InputError("an ensemble needs at least one t")
    if any(not 0.0 <= t <= 1.0 for t in ts):
        raise InputError(f"ensemble ts {ts} have values outside [0, 1]; t parametrises the curve from 0 to 1")
    return ts


class Member:
    """One member of an :class:`Ensemble`: ``activate(working)`` returns the module that computes it (the working
    copy with the member's tensors written into it, or a module of its own)."""

    label: str = "member"

    def activate(self, working: nn.Module | None) -> nn.Module:
        raise NotImplementedError


class CurvePoint(Member):
    """``theta(t)`` of a curve (any :class:`~mcu_lightning.curves.template.TemplateCurve`: a
    :class:`~mcu_lightning.curves.Curve`, a LoRA-space curve), written into the working copy; BatchNorm statistics
    recomputed at ``t`` over ``bn_batches`` on the first activation and cached (recomputed again if the control
    points change)."""

    def __init__(self, curve: TemplateCurve, t: float, bn_batches: Iterable[Mapping[str, Any]] = ()) -> None:
        if not isinstance(curve, TemplateCurve):
            raise TypeError(f"a curve point needs a curve with write_to(model, t), got {type(curve).__name__}")
        self.curve, self.t = curve, float(t)
        if not 0.0 <= self.t <= 1.0:
            raise InputError(f"t={t} is outside [0, 1]")
        self.bn_batches = list(bn_batches)
        self.label = f"t={self.t:g}"
        self._bn: tuple[tuple[int, ...], list[Tensor]] | None = None

    def _version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.curve.control_points)

    def activate(self, working: nn.Module | None) -> nn.Module:
        if working is None:
            raise InputError("a curve point needs a working copy to write theta(t) into")
        self.curve.write_to(working, self.t)
        if has_batchnorm(working):
            buffers = [b for _, m in _batchnorms(working) for b in (m.running_mean, m.running_var)]
            if self._bn is not None and self._bn[0] == self._version():
                with torch.no_grad():
                    torch._foreach_copy_(buffers, self._bn[1])
            else:
                if not self.bn_batches:
                    raise InputError(
                        f"the model has BatchNorm: give the ensemble retain batches (bn_batches) to recompute its "
                        f"statistics at {self.label}"
                    )
                recompute_batchnorm(working, self.bn_batches)
                self._bn = (self._version(), [b.detach().clone() for b in buffers])
        return working.eval()


class StateMember(Member):
    """A state dict (or a model path, :func:`~mcu_lightning.models.io.load_state_dict`) written into the working
    copy with one ``_foreach_copy_``; a name the state lacks must be tied to one it has (``lm_head`` to the
    embeddings)."""

    def __init__(self, state: Mapping[str, Tensor] | str | os.PathLike, label: str | None = None) -> None:
        if isinstance(state, Mapping):
            self.state, self.label = dict(state), label or "state"
        else:
            self.state, self.label = load_state_dict(state), label or os.fspath(state)
        self._plan: tuple[nn.Module, list[Tensor], list[Tensor]] | None = None

    def _targets(self, working: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        if self._plan is not None and self._plan[0] is working:
            return self._plan[1], self._plan[2]
        own = working.state_dict(keep_vars=True)
        present = {t.data_ptr() for name, t in own.items() if name in self.state}
        targets, sources = [], []
        for name, tensor in own.items():
            if name not in self.state:
                if tensor.data_ptr() in present:
                    continue  # tied to a tensor the state has
                raise InputError(f"member {self.label} lacks '{name}' of the working copy; is it of its architecture?")
            source = self.state[name]
            if tuple(source.shape) != tuple(tensor.shape):
                raise InputError(
                    f"member {self.label}: '{name}' has shape {tuple(source.shape)}, {tuple(tensor.shape)} in the "
                    "working copy"
                )
            targets.append(tensor.detach())
            sources.append(source.detach().to(tensor.device, tensor.dtype))
        self._plan = (working, targets, sources)
        return targets, sources

    def activate(self, working: nn.Module | None) -> nn.Module:
        if working is None:
            raise InputError(f"member {self.label} is a state dict and needs a working copy to be written into")
        targets, sources = self._targets(working)
        with torch.no_grad():
            torch._foreach_copy_(targets, sources)
        return working.eval()


class ModuleMember(Member):
    """A module used as it is (in eval mode): no writes, its own memory."""

    def __init__(self, module: nn.Module, label: str | None = None) -> None:
        self.module, self.label = module, label or type(module).__name__

    def activate(self, working: nn.Module | None) -> nn.Module:
        return self.module.eval()


def as_member(source: MemberSource | Member) -> Member:
    """A :class:`Member` from a member, a module, a state dict or a model path."""
    if isinstance(source, Member):
        return source
    if isinstance(source, nn.Module):
        return ModuleMember(source)
    return StateMember(source)


class Ensemble(nn.Module):
    """A model whose output is the mean of its members' probabilities; evaluation only (forwards run without
    gradients).

    ``forward(*args, **kwargs)`` runs every member on the same inputs and returns ``log((1/K) sum_k
    softmax(logits_k))`` in fp32, accumulated as a running ``logaddexp`` of the members' ``log_softmax`` (one extra
    logits-sized tensor, never K). :meth:`generate` is greedy decoding from the averaged distribution, for the QA
    suite's ROUGE.

    Args:
        members: the members (:class:`CurvePoint`, :class:`StateMember`, :class:`ModuleMember`, or modules, state
            dicts and model paths, turned into members by :func:`as_member`).
        working: the model curve points and state dicts are written into (one model whatever K is); needed when a
            member is not a module.

    Build one with :meth:`from_curve` (K points of a curve, optionally with extra members such as the endpoints'
    own models) or :meth:`from_models`; evaluate it with
    :func:`~mcu_lightning.metrics.suite.evaluate_suite` like any model.
    """

    def __init__(self, members: Sequence[Member | MemberSource], working: nn.Module | None = None) -> None:
        super().__init__()
        if not members:
            raise InputError("an ensemble needs at least one member")
        self.members = [as_member(m) for m in members]
        needs_working = [m.label for m in self.members if not isinstance(m, ModuleMember)]
        if needs_working and working is None:
            raise InputError(f"members {needs_working} are written into a working copy: pass working=<a model>")
        object.__setattr__(self, "working", working)  # not a submodule: the ensemble owns no parameters

    @classmethod
    def from_curve(
        cls,
        curve: TemplateCurve,
        ts: int | Sequence[float],
        working: nn.Module | None = None,
        bn_batches: Iterable[Mapping[str, Any]] = (),
        extra: Sequence[Member | MemberSource] = (),
    ) -> Ensemble:
        """K points of ``curve`` (``ts``: K evenly spaced, endpoints included, or the values) plus ``extra``
        members. ``working`` defaults to the curve's template (what ``CurveModule.test`` writes theta(t) into: its
        values are overwritten, which the curve's own forward never reads). ``bn_batches``: retain batches for the
        BatchNorm recompute at each t (needed when the model has BatchNorm)."""
        working = working if working is not None else curve.template
        batches = list(bn_batches)
        points = [CurvePoint(curve, t, batches) for t in ensemble_ts(ts)]
        if has_batchnorm(working) and not batches:
            raise InputError("the model has BatchNorm: pass bn_batches (retain batches) to recompute it at each t")
        return cls([*points, *extra], working=working)

    @classmethod
    def from_models(cls, models: Sequence[MemberSource], working: nn.Module | None = None) -> Ensemble:
        """An ensemble of ordinary models: modules as they are, state dicts and paths written into ``working``."""
        return cls(list(models), working=working)

    def __len__(self) -> int:
        return len(self.members)

    def train(self, mode: bool = True) -> Ensemble:
        """An ensemble is evaluated only: its members always run in eval mode."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """``log p_ens``: the log of the mean of the members' softmax, fp32, the shape of one member's logits."""
        return self._log_mean(args, kwargs)

    def _log_mean(self, args: tuple, kwargs: dict, last_only: bool = False) -> Tensor:
        total: Tensor | None = None
        for member in self.members:
            model = member.activate(self.working)
            with kv_cache_off(model):
                logits = logits_of(model(*args, **kwargs))
            if last_only:
                logits = logits[:, -1]
            log_p = torch.log_softmax(logits.float(), dim=-1)
            del logits
            total = log_p if total is None else torch.logaddexp(total, log_p, out=total)
        assert total is not None
        return total.sub_(math.log(len(self.members)))

    def _first_model(self) -> nn.Module:
        member = self.members[0]
        return member.module if isinstance(member, ModuleMember) else self.working

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        pad_token_id: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> Tensor:
        """Greedy decoding from the ensemble: each next token is ``argmax_y p_ens(y | prompt, tokens so far)``.

        The arguments the QA suite passes to Hugging Face ``generate`` (left-padded prompts); the output is the
        prompts followed by the new tokens, ``pad_token_id`` after a row's end of sequence, stopping once every row
        has ended, as greedy ``generate`` does. Position ids follow the attention mask (``cumsum - 1``) when the
        members take them, as Hugging Face's generation does for left padding.

        No KV cache: every step re-runs each member on the whole sequence so far (and re-writes a curve member's
        weights), so a step costs K full forwards (the LM head on the last position only, ``logits_to_keep=1``, when
        the members take it); the tokens are the same as with a cache up to rounding.
        """
        if do_sample:
            raise InputError("Ensemble.generate is greedy only (do_sample=False)")
        first = self._first_model()
        config = getattr(first, "generation_config", None) or getattr(first, "config", None)
        if eos_token_id is None:
            eos_token_id = getattr(config, "eos_token_id", None)
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        if pad_token_id is None:
            pad_token_id = getattr(config, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
        takes = inspect.signature(first.forward).parameters
        positions, last_logits = "position_ids" in takes, "logits_to_keep" in takes
        ids = input_ids
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        eos_ids = torch.tensor(eos, dtype=ids.dtype, device=ids.device)
        unfinished = torch.ones(ids.size(0), dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            kwargs: dict[str, Tensor] = {"input_ids": ids, "attention_mask": mask}
            if positions:
                kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).masked_fill_(mask == 0, 1)
            if last_logits:
                kwargs["logits_to_keep"] = 1  # Hugging Face: the LM head on the last position only
            token = self._log_mean((), kwargs, last_only=True).argmax(dim=-1)
            token = torch.where(unfinished, token, torch.full_like(token, pad_token_id))
            ids = torch.cat([ids, token[:, None]], dim=-1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            if eos:
                unfinished &= ~torch.isin(token, eos_ids)
                if not bool(unfinished.any()):
                    break
        return ids

    def extra_repr(self) -> str:
        return f"members=[{', '.join(m.label for m in self.members)}]"
