"""``mcu export``: one point theta(t) of a trained curve, written as a model folder that loads on its own.

The curve checkpoint holds only the control points; the :class:`CurveModule` is rebuilt from the endpoints its
hyperparameters record (as ``mcu test --ckpt_path`` does) and its curve shape (``mcu_curve_shape``). The folder
is what :func:`mcu_lightning.models.io.save_model` writes (``save_pretrained`` for Hugging Face models, with the
endpoint's tokenizer when it has one) plus ``mcu_export.json`` saying what it holds:

- a full-weight curve: the weights at t (BatchNorm statistics recomputed at t on retain data, Garipov et al.,
  2018, Sec. 3.4);
- a LoRA-space curve in ``factors`` space: a peft adapter folder with the factors A(t), B(t);
- in ``delta`` space: merged full weights ``W + s B_cat(t) A_cat(t)`` (the concatenated rank-R adapter is not a
  rank-r adapter of the endpoints' config).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcu_lightning import curves
from mcu_lightning.callbacks.checkpoint import checkpoint_problem
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import ADAPTER_CONFIG, TOKENIZER_CONFIG
from mcu_lightning.core.registry import resolve_class_path
from mcu_lightning.curves import CurveShape, has_batchnorm
from mcu_lightning.losses.base import LossOutput, UnlearningLoss
from mcu_lightning.models.io import save_model
from mcu_lightning.modules.curve import CURVE_OBJECTIVE_KEY, CURVE_SHAPE_KEY, CurveModule

EXPORT_JSON = "mcu_export.json"
_SHAPE = re.compile(r"^(\w+)\((?:num_bends=(\d+))?\)$")


def _shape(text: str) -> CurveShape:
    """The curve shape from its recorded ``repr`` (``Bezier(num_bends=3)``, ``Linear()``)."""
    match = _SHAPE.match(text)
    cls = getattr(curves, match.group(1), None) if match else None
    if not (isinstance(cls, type) and issubclass(cls, CurveShape)):
        raise InputError(f"unknown curve shape {text!r} recorded in the checkpoint; one of mcu_lightning.curves'")
    return cls(int(match.group(2))) if match.group(2) else cls()


class RecordedObjective(UnlearningLoss):
    """The part of a curve's objective that rebuilding its checkpoint needs: which parameters it kept on the curve
    (``is_trainable`` answers as recorded). Evaluating the rebuilt curve (export, ensembles, the plane) never calls
    the objective; training with it is refused."""

    def __init__(self, class_path: str, refused: Sequence[str]) -> None:
        super().__init__()
        self.class_path, self.refused = class_path, frozenset(refused)

    def is_trainable(self, name: str) -> bool:
        return name not in self.refused

    def forward(self, policy: Any, batch: Mapping[str, Any], reference: Any = None) -> LossOutput:
        raise RuntimeError(
            f"this curve was rebuilt from its checkpoint to be evaluated; its objective {self.class_path} was not: "
            "resume training through `mcu fit --ckpt_path` with the curve's config"
        )


def load_curve_checkpoint(ckpt_path: str | os.PathLike) -> tuple[CurveModule, dict[str, Any]]:
    """The :class:`CurveModule` of a curve checkpoint, template rebuilt from its endpoints, and the checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist; pass the .ckpt of a CurveModule run")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise InputError(f"checkpoint '{path}' cannot be read ({problem}); pass the .ckpt of a CurveModule run")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if not isinstance(checkpoint, dict) or CURVE_SHAPE_KEY not in checkpoint or "endpoints" not in hparams:
        raise InputError(
            f"'{path}' is not a curve checkpoint (no control points of a CurveModule); pass the last.ckpt of "
            "`mcu fit` with a CurveModule config"
        )
    cls = resolve_class_path(hparams["_class_path"], "hyper_parameters") if "_class_path" in hparams else CurveModule
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and not k.startswith("_")}
    recorded = checkpoint.get(CURVE_OBJECTIVE_KEY)
    if isinstance(recorded, Mapping):  # the objective's parameter subset decides the curve's tensors (RMU)
        kwargs["objective"] = RecordedObjective(str(recorded.get("class_path")), recorded.get("refused") or [])
    module = cls(**kwargs, shape=_shape(checkpoint[CURVE_SHAPE_KEY]))
    module.on_load_checkpoint(checkpoint)  # shape check, and the rebuilt working copy's keys
    missing, _ = module.load_state_dict(checkpoint["state_dict"], strict=False)
    lost = [k for k in missing if k.startswith("curve.")]
    if lost:
        raise InputError(f"checkpoint '{path}' lacks the curve's '{lost[0]}'; was it made with other settings?")
    return module.eval(), checkpoint


def retain_batches(checkpoint: Mapping[str, Any], limit: int | None) -> list[Mapping[str, Any]]:
    """Retain batches of the data module the checkpoint records (for the BatchNorm recompute at t)."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        raise InputError("the model has BatchNorm but the checkpoint records no data module to recompute it on")
    cls = resolve_class_path(class_path, "datamodule_hyper_parameters")
    accepted = inspect.signature(cls.__init__).parameters
    datamodule = cls(**{k: v for k, v in hparams.items() if k in accepted})
    datamodule.prepare_data()
    datamodule.setup("test")
    batches = list(datamodule.eval_dataloader("retain"))
    return batches[:limit] if limit is not None else batches


def _endpoint_tokenizer(module: CurveModule) -> Any:
    """The first endpoint's tokenizer (a LoRA curve: the base's) when its folder holds one, else ``None``."""
    source = module.hparams.get("base") or module.hparams["endpoints"][0]
    if not (Path(source) / TOKENIZER_CONFIG).is_file():
        return None
    from mcu_lightning.models.hf import load_tokenizer

    return load_tokenizer(str(source))


def _kind(module: CurveModule) -> str:
    adapters = (Path(module.hparams["endpoints"][0]) / ADAPTER_CONFIG).is_file()
    if not adapters:
        return "full"
    return "lora_adapter" if module.hparams.get("space", "factors") == "factors" else "merged_delta"


def _check_output(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"output folder '{folder}' exists and is not empty; pass a new --output_dir")


def export_point(
    module: CurveModule,
    t: float,
    output_dir: str | os.PathLike,
    bn_batches: Iterable[Mapping[str, Any]] = (),
    tokenizer: Any = None,
    source: str | None = None,
) -> Path:
    """Write theta(t) of ``module``'s curve to ``output_dir`` (must be new or empty), atomically; returns it."""
    folder = Path(output_dir)
    _check_output(folder)
    kind = _kind(module)
    model: nn.Module = module.model_at(t, bn_batches)
    if kind == "merged_delta":
        model = model.merge_and_unload()
    record = {
        "t": float(t),
        "curve_checkpoint": source,
        "shape": repr(module.curve.shape),
        "endpoints": list(module.hparams["endpoints"]),
        "weights": kind,
        "batchnorm_recomputed": has_batchnorm(model),
    }
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        save_model(model, tmp, tokenizer=tokenizer)
        if kind == "lora_adapter":
            resolve_adapter_base(tmp)
        (tmp / EXPORT_JSON).write_text(json.dumps(record, indent=2) + "\n")
        _check_output(folder)
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def resolve_adapter_base(folder: Path) -> None:
    """Write the adapter's ``base_model_name_or_path`` as an absolute path when it names a local folder (peft keeps
    it as given, so a relative base would resolve only from the working directory of the export); a Hub name stays."""
    config_file = folder / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    base = config.get("base_model_name_or_path")
    if isinstance(base, str) and base and Path(base).exists():
        config["base_model_name_or_path"] = str(Path(base).resolve())
        config_file.write_text(json.dumps(config, indent=2) + "\n")


def export_cli(argv: Sequence[str]) -> Path:
    """``mcu export --ckpt_path CKPT --t T --output_dir DIR``."""
    parser = argparse.ArgumentParser(prog="mcu export", description="write the model at t of a trained curve")
    parser.add_argument("--ckpt_path", required=True, help="the curve's checkpoint (last.ckpt of `mcu fit`)")
    parser.add_argument("--t", type=float, required=True, help="the point of the curve, in [0, 1]")
    parser.add_argument("--output_dir", required=True, help="a new (or empty) folder for the model")
    args = parser.parse_args(list(argv))
    if not 0.0 <= args.t <= 1.0:
        raise InputError(f"--t {args.t} is outside [0, 1]; t parametrises the curve from endpoint 0 to endpoint 1")
    _check_output(Path(args.output_dir))
    module, checkpoint = load_curve_checkpoint(args.ckpt_path)
    batches = retain_batches(checkpoint, module.bn_batches) if has_batchnorm(module.template) else []
    folder = export_point(module, args.t, args.output_dir, batches, _endpoint_tokenizer(module), str(args.ckpt_path))
    print(f"exported t={args.t} ({_kind(module)} weights) to {folder}")
    return folder
