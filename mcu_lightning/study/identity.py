"""What a study stage was made from, and whether its outputs are still the ones it made.

A stage is a pure function of its resolved config section, the stages it reads and its data. Its
*fingerprint* is

    fingerprint = sha256(canonical_json({kind, config, upstream: {name: fingerprint}, data, version}))

with ``canonical_json`` sorting keys and writing floats by ``repr`` (so ``1e-3`` and ``0.001`` agree and
``nan`` is a value). ``data`` is the data spec plus the content hash of every local file or folder it names
and of a generated set's cached folder, ``version`` the package version. A finished stage records the
fingerprint, the config it was made from, the sha256 of each output file and the output digests of the
stages it read (``stage.json``); a rerun reuses it only when all of them still hold
(``StageRecord.reusable``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcu_lightning.core.names import (
    BARRIER_JSON,
    BEST_JSON,
    CHECKPOINTS_DIR,
    CURVE_METRICS_CSV,
    LAST_CHECKPOINT,
    MEMBERS_JSON,
    MODEL_DIR,
    PLANE_CSV,
    PLANE_JSON,
    TEST_METRICS,
    TOFU_EVAL_JSON,
    TOFU_SUMMARY_JSON,
)
from mcu_lightning.core.version import __version__
from mcu_lightning.data.qa.fictitious import generated_root

#: The files a stage's fit makes (its weights): what a retest keeps and what a later stage's fit reads.
_LAST = f"{CHECKPOINTS_DIR}/{LAST_CHECKPOINT}"
FIT_GLOBS = (f"{MODEL_DIR}/**/*", _LAST)


def is_fit_output(name: str) -> bool:
    """Whether output ``name`` (relative to its stage folder) is one of :data:`FIT_GLOBS`."""
    return name.startswith(f"{MODEL_DIR}/") or name == _LAST


#: Files of a stage folder that later stages or the report read (globs relative to the stage folder).
OUTPUT_GLOBS = (
    TEST_METRICS,
    TOFU_EVAL_JSON,
    TOFU_SUMMARY_JSON,
    f"{MODEL_DIR}/**/*",
    CURVE_METRICS_CSV,
    BARRIER_JSON,
    _LAST,
    MEMBERS_JSON,
    PLANE_CSV,
    PLANE_JSON,
    BEST_JSON,
)


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return {"float": "nan" if math.isnan(value) else repr(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (dict order and float spelling do not matter)."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def path_identity(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file in a folder (by relative path)."""
    if path.is_file():
        return {path.name: file_sha256(path)}
    return {str(p.relative_to(path)): file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def data_identity(spec: Any) -> dict[str, Any]:
    """The data spec, plus the content of every local file or folder named by a string in it.

    A Hub name stays a name (its revision, if pinned in the spec, is part of the spec). Generated data
    (``data: fictitious``) is read from a folder in the cache that anyone can edit or replace: its content is
    recorded under ``generated``, by the folder's name (``fictitious-seed0-people40``, not where the cache is),
    and a spec without generated data has no ``generated`` key (its fingerprint is the one it always had).
    """
    local: dict[str, Any] = {}
    generated: dict[str, Any] = {}

    def visit(node: Any) -> None:
        if isinstance(node, Mapping):
            args = node.get("init_args")
            root = generated_root(args) if isinstance(args, Mapping) else None
            if root is not None and not args.get("data_root"):  # a data_root is a local folder: hashed below
                generated[root.name] = path_identity(root)
            for child in node.values():
                visit(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
        elif isinstance(node, str) and ("/" in node or node.startswith(".")) and Path(node).exists():
            local[node] = path_identity(Path(node))

    visit(spec)
    identity = {"spec": spec, "files": local}
    if generated:
        identity["generated"] = generated
    return identity


def fingerprint(kind: str, config: Any, upstream: Mapping[str, str], data: Any) -> str:
    return digest({"kind": kind, "config": config, "upstream": dict(upstream), "data": data, "version": __version__})


def test_fingerprint(fit: str, test_config: Any, upstream: Mapping[str, str]) -> str:
    """What a stage's test was made from: its fit's fingerprint, the evaluation settings, and the test fingerprints
    of the stages it reads (the oracle's test file feeds every other test)."""
    return digest({"fit": fit, "evaluation": test_config, "upstream": dict(upstream)})


def output_hashes(directory: Path, globs: Iterable[str] = OUTPUT_GLOBS) -> dict[str, str]:
    """sha256 of every output file of a stage folder, by path relative to the folder."""
    found: dict[str, str] = {}
    for pattern in globs:
        for path in sorted(directory.glob(pattern)):
            if path.is_file():
                found[str(path.relative_to(directory))] = file_sha256(path)
    return found


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": leaf}`` for nested dicts (lists are leaves)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_keys(old: Any, new: Any) -> list[str]:
    """``key old -> new`` for each dotted key whose value differs (``<unset>`` where a side lacks it)."""
    before, after = flatten(old), flatten(new)
    lines = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "<unset>"), after.get(key, "<unset>")
        if digest(a) != digest(b):
            lines.append(f"{key} {_show(a)} -> {_show(b)}")
    return lines


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=repr)


@dataclass
class StageRecord:
    """What ``stage.json`` (or ``stage.partial.json`` for a started stage) says about a stage."""

    fingerprint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    data: Any = None
    version: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    test_fingerprint: str | None = None
    test_config: dict[str, Any] = field(default_factory=dict)
    fit_inputs: dict[str, str] = field(default_factory=dict)
    #: Not written: the fingerprint the stage had before fit and test were told apart (its config holding the
    #: evaluation), so a folder made then is still recognised.
    legacy: str | None = None

    @classmethod
    def read(cls, path: Path) -> StageRecord | None:
        """The record at ``path``; ``None`` if absent. An unreadable record counts as one of no fingerprint."""
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if raw.get(f.name) and f.name != "legacy"})

    def fields(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        del fields["legacy"]
        return fields

    def same_fit(self, now: StageRecord) -> bool:
        """Whether this (recorded) stage's fit is the one ``now`` would make (a record written before fit and test
        were told apart: whether it is the whole stage ``now`` would make)."""
        if self.test_fingerprint is None:
            return self.fingerprint is not None and self.fingerprint == now.legacy
        return self.fingerprint == now.fingerprint

    def same_test(self, now: StageRecord) -> bool:
        return self.test_fingerprint is None or self.test_fingerprint == now.test_fingerprint

    def test_changes(self, other: StageRecord) -> list[str]:
        """Why ``other``'s test differs from this record's, as ``key old -> new`` lines."""
        lines = changed_keys(self.test_config, other.test_config)
        return lines or ["the test of a stage it reads changed"]

    def changes(self, other: StageRecord) -> list[str]:
        """Why ``other`` (the config now) would not make this record's results, as ``key old -> new`` lines."""
        if self.fingerprint is None:
            return ["recorded without a fingerprint (an older mcu-lightning, or a damaged stage.json)"]
        now = other.config if self.test_fingerprint is not None else {**other.config, **other.test_config}
        lines = changed_keys(self.config, now)
        lines += [
            f"upstream stage '{n}' changed" for n in sorted(other.upstream) if self.upstream.get(n) != other.upstream[n]
        ]
        if digest(self.data) != digest(other.data):
            lines += [f"data {line}" for line in changed_keys(self.data, other.data)] or ["data changed"]
        if self.version != other.version:
            lines.append(f"mcu-lightning version {self.version} -> {other.version}")
        return lines or ["fingerprint differs"]

    def damage(self, directory: Path) -> list[str]:
        """The recorded outputs that are gone or no longer hash-equal."""
        now = output_hashes(directory)
        return [name for name, sha in self.outputs.items() if now.get(name) != sha]


def outputs_digest(outputs: Mapping[str, str]) -> str:
    """One hash for a stage's outputs: what downstream stages record as their input."""
    return digest(dict(outputs))
