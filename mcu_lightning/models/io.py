"""Reading and writing models and their weights in the endpoint formats below.

An endpoint is a Lightning ``.ckpt`` of this package's modules (weights under ``state_dict`` with a ``model.``
prefix), a ``.safetensors`` file, a ``save_pretrained`` folder (single file, sharded, or ``pytorch_model.bin``),
or a folder written by :func:`save_model` for a plain ``nn.Module`` (``mcu_model.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import load_model as _load_safetensors_into
from safetensors.torch import save_model as _save_safetensors_from
from torch import Tensor, nn

from mcu_lightning.core.atomic import file_mode
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import ADAPTER_CONFIG
from mcu_lightning.core.pretrained import resolve_pretrained

MODEL_JSON = "mcu_model.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_FORMATS = "pass a save_pretrained folder, a .safetensors file or a .ckpt"


def _missing(path: str | os.PathLike) -> FileNotFoundError:
    return FileNotFoundError(f"endpoint '{path}' does not exist; {_FORMATS}")


def _load_torch_file(path: Path) -> dict[str, Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_checkpoint(path: Path) -> dict[str, Tensor]:
    """The ``model.`` weights of a Lightning checkpoint of this package's modules, prefix stripped."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"'{path}' is not a Lightning checkpoint (no 'state_dict' entry); {_FORMATS}")
    state = checkpoint["state_dict"]
    weights = {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}
    if not weights:
        prefixes = sorted({key.split(".", 1)[0] for key in state})
        raise InputError(
            f"checkpoint '{path}' holds no 'model.' weights (its state_dict prefixes are {prefixes}); "
            "pass the checkpoint of a FineTuneModule/UnlearningModule or the model folder exported next to it"
        )
    return weights


def _load_index(index_file: Path, loader: Any) -> dict[str, Tensor]:
    """Every shard named in a ``*.index.json`` weight map, merged."""
    weight_map = json.loads(index_file.read_text())["weight_map"]
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(loader(index_file.parent / shard))
    return state


def _load_folder(folder: Path) -> dict[str, Tensor]:
    for name in _WEIGHT_FILES:
        file = folder / name
        if not file.exists():
            continue
        if name == "model.safetensors":
            return load_file(file)
        if name == "model.safetensors.index.json":
            return _load_index(file, load_file)
        if name == "pytorch_model.bin":
            return _load_torch_file(file)
        return _load_index(file, _load_torch_file)
    if (folder / ADAPTER_CONFIG).exists():
        raise InputError(f"'{folder}' is a peft adapter folder; load it with load_model and pass the state dict")
    raise InputError(f"folder '{folder}' holds no model weights (none of {list(_WEIGHT_FILES)}); {_FORMATS}")


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Parameters and buffers of an endpoint, keyed as in ``model.state_dict()``, on the CPU in their saved dtype.

    Weights a format leaves out stay out: ``save_pretrained`` drops a tied ``lm_head.weight`` (the ``Curve``
    re-ties it from its partner).
    """
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        return _load_folder(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path)
    if path.suffix == ".safetensors":
        return load_file(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        return _load_torch_file(path)
    raise InputError(f"'{path}' is not a model: unknown file type '{path.suffix}'; {_FORMATS}")


def load_exported(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Load the weights ``save_model`` wrote to ``folder`` into ``model`` (the same architecture), in place: a peft
    model its adapter weights, any other model every tensor (a tied ``lm_head.weight`` the format left out stays
    tied to its partner). Raises ``ValueError`` naming the first tensor that does not fit."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise InputError(f"adapter '{folder}' has weights the model lacks, first '{unexpected[0]}'")
        return model
    state = load_state_dict(folder)
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise InputError(f"'{folder}' has weights the model lacks, first '{extra[0]}'")
    shared = {p.data_ptr() for name, p in own.items() if name in state}  # tied partners of loaded tensors
    missing = sorted(name for name, p in own.items() if name not in state and p.data_ptr() not in shared)
    if missing:
        raise InputError(f"'{folder}' lacks weight '{missing[0]}' of the model")
    model.load_state_dict(state, strict=False)
    return model


def _class_path(model: nn.Module) -> str:
    cls = type(model)
    if "<locals>" in cls.__qualname__:
        raise InputError(f"cannot save {cls.__qualname__}: a class defined inside a function cannot be re-imported")
    return f"{cls.__module__}.{cls.__qualname__}"


def _write_plain(model: nn.Module, folder: Path) -> None:
    init_args = getattr(model, "init_args", None)
    if not isinstance(init_args, dict):
        raise InputError(
            f"cannot save {type(model).__name__}: a plain nn.Module must expose its constructor kwargs as "
            "`self.init_args: dict` so load_model can rebuild it"
        )
    spec = {"class_path": _class_path(model), "init_args": init_args}
    (folder / MODEL_JSON).write_text(json.dumps(spec, indent=2) + "\n")
    _save_safetensors_from(model, str(folder / "model.safetensors"))


def save_model(model: nn.Module, folder: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write ``model`` (and ``tokenizer``) to ``folder`` atomically; returns the folder.

    A Hugging Face model (anything with ``save_pretrained``, peft included) is saved with ``save_pretrained``; a
    plain ``nn.Module`` as ``mcu_model.json`` (``class_path`` + ``init_args``) and ``model.safetensors``. Everything
    is written into a temporary sibling folder that then replaces ``folder``, so a reader never sees half a model.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = folder.with_name(f".{folder.name}.tmp-{token}")
    old = folder.with_name(f".{folder.name}.old-{token}")
    try:
        tmp.mkdir()
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp)
        else:
            _write_plain(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for written in tmp.rglob("*"):  # safetensors writes owner-only (0600); the rest of a study follows the umask
            if written.is_file():
                os.chmod(written, file_mode())
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    except BaseException:
        if old.exists() and not folder.exists():
            os.replace(old, folder)  # put the previous model back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _load_plain(folder: Path, dtype: torch.dtype | None) -> nn.Module:
    spec = json.loads((folder / MODEL_JSON).read_text())
    module_name, _, class_name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ImportError(f"cannot import '{spec['class_path']}' named in {folder / MODEL_JSON}: {error}") from error
    model = cls(**spec.get("init_args", {}))
    _load_safetensors_into(model, str(folder / "model.safetensors"), strict=True)
    return model.to(dtype) if dtype is not None else model


def _looks_local(name: str) -> bool:
    """A string that can only be a local path (not a Hub id like ``org/model``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).suffix in (".ckpt", ".safetensors")


def _load_transformers(name: str, dtype: torch.dtype | None) -> nn.Module:
    import transformers

    kwargs = {"dtype": dtype} if dtype is not None else {}
    if (Path(name) / ADAPTER_CONFIG).exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(name, **kwargs)
    config = transformers.AutoConfig.from_pretrained(name)
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return transformers.AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
    if any(a.endswith("ForImageClassification") for a in architectures):
        return transformers.AutoModelForImageClassification.from_pretrained(name, **kwargs)
    return transformers.AutoModelForCausalLM.from_pretrained(name, **kwargs)


def load_model(path_or_name: str | os.PathLike, dtype: torch.dtype | None = None) -> nn.Module:
    """A model from a :func:`save_model` folder, a ``save_pretrained`` folder, a Hub name, a ``.gguf`` file or a named
    pretrained source (:func:`mcu_lightning.core.pretrained.resolve_pretrained`).

    Causal LMs load with ``AutoModelForCausalLM``; configs whose architecture is a sequence or image classifier with
    the matching auto class. A Lightning ``.ckpt`` holds weights but not the architecture: pass the folder exported
    next to it (or read its weights with :func:`load_state_dict`).
    """
    name = resolve_pretrained(os.fspath(path_or_name))  # a named source or a .gguf file: its converted folder
    path = Path(name).expanduser()
    if path.suffix == ".ckpt":
        raise InputError(
            f"load_model cannot rebuild an architecture from the Lightning checkpoint '{name}'; pass the model folder "
            "the module exported next to it, or read the weights with load_state_dict"
        )
    if path.exists():
        if path.is_dir() and (path / MODEL_JSON).exists():
            return _load_plain(path, dtype)
        if not (path.is_dir() and ((path / "config.json").exists() or (path / ADAPTER_CONFIG).exists())):
            raise InputError(f"'{name}' is not a model folder (no config.json or {MODEL_JSON}); {_FORMATS}")
        return _load_transformers(str(path), dtype)
    if _looks_local(name):
        raise _missing(name)
    try:
        return _load_transformers(name, dtype)
    except OSError as error:
        raise OSError(f"'{name}' is neither a local path nor a loadable Hub model: {error}") from error
