"""TOFU (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"): configs and one loader.

The Hub dataset ``locuslab/TOFU`` has one configuration per split, each a JSON-lines file of the same name
(``forget10.json``, ``retain_perturbed.json``, ...). A local folder laid out the same way (the generated
fictitious-facts set, or a copy of TOFU) loads through the very same code path.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import datasets

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import read_utf8
from mcu_lightning.data.qa.rows import MissingFieldError

TOFU_HUB_NAME = "locuslab/TOFU"
#: Fields every TOFU row has.
REQUIRED_FIELDS = ("question", "answer")

#: Every configuration of ``locuslab/TOFU`` (its dataset card), in the card's order.
TOFU_CONFIGS: tuple[str, ...] = (
    "full",
    "forget01",
    "forget05",
    "forget10",
    "retain90",
    "retain95",
    "retain99",
    "world_facts",
    "real_authors",
    "forget01_perturbed",
    "forget05_perturbed",
    "forget10_perturbed",
    "retain_perturbed",
    "world_facts_perturbed",
    "real_authors_perturbed",
    "holdout01",
    "holdout05",
    "holdout10",
)

#: Forget percentages TOFU ships, with their matching retain and holdout configurations.
FORGET_PERCENTS: tuple[int, ...] = (1, 5, 10)

_FORGET_RE = re.compile(r"^forget(\d\d)$")


def check_config(name: str, valid: tuple[str, ...] = TOFU_CONFIGS) -> str:
    """Return ``name`` if it is a TOFU configuration, else raise a ``ValueError`` listing the valid ones."""
    if name not in valid:
        raise InputError(f"unknown TOFU config {name!r}; valid configs are: {', '.join(valid)}")
    return name


def forget_percent(forget_split: str) -> int:
    """The percentage in a forget config name: ``forget05 -> 5``."""
    match = _FORGET_RE.match(forget_split)
    if match is None or int(match.group(1)) not in FORGET_PERCENTS:
        names = ", ".join(f"forget{p:02d}" for p in FORGET_PERCENTS)
        raise InputError(f"forget split {forget_split!r} is not one of {names}")
    return int(match.group(1))


def retain_split_for(forget_split: str) -> str:
    """The retain config matching a forget config: ``forget10 -> retain90`` (the other authors)."""
    return f"retain{100 - forget_percent(forget_split):02d}"


def holdout_split_for(forget_split: str) -> str:
    """The holdout config matching a forget config: ``forget10 -> holdout10`` (same size, never trained on)."""
    return f"holdout{forget_percent(forget_split):02d}"


def perturbed_split_for(forget_split: str) -> str:
    """The evaluation config of a forget config: ``forget10 -> forget10_perturbed``."""
    return f"{check_config(forget_split)}_perturbed"


def load_tofu_split(name: str, root: str | Path | None = None) -> datasets.Dataset:
    """Load one TOFU configuration as a ``datasets.Dataset``.

    ``root=None`` reads the Hub (``load_dataset("locuslab/TOFU", name, split="train")``); a folder reads
    ``root/{name}.json`` (JSON lines, TOFU's field names) with the ``json`` builder. Both return the rows as
    they are stored: ``question``, ``answer`` and, for ``*_perturbed`` configs, ``paraphrased_answer`` and
    ``perturbed_answer`` (a list).
    """
    check_config(name)
    if root is None:
        return datasets.load_dataset(TOFU_HUB_NAME, name, split="train")
    folder = Path(root).expanduser()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"TOFU folder '{folder}' lacks '{path.name}' (config {name!r}); "
            f"copy it there, or pass root=None to read it from the Hub '{TOFU_HUB_NAME}'"
        )
    check_json_lines(path, name)
    return datasets.load_dataset("json", data_files=str(path), split="train")


def check_json_lines(path: Path, name: str = "") -> None:
    """Raise a ``ValueError`` naming the file and line when a JSON-lines file is empty or has a bad line.

    A row that lacks ``question``, ``answer`` or a field the first row has is a ``MissingFieldError`` (a
    missing field, not a wrong type).
    """
    text = read_utf8(path, "TOFU file")
    if not text.strip():
        raise InputError(f"TOFU file '{path}' is empty; config {name!r} needs one JSON object per line")
    first: tuple[int, list[str]] | None = None  # the first row's line and fields: every row needs them
    seen: dict[str, int] = {}  # each distinct row (canonical JSON) -> the line it first appears on
    repeats: list[tuple[int, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"TOFU file '{path}' line {number}: invalid JSON ({err.msg} at column {err.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise InputError(f"TOFU file '{path}' line {number}: a {type(row).__name__}, not a JSON object")
        if first is None:
            first = (number, [key for key in row if key in REQUIRED_FIELDS or row[key] is not None])
        missing = [key for key in (*REQUIRED_FIELDS, *first[1]) if key not in row]
        if missing:  # the json builder would fill it with null, reported later as a wrong type
            raise MissingFieldError(
                f"TOFU file '{path}' line {number}: field '{missing[0]}' is missing "
                f"(line {first[0]} has fields {sorted(first[1])}); give every row the same fields"
            )
        key = json.dumps(row, sort_keys=True)
        if key in seen:
            repeats.append((number, seen[key]))
        seen.setdefault(key, number)
    if repeats:
        warn_repeated_rows(path, repeats)


def warn_repeated_rows(path: Path, repeats: list[tuple[int, int]]) -> None:
    """Warn that rows of ``path`` repeat earlier rows exactly (``(line, first line)`` each): every copy counts again.

    A warning, not a refusal: a repeated row may be meant (weighting a fact), and TOFU itself repeats none (it has
    one question asked twice with two answers, which is not a repeat); but unmeant, it weighs that row double in
    training and in its split's metrics (forget quality, ROUGE, truth ratio), so the study says so before it runs.
    """
    line, original = repeats[0]
    warnings.warn(
        f"TOFU file '{path}': {len(repeats)} row(s) repeat an earlier row exactly (line {line} repeats line "
        f"{original}); each copy counts again in training and in that split's metrics; remove the repeats unless "
        "you mean to weight those rows",
        stacklevel=2,
    )


def load_tofu_splits(
    spec: str, root: str | Path | None = None, max_rows: int | None = None, whole: tuple[str, ...] = ()
) -> datasets.Dataset:
    """Load one config, or several joined by ``+`` and concatenated (``"retain90+world_facts"``).

    ``max_rows`` keeps the first rows of each config (TOFU lists an author's 20 questions together, so the first
    ``20 k`` rows are ``k`` whole authors), except the configs named in ``whole``.
    """
    names = [part.strip() for part in spec.split("+") if part.strip()]
    if not names:
        raise InputError(f"empty split specification {spec!r}; name a TOFU config such as 'full'")
    parts = [load_tofu_split(name, root) for name in names]
    if max_rows is not None:
        parts = [
            p if name in whole or len(p) <= max_rows else p.select(range(max_rows))
            for name, p in zip(names, parts, strict=True)
        ]
    if len(parts) == 1:
        return parts[0]
    columns = set.intersection(*(set(p.column_names) for p in parts))
    keep = [c for c in parts[0].column_names if c in columns]
    return datasets.concatenate_datasets([p.select_columns(keep) for p in parts])
