"""What a study found, in a few generated sentences: the opening of ``summary.md``.

Per curve (a seed group read as one, see :mod:`mcu_lightning.report.seeds`): whether a barrier exists on the
headline metrics, with its interval when there are seeds, and where it sits; whether an interior point beats both
endpoints and on what; what the robustness probes found. Then a headline table of at most
:data:`HEADLINE_LIMIT` metrics. Every sentence is built from numbers only, each printed as
:func:`~mcu_lightning.report.seeds.num` prints it (so a reader, or a test, can parse it back), and says nothing the
numbers do not carry: a verdict is "barrier", "barrier-free" or "undecided" by the rule in ``seeds``, never an
adjective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mcu_lightning.core.names import PROBE_PREFIX, RECOVERY_SUFFIX
from mcu_lightning.metrics.intervals import mean_interval
from mcu_lightning.report.seeds import BARRIER_TOLERANCE, LEVEL, CurveOverSeeds, interval_text, num

#: At most this many metrics in the headline table.
HEADLINE_LIMIT = 8
#: At most this many metrics per curve in the sentences.
SENTENCE_METRICS = 4


def _runs(curve: CurveOverSeeds) -> str:
    n = len(curve.seeds)
    return f"{n} seeds" if n > 1 else "one run, no intervals"


def barrier_sentence(name: str, pair: str, curve: CurveOverSeeds, metrics: Sequence[str]) -> str | None:
    """Per headline metric: the barrier (mean [interval] at the mean t of its peak) and the verdict by the rule."""
    clauses = []
    for metric in metrics:
        m = curve.metrics.get(metric)
        if m is None:
            continue
        if m.barrier.has_interval:
            verdict = {
                True: f"barrier-free: below {num(BARRIER_TOLERANCE)}",
                False: f"a barrier: above {num(BARRIER_TOLERANCE)}",
                None: f"undecided: the interval contains {num(BARRIER_TOLERANCE)}",
            }[m.barrier_free()]
        else:
            side = "below" if m.barrier.mean < BARRIER_TOLERANCE else "at or above"
            verdict = f"{side} {num(BARRIER_TOLERANCE)}"
        clauses.append(f"on {metric} {interval_text(m.barrier)} at t = {num(m.t_barrier.mean)} ({verdict})")
    if not clauses:
        return None
    return f"`{name}` ({pair}, {_runs(curve)}): barrier " + "; ".join(clauses) + "."


def beats_sentence(name: str, curve: CurveOverSeeds, metrics: Sequence[str]) -> str | None:
    """Per headline metric: does the best interior point beat both endpoints (margin = best interior - best endpoint
    in the metric's direction, positive when better), in how many seeds."""
    clauses = []
    for metric in metrics:
        m = curve.metrics.get(metric)
        if m is None or not math.isfinite(m.margin.mean):
            continue
        verdict = m.beats_both() if m.margin.has_interval else m.beats == m.n
        what = {
            True: "beats both endpoints on",
            False: "does not beat both endpoints on",
            None: "undecided whether it beats both endpoints on",
        }[verdict]
        seeds = f"{m.beats} of {m.n} seed{'s' if m.n > 1 else ''}"
        clauses.append(
            f"{what} {metric} (margin {interval_text(m.margin)} at t = {num(m.t_best_interior.mean)}, {seeds})"
        )
    if not clauses:
        return None
    return f"`{name}`, best interior point: " + "; ".join(clauses) + "."


def recovery_sentences(name: str, curve: CurveOverSeeds, robustness: Sequence[str]) -> list[str]:
    """Per probe: the recovery (after - before) of the first of ``robustness`` it reports, at every probed t."""
    sentences = []
    probes = sorted({c.split("/")[1] for c in curve.columns if c.startswith(PROBE_PREFIX)})
    for probe in probes:
        metric = next((m for m in robustness if f"{PROBE_PREFIX}{probe}/{m}{RECOVERY_SUFFIX}" in curve.band), None)
        if metric is None:
            continue
        band = curve.band[f"{PROBE_PREFIX}{probe}/{metric}{RECOVERY_SUFFIX}"]
        points = [f"{interval_text(iv)} at t = {num(t)}" for t, iv in zip(curve.ts, band, strict=True) if iv.n]
        if points:
            sentences.append(
                f"`{name}`, probe `{probe}`: {metric} recovers by " + ", ".join(points) + " (after - before; lower: "
                "the forgetting holds)."
            )
    return sentences


def findings_lines(
    curves: Mapping[str, tuple[str, CurveOverSeeds]],
    metrics: Sequence[str],
    robustness: Sequence[str],
) -> list[str]:
    """The ``## Findings`` section: ``curves`` maps a curve (or seed group) name to its ``"a -> b"`` pair and its
    aggregate; ``metrics``: the headline metrics in order (the first :data:`SENTENCE_METRICS` a curve has)."""
    lines = ["## Findings", ""]
    for name, (pair, curve) in curves.items():
        shown = [m for m in metrics if m in curve.metrics][:SENTENCE_METRICS]
        for sentence in (barrier_sentence(name, pair, curve, shown), beats_sentence(name, curve, shown)):
            if sentence is not None:
                lines.append(f"- {sentence}")
        lines += [f"- {sentence}" for sentence in recovery_sentences(name, curve, robustness)]
    if len(lines) == 2:
        lines.append("- No curve has been tested yet.")
    seeded = [curve for _, curve in curves.values() if len(curve.seeds) > 1]
    rule = (
        f"Barrier = how much worse the path gets than its worse endpoint (barrier_vs_max_end), in the metric's units; "
        f"tolerance {num(BARRIER_TOLERANCE)}."
    )
    if seeded:
        rule += (
            f" Numbers over seeds are means with {LEVEL:.0%} Student t intervals [low, high]; a verdict reads "
            "the whole interval."
        )
    return [*lines, "", rule, ""]


def headline_table(
    nodes: Mapping[str, Mapping[str, float]],
    groups: Mapping[str, Mapping[int, str]],
    metrics: Sequence[str],
    label: Mapping[str, str] | None = None,
) -> list[str]:
    """At most :data:`HEADLINE_LIMIT` ``metrics`` (rows) of base, oracle and every endpoint; an endpoint run with
    seeds is one column, ``name (n seeds)``, each cell the mean [interval] over its replicas."""
    label = label or {}
    metrics = list(metrics)[:HEADLINE_LIMIT]
    in_group = {stage for replicas in groups.values() for stage in replicas.values()}
    columns: dict[str, list[Mapping[str, float]]] = {}
    for name, values in nodes.items():
        if name not in in_group:
            columns[name] = [values]
        for group, replicas in groups.items():
            if name == next(iter(replicas.values())):  # the group's column where its first replica stands
                columns[f"{group} ({len(replicas)} seeds)"] = [nodes[s] for s in replicas.values() if s in nodes]
    lines = ["| metric | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for metric in metrics:
        cells = [interval_text(mean_interval(v.get(metric, math.nan) for v in runs)) for runs in columns.values()]
        lines.append(f"| {label.get(metric, metric)} | " + " | ".join(cells) + " |")
    return lines
