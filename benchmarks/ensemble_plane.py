"""Ensemble and metric-plane evaluation cost, relative to one plain evaluation of the same suite on the same batches.

Plain: ``evaluate_suite(model, suite, batches)`` on a plain model. Ensemble: the same call on an ``Ensemble`` of
``--members`` K points of a curve (written one by one into one working copy; BatchNorm statistics cached after the
warm-up), divided by K: the cost per member (target: close to 1). Plane: ``metric_plane`` on a ``--grid`` G x G grid
(basis, every grid point's write, BatchNorm recompute where the model has BatchNorm, the suite, the curve's
projection), divided by G^2: the cost per grid point (close to 1, plus the BatchNorm passes). The three variants are
interleaved (plain, ensemble, plane, plain, ...); ratios are medians of back-to-back pairs.

    python -m benchmarks.ensemble_plane
    python -m benchmarks.ensemble_plane --device cuda --eval-batches 8 --batch-size 64 --seq-len 256
"""

from __future__ import annotations

import copy
import warnings
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
from mcu_lightning.curves import Bezier, Curve, Ensemble, has_batchnorm
from mcu_lightning.metrics import ClassificationSuite, QASuite, evaluate_suite
from mcu_lightning.modules.plane import metric_plane


def make_variants(
    model: nn.Module, suite: nn.Module, batches: list[tuple[str, dict]], members: int, grid: int
) -> dict[str, Callable[[], None]]:
    plain = copy.deepcopy(model).eval()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    template = copy.deepcopy(model).requires_grad_(False)
    curve = Curve(template, [start, perturbed(start, 0.05, seed=1)], shape=Bezier(3))
    with torch.no_grad():  # a trained curve's control point is off the straight line
        point = curve.control_points[0]
        point.add_(0.05 * point.std() * torch.randn(point.shape, generator=torch.Generator().manual_seed(2)))
    bn = [batches[0][1]] if has_batchnorm(model) else []
    ensemble = Ensemble.from_curve(curve, members, bn_batches=bn)

    def plain_eval() -> None:
        evaluate_suite(plain, suite, batches)

    def ensemble_eval() -> None:
        evaluate_suite(ensemble, suite, batches)

    def plane_eval() -> None:
        metric_plane(curve, suite, batches, points=grid, bn_batches=bn, curve_points=61)

    return {"plain": plain_eval, "ensemble": ensemble_eval, "plane": plane_eval}


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("ensemble_plane", __doc__.splitlines()[0])
    p.set_defaults(repeats=5, warmup=1)
    p.add_argument("--members", type=int, default=3, help="K evenly spaced curve points of the ensemble")
    p.add_argument("--grid", type=int, default=3, help="G: the plane's G x G grid")
    add_eval_model_args(p, image_size=16)
    args = p.parse_args(argv)
    device = setup(args)
    conv, lm = eval_models(args, device)
    n = range(args.eval_batches)

    def indexed(batch: dict, i: int, size: int) -> dict:
        return {**batch, "index": torch.arange(i * size, (i + 1) * size, device=device)}

    image = [
        ("test", indexed(image_batch(args.batch_size, 3, args.image_size, device, i), i, args.batch_size)) for i in n
    ]
    text = [
        (
            "retain",
            indexed(lm_batch(args.vocab_size, args.lm_batch_size, args.seq_len, device, i), i, args.lm_batch_size),
        )
        for i in n
    ]
    cases = [
        ("conv", conv, ClassificationSuite(zrf_draws=0), image),
        ("lm", lm, QASuite(rouge=False, splits=["retain"]), text),
    ]  # fmt: skip
    rows = []
    for kind, model, suite, batches in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # model_utility from 1 of 9 components: the figure here is time
            variants = make_variants(model, suite, batches, args.members, args.grid)
            times = interleaved(variants, args.repeats, args.warmup, device)
        points = args.grid**2
        per_member = [s / args.members for s in times["ensemble"]]
        per_point = [s / points for s in times["plane"]]
        plain_s, member_s, point_s = median(times["plain"]), median(per_member), median(per_point)
        member_ratio = paired_ratio(per_member, times["plain"])
        point_ratio = paired_ratio(per_point, times["plain"])
        label = f"{kind}, {len(batches)} batches, K={args.members}, G={args.grid}"
        print(
            ratio_line(
                f"ensemble_plane {label}: ensemble per member/plain", member_s, plain_s, "~1", ratio=member_ratio
            )
        )
        print(
            ratio_line(f"ensemble_plane {label}: plane per grid point/plain", point_s, plain_s, "~1", ratio=point_ratio)
        )
        rows.append(
            {
                "case": label,
                "model": kind,
                "members": args.members,
                "grid": args.grid,
                "eval_batches": len(batches),
                "batchnorm": has_batchnorm(model),
                "params": sum(p.numel() for p in model.parameters()),
                "plain_ms": plain_s * 1e3,
                "ensemble_per_member_ms": member_s * 1e3,
                "plane_per_point_ms": point_s * 1e3,
                "ensemble_member_ratio": member_ratio,
                "plane_point_ratio": point_ratio,
            }
        )
    write_json(args.out, "ensemble_plane", device, args, rows)
    return rows


if __name__ == "__main__":
    main()
