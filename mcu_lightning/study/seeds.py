"""``seeds:`` on a study or an endpoint: each unlearning run, curve and merge once per seed, in one study folder.

A study with ``seeds: [0, 1, 2]`` is expanded, before validation, into the study it stands for:

* every endpoint ``graddiff`` becomes ``graddiff-s0``, ``graddiff-s1``, ``graddiff-s2`` (``seed`` set to each);
  an endpoint's own ``seeds`` overrides the study's for it;
* a curve or merge that names a seeded endpoint runs once per seed of it, between the replicas of that seed
  (``methods`` between ``graddiff`` and ``npo`` becomes ``methods-s0`` between ``graddiff-s0`` and ``npo-s0``, ...);
  the seeded endpoints it names must share one seed list; a node it names otherwise (``base``, ``oracle``, an
  unseeded endpoint, or a replica by its full name such as ``graddiff-s1``) is the same in every replica;
* a curve that names no seeded endpoint runs once per study seed (its own random streams: t, batches);
  such a merge is deterministic and stays one stage;
* a replica curve's ``seed`` is its seed; the base and the oracle are shared (trained once, with ``seed``).

Every replica is an ordinary stage (its own folder, fingerprint, reuse). A study without ``seeds`` is unchanged.
:func:`expand_seeds` also returns which replicas belong together (:class:`SeedGroups`), which the study writes to
``study.json`` so that the report can aggregate over seeds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mcu_lightning.study.schema import CurveSpec, Merge, Study, StudyError

Spec = TypeVar("Spec", CurveSpec, Merge)


def seed_name(name: str, seed: int) -> str:
    """The stage name of ``name``'s run with ``seed``: ``graddiff`` -> ``graddiff-s1``."""
    return f"{name}-s{seed}"


@dataclass
class SeedGroups:
    """Per kind (``endpoints``, ``curves``, ``merges``): group name -> {seed: stage name}, in study order."""

    endpoints: dict[str, dict[int, str]] = field(default_factory=dict)
    curves: dict[str, dict[int, str]] = field(default_factory=dict)
    merges: dict[str, dict[int, str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, dict[str, dict[str, str]]]:
        """JSON-ready (seeds as string keys), as written to ``study.json`` under ``seed_groups``."""
        return {
            kind: {group: {str(s): name for s, name in replicas.items()} for group, replicas in groups.items()}
            for kind, groups in (("endpoints", self.endpoints), ("curves", self.curves), ("merges", self.merges))
        }

    @classmethod
    def from_json(cls, data: dict[str, dict[str, dict[str, str]]] | None) -> SeedGroups:
        data = data or {}
        return cls(
            **{
                kind: {g: {int(s): n for s, n in r.items()} for g, r in (data.get(kind) or {}).items()}
                for kind in ("endpoints", "curves", "merges")
            }
        )

    def stages(self, name: str) -> list[str]:
        """The stage names a group name stands for (``--only graddiff``); any other name as it is."""
        for groups in (self.endpoints, self.curves, self.merges):
            if name in groups:
                return list(groups[name].values())
        return [name]

    def __bool__(self) -> bool:
        return bool(self.endpoints or self.curves or self.merges)


def check_seeds(seeds: list[int] | None, what: str) -> None:
    """A seed list: non-empty, whole numbers >= 0, none repeated."""
    if seeds is None:
        return
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise StudyError(f"{what}seeds={seeds!r} must be a non-empty list of whole numbers >= 0 (e.g. [0, 1, 2])")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{what}seeds={seeds!r} repeats a seed")


def _node_seeds(nodes: list[str], seeded: dict[str, list[int]], what: str) -> list[int] | None:
    """The one seed list of the seeded endpoints among ``nodes`` (None if none is seeded)."""
    lists = {node: seeded[node] for node in nodes if node in seeded}
    distinct = {tuple(seeds) for seeds in lists.values()}
    if len(distinct) > 1:
        listed = ", ".join(f"'{node}' {seeds}" for node, seeds in lists.items())
        raise StudyError(f"{what} connects endpoints run with different seeds ({listed}); give them the same seeds")
    return list(next(iter(distinct))) if distinct else None


def expand_seeds(study: Study) -> tuple[Study, SeedGroups]:
    """The study with every seeded endpoint, curve and merge replicated per seed (rules in the module docstring)."""
    check_seeds(study.seeds, "")
    groups = SeedGroups()
    seeded: dict[str, list[int]] = {}
    endpoints = []
    for endpoint in study.endpoints:
        check_seeds(endpoint.seeds, f"endpoint '{endpoint.name}': ")
        seeds = endpoint.seeds if endpoint.seeds is not None else study.seeds
        if seeds is None:
            endpoints.append(endpoint)
            continue
        seeded[endpoint.name] = list(seeds)
        groups.endpoints[endpoint.name] = {s: seed_name(endpoint.name, s) for s in seeds}
        endpoints += [replace(endpoint, name=seed_name(endpoint.name, s), seed=s, seeds=None) for s in seeds]
    if not seeded and study.seeds is None:
        return study, groups
    curves = _replicate(
        study.curves,
        "curve",
        seeded,
        study.seeds,
        groups.curves,
        lambda curve, name, nodes, s: replace(copy.deepcopy(curve), name=name, endpoints=nodes, seed=s),
    )
    merges = _replicate(
        study.merges,
        "merge",
        seeded,
        None,  # a merge of unseeded endpoints is deterministic: one stage
        groups.merges,
        lambda merge, name, nodes, s: replace(merge, name=name, endpoints=nodes),
    )
    return replace(study, endpoints=endpoints, curves=curves, merges=merges), groups


def _replicate(
    specs: list[Spec],
    kind: str,
    seeded: dict[str, list[int]],
    default: list[int] | None,
    groups: dict[str, dict[int, str]],
    replica: Callable[[Spec, str, list[str], int], Spec],
) -> list[Spec]:
    """Each curve or merge of ``specs`` once per seed of the seeded endpoints it names (``default`` when it names
    none; as it is when that is ``None``): ``replica(spec, name, nodes, seed)`` builds one, with its endpoints
    replaced by their replicas of that seed. Each replicated spec's group goes into ``groups``."""
    out = []
    for spec in specs:
        seeds = _node_seeds(spec.endpoints, seeded, f"{kind} '{spec.name}'") or default
        if seeds is None:
            out.append(spec)
            continue
        groups[spec.name] = {s: seed_name(spec.name, s) for s in seeds}
        for s in seeds:
            nodes = [seed_name(node, s) if node in seeded else node for node in spec.endpoints]
            out.append(replica(spec, seed_name(spec.name, s), nodes, s))
    return out
