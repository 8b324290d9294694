"""The paper's grid as one YAML: forget splits x method pairs x curriculum x optimizer x seeds, read as one table.

A grid names a shared study (data, base, oracle, evaluation, trainer), the unlearning ``methods`` (an endpoint
without name and seed), ``variants`` (the other level of a factor: fields merged into a method's endpoint, e.g.
``curriculum`` or ``sophia``), how every curve is fitted (``curve``), and the ``contrasts``: pairs of recipes that
differ in one factor (``graddiff`` vs ``npo``; ``graddiff`` vs ``graddiff+curriculum``; ``npo`` vs ``npo+sophia``;
``graddiff`` vs itself at the next seed). It expands into one study per forget split (each trains or reads its own
oracle, so forget quality is anchored on that split) run with the study's ``seeds:`` (:mod:`mcu_lightning.study.seeds`):
every recipe the contrasts name is an endpoint run once per seed (``<recipe>-s<s>``), and each contrast a curve run
once per seed between the replicas of that seed (``<contrast>-s<s>``)::

    seeds [0, 1, 2], contrasts methods [graddiff, npo], seeds [graddiff, graddiff] (other_seed)
    -> endpoints graddiff-s0 graddiff-s1 graddiff-s2 npo-s0 npo-s1 npo-s2
       curves    methods-s0 (graddiff-s0 -> npo-s0) ... seeds-s2 (graddiff-s2 -> graddiff-s0)

An ``other_seed`` contrast pairs seed ``seeds[i]`` with ``seeds[i + 1]`` (cyclically; its curves name the replicas
in full, so the seeds leave them as written); with three seeds its three curves share endpoints pairwise: its
replicates are not independent, and the grid report says so.

Each study is written as a plain study YAML (``<output_dir>/<name>/studies/<split>.yaml``, runnable on its own with
``mcu experiment``), parsed as ``mcu experiment`` parses it, and run by :class:`StudyRunner` (finished stages are
reused). ``grid.json`` records which curve is which (split, contrast, seed) and each study's time; the grid report
(:mod:`mcu_lightning.report.grid`) reads only that file and the curves' saved results.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.study.schema import Study, StudyError, parse_study
from mcu_lightning.study.seeds import seed_name

STUDIES_DIR = "studies"
#: Study fields the grid writes itself (a grid's ``study:`` must leave them out).
GRID_OWNED = ("name", "output_dir", "endpoints", "curves", "seeds")
#: Endpoint fields a grid sets per seed (a method or variant must leave them out).
ENDPOINT_OWNED = ("name", "seed", "seeds")
#: Curve fields a grid sets per contrast and seed.
CURVE_OWNED = ("name", "endpoints", "seed")
#: The barrier definitions of :mod:`mcu_lightning.curves.barrier`, as named in ``barrier_summary.json``.
BARRIERS = ("vs_line", "vs_max_end", "vs_mean_end")
#: Variant separator in a recipe name: ``npo+sophia`` is method ``npo`` with variant ``sophia``.
VARIANT_SEP = "+"


@dataclass
class Contrast:
    """Two recipes that differ in one factor, connected by a curve at every seed (``other_seed``: the same recipe
    at seed ``seeds[i]`` and ``seeds[i + 1]``). A recipe is a method name, optionally ``+variant`` (``npo+sophia``)."""

    name: str
    endpoints: list[str]
    other_seed: bool = False


@dataclass
class Grid:
    """The grid YAML (see the module docstring). ``forget_splits``: split name -> fields merged into that split's
    study (e.g. its oracle's ``path``; ``{}`` for none); the split itself goes to ``data.init_args.forget_split``.

    ``study``, ``methods`` (name -> endpoint fields), ``variants`` (name -> endpoint fields), ``curve`` (curve fields)
    and ``forget_splits`` are plain ``dict``: kept as written (a typed dict would have jsonargparse fill every class
    spec's defaults in), then checked where it counts, by ``mcu experiment``'s parser and validation of each study.

    The report reads ``metrics`` (the first is the grid table's), the ``barrier`` definition, and ``tolerance``: a
    cell is barrier-free when the upper end of its 95 % interval over seeds lies below it, a barrier when the lower
    end lies above it, undecided otherwise (in the metric's units).
    """

    name: str
    study: dict
    methods: dict
    contrasts: list[Contrast]
    forget_splits: dict
    seeds: list[int] = field(default_factory=lambda: [0])
    variants: dict = field(default_factory=dict)
    curve: dict = field(default_factory=dict)
    output_dir: str = "runs"
    metrics: list[str] = field(default_factory=lambda: ["forget_quality", "model_utility", "forget/prob"])
    barrier: str = "vs_max_end"
    tolerance: float = 0.02


@dataclass
class GridStudy:
    """One expanded study: its forget split, its config as a study YAML would hold it, and which curve is which
    (``curves[contrast][seed]`` -> curve name)."""

    split: str
    config: dict[str, Any]
    curves: dict[str, dict[int, str]]

    @property
    def name(self) -> str:
        return str(self.config["name"])


def grid_parser() -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="mcu grid", description="Run the paper's grid (one study per forget split) and write the grid report."
    )
    parser.add_argument("--config", action=ActionConfigFile, help="the grid YAML")
    parser.add_class_arguments(Grid, as_group=False, fail_untyped=False)
    parser.add_argument("--splits", type=list[str] | None, default=None, help="run only these forget splits")
    parser.add_argument("--report_only", action="store_true", help="rebuild the grid report from saved results")
    parser.add_argument("--rerun", action="store_true", help="as `mcu experiment --rerun`, for every study")
    return parser


def parse_grid(args: Sequence[str]) -> tuple[Grid, Any]:
    """The grid and the parsed namespace (``splits``, ``report_only``, ``rerun``). Free-form dicts stay plain
    data: the grid is parsed, never instantiated, so a class spec in it is built only by the stage that uses it."""
    parser = grid_parser()
    cfg = parser.parse_args(list(args))
    plain = cfg.as_dict()
    contrasts = [Contrast(**c) for c in plain["contrasts"]]
    grid = Grid(**{**{f: plain[f] for f in Grid.__dataclass_fields__}, "contrasts": contrasts})
    validate_grid(grid)
    return grid, cfg


def merge(base: Any, override: Any) -> Any:
    """``override`` merged into ``base``: dicts key by key, recursively; anything else, or a dict holding a
    ``class_path`` (a different class takes different arguments), replaces the value whole."""
    if isinstance(base, dict) and isinstance(override, dict) and "class_path" not in override:
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def recipe(grid: Grid, name: str) -> dict[str, Any]:
    """The endpoint fields of recipe ``name``: its method with each ``+variant`` merged in, left to right."""
    method, *variants = name.split(VARIANT_SEP)
    if method not in grid.methods:
        raise StudyError(
            f"recipe '{name}' names method '{method}' that is not defined; methods: {_names(grid.methods)}"
        )
    fields = copy.deepcopy(grid.methods[method])
    for variant in variants:
        if variant not in grid.variants:
            raise StudyError(
                f"recipe '{name}' names variant '{variant}' that is not defined; variants: {_names(grid.variants)}"
            )
        fields = merge(fields, grid.variants[variant])
    return fields


def _names(table: dict[str, Any]) -> str:
    return ", ".join(sorted(table)) or "none"


def validate_grid(grid: Grid) -> None:
    """Raise :class:`StudyError` naming the first problem of ``grid`` and its fix, before any study is built."""
    if not grid.forget_splits:
        raise StudyError("forget_splits is empty; name at least one split, e.g. {forget10: {}}")
    if not grid.seeds or len(set(grid.seeds)) != len(grid.seeds):
        raise StudyError(f"seeds={grid.seeds}: give one or more distinct seeds, e.g. [0, 1, 2]")
    if not grid.contrasts:
        raise StudyError(
            "contrasts is empty; name at least one pair of recipes, e.g. {name: methods, endpoints: [a, b]}"
        )
    owned = [key for key in GRID_OWNED if key in grid.study]
    if owned:
        raise StudyError(f"study: leave out {', '.join(owned)}; the grid sets them for every split")
    for table, what in ((grid.methods, "methods"), (grid.variants, "variants")):
        for key, fields in table.items():
            if VARIANT_SEP in key:
                raise StudyError(f"{what}: '{key}' holds '{VARIANT_SEP}', which joins a method to its variants")
            set_here = [k for k in ENDPOINT_OWNED if k in (fields or {})]
            if set_here:
                raise StudyError(f"{what}.{key}: leave out {', '.join(set_here)}; the grid sets them per seed")
    set_here = [k for k in CURVE_OWNED if k in grid.curve]
    if set_here:
        raise StudyError(f"curve: leave out {', '.join(set_here)}; the grid sets them per contrast and seed")
    names = [c.name for c in grid.contrasts]
    if len(set(names)) != len(names):
        raise StudyError(f"contrast names must be unique, got {names}")
    for contrast in grid.contrasts:
        if len(contrast.endpoints) != 2:
            raise StudyError(
                f"contrast '{contrast.name}' names {len(contrast.endpoints)} recipes; a curve connects two"
            )
        for name in contrast.endpoints:
            recipe(grid, name)
        same = contrast.endpoints[0] == contrast.endpoints[1]
        if contrast.other_seed and len(grid.seeds) < 2:
            raise StudyError(f"contrast '{contrast.name}' (other_seed) needs at least two seeds; seeds={grid.seeds}")
        if same and not contrast.other_seed:
            raise StudyError(
                f"contrast '{contrast.name}' connects '{contrast.endpoints[0]}' to itself; set other_seed: true to "
                "connect it to the next seed"
            )
    if grid.barrier not in BARRIERS:
        raise StudyError(f"barrier={grid.barrier!r}; use one of {', '.join(BARRIERS)}")
    if not grid.metrics:
        raise StudyError("metrics is empty; name the headline metrics the grid report reads, e.g. [forget_quality]")
    if not grid.tolerance >= 0:
        raise StudyError(f"tolerance={grid.tolerance!r} must be 0 or more (in the metrics' units)")


def study_name(grid: Grid, split: str) -> str:
    return f"{grid.name}_{split}"


def grid_dir(grid: Grid) -> Path:
    return Path(grid.output_dir) / grid.name


def expand(grid: Grid) -> list[GridStudy]:
    """One study config per forget split (in the grid's order): the shared study with the split set, the endpoints
    the contrasts name at every seed, and a curve per contrast and seed (the module docstring shows the names)."""
    validate_grid(grid)
    studies = []
    for split, overrides in grid.forget_splits.items():
        config = merge(grid.study, overrides or {})
        data = config.setdefault("data", {})
        data.setdefault("init_args", {})["forget_split"] = split
        recipes: list[str] = []  # in the order the contrasts name them
        curves: list[dict[str, Any]] = []
        which: dict[str, dict[int, str]] = {}
        for contrast in grid.contrasts:
            recipes += [name for name in contrast.endpoints if name not in recipes]
            if contrast.other_seed:  # replicas named in full: the study's seeds leave these curves as they are
                which[contrast.name] = {}
                for index, seed in enumerate(grid.seeds):
                    after = grid.seeds[(index + 1) % len(grid.seeds)]
                    pair = [seed_name(contrast.endpoints[0], seed), seed_name(contrast.endpoints[1], after)]
                    name = seed_name(contrast.name, seed)
                    curves.append({"name": name, "endpoints": pair, **copy.deepcopy(grid.curve), "seed": seed})
                    which[contrast.name][seed] = name
            else:  # one curve between seeded endpoints: the study runs it once per seed
                curves.append(
                    {"name": contrast.name, "endpoints": list(contrast.endpoints), **copy.deepcopy(grid.curve)}
                )
                which[contrast.name] = {seed: seed_name(contrast.name, seed) for seed in grid.seeds}
        config.update(
            name=study_name(grid, split),
            output_dir=str(grid_dir(grid)),
            endpoints=[{"name": name, **recipe(grid, name), "seeds": list(grid.seeds)} for name in recipes],
            curves=curves,
        )
        studies.append(GridStudy(split, config, which))
    return studies


def write_study_yaml(grid: Grid, grid_study: GridStudy) -> Path:
    """The study as a YAML ``mcu experiment`` runs on its own, under ``<grid>/studies/<split>.yaml``."""
    path = grid_dir(grid) / STUDIES_DIR / f"{grid_study.split}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# written by `mcu grid` from grid '{grid.name}' (forget split {grid_study.split}); edit the grid, not this\n"
    )
    atomic_write(path, (header + yaml.safe_dump(grid_study.config, sort_keys=False)).encode())
    return path


def load_studies(grid: Grid, splits: Sequence[str] | None = None) -> list[tuple[GridStudy, Study]]:
    """Every (or the named) split's study, written as YAML and parsed as ``mcu experiment`` parses it."""
    expanded = expand(grid)
    unknown = sorted(set(splits or []) - {g.split for g in expanded})
    if unknown:
        raise StudyError(f"--splits {', '.join(unknown)}: not in the grid; its splits: {', '.join(grid.forget_splits)}")
    chosen = [g for g in expanded if not splits or g.split in splits]
    return [(g, parse_study(["--config", str(write_study_yaml(grid, g))])[0]) for g in chosen]


def manifest(grid: Grid, expanded: Sequence[GridStudy], timings: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What ``grid.json`` holds: the report's settings, and per split its study folder (relative to the grid's
    folder), which curve is which, and its times (``timings``: split -> wall and stage seconds)."""
    return {
        "name": grid.name,
        "seeds": list(grid.seeds),
        "contrasts": [asdict(c) for c in grid.contrasts],
        "metrics": list(grid.metrics),
        "barrier": grid.barrier,
        "tolerance": grid.tolerance,
        "studies": {
            g.split: {
                "root": g.name,
                "curves": {
                    contrast: {str(seed): name for seed, name in by_seed.items()}
                    for contrast, by_seed in g.curves.items()
                },
                **timings.get(g.split, {}),
            }
            for g in expanded
        },
    }


def _stage_seconds(runner: Any) -> float:
    """The seconds every stage of the study took when it ran (``stage.json``), whether it ran now or before."""
    total = 0.0
    for stage in runner.plan():
        if stage.marker.is_file():
            total += float(json.loads(stage.marker.read_text()).get("seconds", 0.0))
    return total


def run_grid(
    grid: Grid, splits: Sequence[str] | None = None, rerun: bool = False, console: Any = None, report_only: bool = False
) -> Path:
    """Validate every study of the grid, run them in split order (reusing finished stages), then write the grid
    report; return its path. ``report_only``: run nothing, rebuild the report from what the studies saved.

    ``grid.json`` is rewritten after each study with its times: ``wall_seconds`` (the ``mcu grid`` runs of it, summed
    over runs, so a resumed grid counts its first attempt too) and ``stage_seconds`` (its stages' own times as each
    ``stage.json`` records them, however many runs it took)."""
    from mcu_lightning.report.grid import GRID_JSON, write_grid_report
    from mcu_lightning.study.runner import StudyRunner

    loaded = load_studies(grid, splits)
    runners = []
    for grid_study, study in loaded:  # every study checked before the first stage of any starts
        try:
            runners.append((grid_study, StudyRunner(study, console=console)))
        except (InputError, FileNotFoundError, NotADirectoryError) as err:  # named by the study it is in
            raise StudyError(f"{grid_study.name}: {err}") from err
    out = grid_dir(grid)
    previous = json.loads((out / GRID_JSON).read_text()) if (out / GRID_JSON).is_file() else {}
    timings = {
        split: {k: v for k, v in entry.items() if k.endswith("seconds")}
        for split, entry in previous.get("studies", {}).items()
    }
    for grid_study, runner in runners:
        times = timings.setdefault(grid_study.split, {})
        if not report_only:
            if console is not None:
                console.print(
                    f"[bold]grid {grid.name}: study {grid_study.name}[/bold] (forget split {grid_study.split})"
                )
            started = time.perf_counter()
            runner.run(rerun=rerun)
            times["wall_seconds"] = times.get("wall_seconds", 0.0) + time.perf_counter() - started
        times["stage_seconds"] = _stage_seconds(runner)
        atomic_write(out / GRID_JSON, json.dumps(manifest(grid, expand(grid), timings), indent=2).encode())
    return write_grid_report(out)
