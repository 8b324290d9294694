"""The metric plane through a quadratic curve's bends: basis, coordinates, grid, evaluation and report files."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
from torch import nn

from mcu_lightning.curves import (
    Bezier,
    Curve,
    Linear,
    curve_projection,
    plane_basis,
    plane_grid,
    recompute_batchnorm,
)
from mcu_lightning.metrics import ClassificationSuite, evaluate_suite
from mcu_lightning.models import MLP
from mcu_lightning.modules.plane import metric_plane
from mcu_lightning.report.plane import write_plane_report


def _mlp(seed: int, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    if batchnorm:
        return MLP(in_features=6, num_classes=3, hidden=8, depth=1).eval()
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _curve(batchnorm: bool = False, trained: bool = True, shape=None) -> Curve:
    a, b = _mlp(0, batchnorm), _mlp(1, batchnorm)
    curve = Curve(copy.deepcopy(a), [a.state_dict(), b.state_dict()], shape=shape or Bezier(3))
    if trained:  # what training does: the control point leaves the straight line
        with torch.no_grad():
            generator = torch.Generator().manual_seed(2)
            curve.control_points[0].add_(0.5 * torch.randn(curve.control_points[0].shape, generator=generator))
    return curve


def _batches() -> list[tuple[str, dict]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for split in ("forget", "test"):
        batch = {
            "inputs": torch.randn(12, 6, generator=generator),
            "labels": torch.randint(0, 3, (12,), generator=generator),
        }
        out.append((split, {**batch, "index": torch.arange(12)}))
    return out


def test_the_coordinates_of_the_three_bends_reproduce_their_weights():
    curve = _curve()
    basis = plane_basis(curve)
    assert basis.u.norm().item() == pytest.approx(1.0, abs=1e-6) and basis.v.norm().item() == pytest.approx(
        1.0, abs=1e-6
    )
    assert abs(torch.dot(basis.u, basis.v).item()) < 1e-6
    weights = {"w0": curve._start, "w1": curve._end, "theta": curve.control_points[0].detach()}
    for name, w in weights.items():
        x, y = basis.bends[name]
        assert basis.coordinates(w) == pytest.approx((x, y), abs=1e-5)
        torch.testing.assert_close(basis.point(x, y), w.float(), rtol=1e-5, atol=1e-5)
    assert basis.bends["w1"] == (pytest.approx(torch.linalg.vector_norm(curve._end - curve._start).item()), 0.0)


def test_the_plane_of_a_linear_initialised_curve_contains_the_straight_line():
    with pytest.raises(ValueError, match="on the straight line"):
        plane_basis(_curve(trained=False))  # untrained: theta on the line, no plane
    curve = _curve(trained=True)  # trained from init="linear"
    basis = plane_basis(curve)
    for t in (0.0, 0.25, 0.6, 1.0):
        line = torch.lerp(curve._start, curve._end, t)
        x, y = basis.coordinates(line)
        assert x == pytest.approx(t * basis.dx, abs=1e-5) and y == pytest.approx(0.0, abs=1e-5)
        torch.testing.assert_close(basis.point(x, y), line, rtol=1e-5, atol=1e-5)
        on_curve = curve.flat_params(t).float()
        torch.testing.assert_close(basis.point(*basis.coordinates(on_curve)), on_curve, rtol=1e-5, atol=1e-5)


def test_the_curve_projection_is_the_coordinates_of_theta_t():
    curve = _curve()
    basis = plane_basis(curve)
    rows, off = curve_projection(curve, basis, points=5)
    assert off < 1e-5 and [t for t, _, _ in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for t, x, y in rows:
        assert basis.coordinates(curve.flat_params(t)) == pytest.approx((x, y), abs=1e-5)


def test_grid_margins_as_garipov():
    basis = plane_basis(_curve())
    xs, ys = plane_grid(basis, points=5)
    x_theta = basis.bends["theta"][0]
    low, high = min(0.0, x_theta), max(basis.dx, x_theta)
    assert len(xs) == len(ys) == 5
    assert xs[0] == pytest.approx(low - 0.2 * (high - low)) and xs[-1] == pytest.approx(high + 0.2 * (high - low))
    assert ys[0] == pytest.approx(-0.2 * basis.dy) and ys[-1] == pytest.approx(1.2 * basis.dy)


def test_metric_plane_recomputes_batchnorm_and_writes_csv_and_figures(tmp_path):
    curve = _curve(batchnorm=True)
    bn = [{"inputs": torch.randn(16, 6, generator=torch.Generator().manual_seed(1))}]
    suite = ClassificationSuite(zrf_draws=0)
    done = []
    working = copy.deepcopy(curve.template)
    plane = metric_plane(
        curve, suite, _batches(), metrics=["forget/acc", "test/loss"], points=3, margins=0.0, working=working,
        bn_batches=bn, progress=lambda d, n: done.append((d, n)),
    )  # fmt: skip
    assert done[-1] == (9, 9) and plane.off_plane < 1e-5
    # with no margins the grid's corner (0, 0) is endpoint 0 itself, its BatchNorm recomputed on the same batches
    assert 0.0 <= plane.bends["theta"][0] <= plane.dx and plane.xs[0] == 0.0 and plane.ys[0] == 0.0
    model = recompute_batchnorm(curve.write_to(copy.deepcopy(curve.template), 0.0), bn).eval()
    expected = evaluate_suite(model, suite, _batches()).aggregates["test/loss"]
    assert plane.values["test/loss"][0][0] == pytest.approx(expected, rel=1e-4)
    paths = write_plane_report(plane, tmp_path, title="a-b")
    with open(tmp_path / "plane_metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9 and list(rows[0]) == ["grid_x", "grid_y", "forget/acc", "test/loss"]
    geometry = json.loads((tmp_path / "plane.json").read_text())
    assert set(geometry["bends"]) == {"w0", "theta", "w1"} and len(geometry["curve"]) == 61
    for name in ("plane_forget_acc.png", "plane_test_loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and tmp_path / name in paths


def test_refusals():
    with pytest.raises(ValueError, match="three bends"):
        plane_basis(_curve(shape=Bezier(4)))
    with pytest.raises(ValueError, match="three bends"):
        plane_basis(_curve(trained=False, shape=Linear()))
    with pytest.raises(TypeError, match="needs a Curve"):
        plane_basis(nn.Linear(2, 2))
    curve = _curve(batchnorm=True)
    with pytest.raises(ValueError, match="bn_batches"):
        metric_plane(curve, ClassificationSuite(zrf_draws=0), _batches(), working=copy.deepcopy(curve.template))
    with pytest.raises(KeyError, match="reports no"):
        metric_plane(_curve(), ClassificationSuite(zrf_draws=0), _batches(), metrics=["nope"], points=2)
    with pytest.raises(ValueError, match="at least 2"):
        plane_grid(plane_basis(_curve()), points=1)


def test_the_plane_of_a_path_through_the_base_has_the_base_as_its_middle_bend():
    """``path: base``: a PolyChain(3) with ``fixed_bends`` (no control point to train); its middle bend is the base."""
    from mcu_lightning.curves import PolyChain

    a, b, base = _mlp(0), _mlp(1), _mlp(2)
    curve = Curve(copy.deepcopy(a), [a.state_dict(), b.state_dict()], shape=PolyChain(3), init=base.state_dict(),
                  fixed_bends=True)  # fmt: skip
    assert len(curve.control_points) == 0
    basis = plane_basis(curve)
    flat_base = torch.cat([p.detach().reshape(-1) for p in base.parameters()])
    assert basis.point(*basis.bends["theta"]).allclose(flat_base, atol=1e-5)
    _, off = curve_projection(curve, basis)
    assert off < 1e-5  # the polychain lies in the plane of its three bends
