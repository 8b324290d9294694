"""Evaluating a curve at 31 points vs 31 evaluations of a plain model on the same evaluation set.

Curve (t-major, what a per-t test loop does): for each t, ``Curve.write_to(model, t)`` once, then the forward pass over
every evaluation batch. Plain: the same forward passes on a plain model, 31 times. Target: curve/plain <= 1.05.
Also measured (not a target): batch-major order, ``write_to`` for every (batch, t) pair, which is what
``CurveModule.test`` would do if each ``test_step`` looped over t.

The variants are interleaved one t at a time (curve at t, plain, batch-major at t, next t ...), ``--repeats`` passes
over the grid after ``--warmup`` passes; the ratio is the median over t-pairs of curve / plain, and the times shown
are the median time of one t times the number of points (one whole evaluation).

    python -m benchmarks.curve_eval
    python -m benchmarks.curve_eval --device cuda --eval-batches 16 --batch-size 64 --seq-len 512
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import torch
from torch import nn

from benchmarks._common import (
    add_eval_model_args,
    eval_models,
    image_batch,
    interleaved,
    lm_batch,
    median,
    paired_ratio,
    parser,
    perturbed,
    ratio_line,
    setup,
    write_json,
)
from mcu_lightning.curves import Bezier, Curve
from mcu_lightning.models import call_model


def make_evals(model: nn.Module, batches: list[dict], points: int) -> dict[str, Callable[[], None]]:
    """One call of a variant evaluates one t (the next of the grid, the same t for every variant's k-th call)."""
    ts = [i / (points - 1) for i in range(points)]
    plain = copy.deepcopy(model).eval()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    template = copy.deepcopy(model).requires_grad_(False)
    curve = Curve(template, [start, perturbed(start, 0.05, seed=1)], shape=Bezier(3))
    working = copy.deepcopy(model).requires_grad_(False).eval()
    grids = {name: itertools.cycle(ts) for name in ("curve", "plain", "curve_batch_major")}

    @torch.no_grad()
    def plain_eval() -> None:
        next(grids["plain"])
        for batch in batches:
            call_model(plain, batch)

    @torch.no_grad()
    def curve_t_major() -> None:
        curve.write_to(working, next(grids["curve"]))
        for batch in batches:
            call_model(working, batch)

    @torch.no_grad()
    def curve_batch_major() -> None:
        t = next(grids["curve_batch_major"])
        for batch in batches:
            curve.write_to(working, t)
            call_model(working, batch)

    return {"curve": curve_t_major, "plain": plain_eval, "curve_batch_major": curve_batch_major}


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("curve_eval", __doc__.splitlines()[0])
    p.set_defaults(repeats=5, warmup=1)
    p.add_argument("--points", type=int, default=31, help="t values on [0, 1], endpoints included")
    add_eval_model_args(p, image_size=32)
    args = p.parse_args(argv)
    device = setup(args)
    conv, lm = eval_models(args, device)
    n = range(args.eval_batches)
    cases = [
        ("conv", conv, [image_batch(args.batch_size, 3, args.image_size, device, i) for i in n]),
        ("lm", lm, [lm_batch(args.vocab_size, args.lm_batch_size, args.seq_len, device, i) for i in n]),
    ]  # fmt: skip
    cases = [case for case in cases if case[1] is not None]  # --model: the LM only
    rows = []
    for kind, model, batches in cases:
        per_t = interleaved(
            make_evals(model, batches, args.points), args.repeats * args.points, args.warmup * args.points, device
        )
        times = {name: [seconds * args.points for seconds in values] for name, values in per_t.items()}
        curve_s, plain_s, major_s = (median(times[k]) for k in ("curve", "plain", "curve_batch_major"))
        ratio = paired_ratio(times["curve"], times["plain"])
        major_ratio = paired_ratio(times["curve_batch_major"], times["plain"])
        label = f"{kind}, {args.points} t x {len(batches)} batches"
        print(ratio_line(f"curve_eval {label}: curve/plain", curve_s, plain_s, "<= 1.05", ratio=ratio))
        print(
            ratio_line(
                f"curve_eval {label}: batch-major/plain", major_s, plain_s, "none (information)", ratio=major_ratio
            )
        )
        rows.append(
            {
                "case": label,
                "model": kind,
                "points": args.points,
                "eval_batches": len(batches),
                "params": sum(p.numel() for p in model.parameters()),
                "curve_ms": curve_s * 1e3,
                "plain_ms": plain_s * 1e3,
                "batch_major_ms": major_s * 1e3,
                "ratio": ratio,
                "ratio_of_medians": curve_s / plain_s,
                "batch_major_ratio": major_ratio,
                "target": 1.05,
                "meets_target": ratio <= 1.05,
            }
        )
    write_json(args.out, "curve_eval", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
