"""Training-free paths: the polychain through the base (fixed bends), the line and SLERP, tested by CurveModule
without fit (in Python and through ``mcu test --config``), and refused by fit."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer

from mcu_lightning.cli import main
from mcu_lightning.curves import Bezier, Curve, Linear, PolyChain, Slerp
from mcu_lightning.data import ClassificationDataModule
from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.models.io import load_state_dict
from mcu_lightning.modules import CurveModule
from tests.curves.test_curve import Mlp, mlp_state
from tests.reliability.helpers import mlp_endpoint


def test_base_polychain_passes_through_the_base_with_no_trainable_parameters() -> None:
    ends, base = [mlp_state(0), mlp_state(1)], mlp_state(2)
    curve = Curve(Mlp(), ends, shape=PolyChain(3), init=base, fixed_bends=True)
    assert list(curve.parameters()) == [] and not curve.has_free_points
    assert sum(p.numel() for p in curve.parameters() if p.requires_grad) == 0
    for t, state in ((0.0, ends[0]), (0.5, base), (1.0, ends[1])):
        params = curve.params(t)
        assert all(torch.equal(params[name], state[name]) for name in curve.names), t
    # between bends it is the segment endpoint 0 -> base, then base -> endpoint 1
    torch.testing.assert_close(curve.params(0.25)["head.weight"], 0.5 * (ends[0]["head.weight"] + base["head.weight"]))
    torch.testing.assert_close(curve.params(0.75)["head.weight"], 0.5 * (base["head.weight"] + ends[1]["head.weight"]))
    assert torch.equal(curve.control_point(0)["head.weight"], base["head.weight"])
    # the frozen bend follows the curve's device/dtype moves but is not a checkpoint entry
    assert not any(key.startswith("control_points") or "bend" in key for key in curve.state_dict())


def test_trainable_curve_still_has_its_control_point() -> None:
    curve = Curve(Mlp(), [mlp_state(0), mlp_state(1)], shape=Bezier(3), init=mlp_state(2))
    assert curve.has_free_points and len(list(curve.parameters())) == 1


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digits_models")
    return {name: mlp_endpoint(root / name, seed=seed) for name, seed in (("a", 0), ("b", 1), ("base", 2))}


def _data() -> ClassificationDataModule:
    return ClassificationDataModule(dataset="digits", image_size=8, forget_fraction=0.1, batch_size=64, seed=4)


def _trainer(root: Path) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


PATHS: dict[str, dict[str, Any]] = {
    "line": {"shape": Linear()},
    "base_polychain": {"shape": PolyChain(3), "init": "base", "fixed_bends": True},
    "slerp": {"shape": Slerp()},
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PATHS))
def test_curve_module_tests_a_training_free_path_without_fit(
    kind: str, models: dict[str, Path], tmp_path: Path
) -> None:
    kwargs = dict(PATHS[kind])
    if kwargs.get("init") == "base":
        kwargs["init"] = str(models["base"])
    out = tmp_path / kind
    module = CurveModule(
        endpoints=[str(models["a"]), str(models["b"])],
        suite=ClassificationSuite(),
        eval_ts=3,
        output_dir=str(out),
        **kwargs,
    )
    assert not module.has_free_points and module.trainable_parameters() == []
    _trainer(tmp_path).test(module, datamodule=_data(), verbose=False)
    rows = _rows(out / "curve_metrics.csv")
    assert [row["t"] for row in rows] == [0.0, 0.5, 1.0]
    assert all(row["test/loss"] == row["test/loss"] for row in rows)  # no NaN
    if kind == "base_polychain":
        mid, base = module.curve.params(0.5), load_state_dict(models["base"])
        assert all(torch.equal(mid[name], base[name]) for name in module.curve.names)
    with pytest.raises(ValueError, match="no free points to fit"):
        _trainer(tmp_path).fit(module, datamodule=_data())


def test_slerp_refuses_an_init(models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="Slerp"):
        CurveModule(endpoints=[str(models["a"]), str(models["b"])], shape=Slerp(), init=str(models["base"]))


CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
model:
  class_path: mcu_lightning.modules.CurveModule
  init_args:
    endpoints: [{a}, {b}]
    shape:
      class_path: mcu_lightning.curves.PolyChain
      init_args: {{num_bends: 3}}
    init: {base}
    fixed_bends: true
    eval_ts: 3
    suite: {{class_path: mcu_lightning.metrics.ClassificationSuite}}
    output_dir: {out}
data:
  class_path: mcu_lightning.data.ClassificationDataModule
  init_args: {{dataset: digits, image_size: 8, forget_fraction: 0.1, batch_size: 64, seed: 4}}
"""


@pytest.mark.slow
def test_mcu_test_config_with_fixed_bends(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "through_base"
    config = tmp_path / "through_base.yaml"
    config.write_text(CONFIG.format(a=models["a"], b=models["b"], base=models["base"], out=out))
    main(["test", "--config", str(config)])
    rows = _rows(out / "curve_metrics.csv")
    assert [row["t"] for row in rows] == [0.0, 0.5, 1.0]
