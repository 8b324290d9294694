"""Fuzzing the study schema: a few hundred configs mutated from the quickstart study (wrong types, out-of-range
values, missing and unknown keys, references to stages that do not exist, names in any script or unsafe as
folders, unknown class paths and init arguments). Each one either validates (and would run: everything up to the
first stage runs for real, then the stage is stopped) or stops with exit status 2 and exactly one ``error:``
line before the first stage; never a traceback, never a second line.

Most configs go through ``mcu experiment`` in this process (``main``); a few through the real CLI in a
subprocess, and two validated ones run to the end at tiny sizes. The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import copy
import os
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import main
from tests.reliability.helpers import run_cli
from tests.study.test_experiment import reduced_study

SEED = int(os.environ.get("MCU_FUZZ_SEED", "20261204"))
CONFIGS = int(os.environ.get("MCU_FUZZ_CONFIGS", "300"))  # more: a longer search
NAMES = [
    "遗忘曲线",
    "Ελληνικά",
    "naïve",
    "a\u0301",  # a combining accent
    "zero\u200bwidth",
    "עברית",
    "emoji😀",
    "../x",
    "a/b",
    "",
    ".",
    "..",
    " lead",
    "tab\tname",
    "new\nline",
    "\x1b[31m",
    "x" * 200,
    "a.b",
    "ok-name_1",
]
WRONG = [None, True, "text", "", -1, 0, 1, 2.5, float("nan"), float("inf"), -1e9, 10**6, [], [1, "a"], {}, {"k": 1}]
CLASS_PATHS = ["mcu_lightning.losses.Nope", "torch.nn.Linear", "not a path", "mcu_lightning.curves.Bezier", "os.system"]


class FirstStage(Exception):
    """Raised where the first stage would start: the config validated."""


def tiny(tmp_path: Path) -> dict[str, Any]:
    """The quickstart study at the smallest sizes that still run every kind of stage."""
    raw = yaml.safe_load(reduced_study(tmp_path).read_text())
    raw["base"]["train"]["max_epochs"] = 1
    raw["oracle"]["train"]["max_epochs"] = 1
    for endpoint in raw["endpoints"]:
        endpoint["train"]["max_epochs"] = 1
    for curve in raw["curves"]:
        curve["train"]["max_steps"] = 1
    raw["curves"] = raw["curves"][:1]
    raw["evaluation"]["eval_ts"] = 2
    raw["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 2
    raw["evaluation"]["probes"] = [{"class_path": "mcu_lightning.probes.Distance"}]
    return raw


#: Keys whose values set how long a run takes: a validated config runs for real only with the base's values.
SIZE_KEYS = {"max_epochs", "max_steps", "eval_ts", "batch_size", "eval_batch_size", "max_new_tokens", "max_length"}
SIZE_KEYS |= {"hidden_size", "intermediate_size", "num_hidden_layers", "num_bends", "steps", "every", "points"}


def sizes(raw: dict[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    return [(path, value) for path, value in leaves(raw) if path[-1] in SIZE_KEYS]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(path, value)`` of every node below the root (dicts by key, lists by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        yield (*path, key), child
        yield from leaves(child, (*path, key))


def parent(raw: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        raw = raw[key]
    return raw


def mutate(raw: dict[str, Any], rng: random.Random) -> str:
    """Apply one or two random mutations to ``raw``; returns what was done."""
    done = []
    for _ in range(rng.choice((1, 1, 2))):
        spots = [(p, v) for p, v in leaves(raw) if p[0] != "output_dir"]
        path, value = rng.choice(spots)
        kind = rng.choice(("type", "type", "range", "drop", "unknown", "name", "reference", "class", "init_arg"))
        where = parent(raw, path)
        if kind == "type":
            where[path[-1]] = copy.deepcopy(rng.choice(WRONG))
        elif kind == "range" and isinstance(value, (int, float)) and not isinstance(value, bool):
            where[path[-1]] = rng.choice((0, -1, -value, value * 1000, 1e-12, 1))
        elif kind == "drop" and isinstance(where, dict):
            del where[path[-1]]
        elif kind == "unknown":
            target = value if isinstance(value, dict) else where if isinstance(where, dict) else raw
            target["".join(rng.choices(string.ascii_lowercase, k=6))] = rng.choice(WRONG)
        elif kind == "name":
            holder = rng.choice([raw, *raw.get("endpoints", []), *raw.get("curves", [])])
            if isinstance(holder, dict):
                holder["name"] = rng.choice(NAMES)
        elif kind == "reference" and raw.get("curves"):
            curve = rng.choice(raw["curves"])
            if isinstance(curve, dict):
                curve["endpoints"] = rng.choice(
                    (["graddiff", "ghost"], ["npo"], ["npo", "npo"], ["base", "oracle", "npo"], "npo")
                )
        elif kind == "class":
            specs = [v for _, v in leaves(raw) if isinstance(v, dict) and "class_path" in v]
            if specs:
                rng.choice(specs)["class_path"] = rng.choice(CLASS_PATHS)
        elif kind == "init_arg":
            specs = [v for _, v in leaves(raw) if isinstance(v, dict) and isinstance(v.get("init_args"), dict)]
            if specs:
                args = rng.choice(specs)["init_args"]
                key = rng.choice([*args, "bogus_arg"]) if args else "bogus_arg"
                args[key] = rng.choice(WRONG)
        else:
            continue
        done.append(f"{kind} at {'.'.join(map(str, path))}")
    return "; ".join(done) or "none"


def outcome(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """``("refused", line)``, ``("validated", "")`` or ``("wrong", what was seen)`` for one in-process run."""
    capsys.readouterr()
    try:
        main(args)
    except FirstStage:
        return "validated", ""
    except SystemExit as stop:
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        if stop.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err:
            return "refused", lines[0]
        return "wrong", f"exit {stop.code}: {err[-1500:]}"
    except Exception as err:  # a traceback in the CLI
        return "wrong", f"{type(err).__name__}: {err}"
    return "wrong", "the study ran to the end although the first stage was stopped"


@pytest.mark.slow
def test_mutated_studies_validate_or_stop_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mcu_lightning.study.runner import StudyRunner

    monkeypatch.delenv("MCU_TRACEBACK", raising=False)
    base = tiny(tmp_path)
    rng = random.Random(SEED)
    counts = {"tried": 0, "refused": 0, "validated": 0}
    wrong: list[str] = []
    validated: list[dict[str, Any]] = []
    refused: list[Path] = []

    def first_stage(*args: object, **kwargs: object) -> None:
        raise FirstStage

    with monkeypatch.context() as patch:
        patch.setattr(StudyRunner, "run_stage", first_stage)
        for index in range(CONFIGS):
            raw = copy.deepcopy(base)
            what = mutate(raw, rng)
            raw["output_dir"] = str(tmp_path / "runs" / str(index))
            config = tmp_path / "configs" / f"{index}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
            result, line = outcome(["experiment", "--config", str(config), "--progress", "false"], capsys)
            counts["tried"] += 1
            if result == "wrong":
                wrong.append(f"config {index} ({what}): {line}")
            else:
                counts[result] += 1
                (validated.append(raw) if result == "validated" else refused.append(config))
    with capsys.disabled():
        print(f"\nschema fuzz (seed {SEED}): {counts}")
    assert wrong == [], "\n".join(wrong[:10])
    assert counts["refused"] >= CONFIGS // 3 and counts["validated"] >= 5  # the mutations reach both outcomes

    for config in refused[:3]:  # the real entry point says the same in one line
        done = run_cli(["experiment", "--config", str(config), "--progress", "false"], cwd=tmp_path, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]

    runnable = [raw for raw in validated if raw != base and sizes(raw) == sizes(base)]  # tiny, as the base
    for index, raw in enumerate(runnable[:2]):  # and validated ones run to the end
        raw["output_dir"] = str(tmp_path / "ran" / str(index))
        config = tmp_path / "configs" / f"ran{index}.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        main(["experiment", "--config", str(config), "--progress", "false"])
        assert (Path(raw["output_dir"]) / raw["name"] / "report" / "summary.md").is_file()
    with capsys.disabled():
        print(f"schema fuzz: ran {min(2, len(runnable))} validated configs to the end, 3 refusals through the CLI")
