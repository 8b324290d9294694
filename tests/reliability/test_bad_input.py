"""Bad input gets one clear ``error:`` line and exit status 2 from ``mcu fit``, before any training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from mcu_lightning.study.runner import StudyRunner
from mcu_lightning.study.schema import CurveSpec, Endpoint, Evaluation, ModelStage, Study
from tests.reliability.helpers import CONFIGS, mlp_endpoint, one_error_line


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    nan = mlp_endpoint(root / "nan", 3)
    state = load_file(nan / "model.safetensors")
    state["net.1.weight"][0, 0] = math.nan
    save_file(state, str(nan / "model.safetensors"))
    (root / "notes.txt").write_text("not a model")
    return {
        "a": mlp_endpoint(root / "a", 1),
        "b": mlp_endpoint(root / "b", 2),
        "narrow": mlp_endpoint(root / "narrow", 2, hidden=8),
        "nan": nan,
        "text": root / "notes.txt",
    }


def _curve(a: Path, b: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIGS / "curve_digits.yaml"), f"--model.init_args.endpoints=[{a}, {b}]", *extra]


def test_unknown_class_path_names_where_and_close_matches(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    text = (CONFIGS / "unlearn_digits.yaml").read_text().replace("losses.GradDiff", "losses.NPOO")
    config.write_text(text)
    line = one_error_line(["fit", "--config", str(config)], capsys)
    assert line.startswith(
        "error: unknown class_path 'mcu_lightning.losses.NPOO' (model.init_args.loss); did you mean "
        "'mcu_lightning.losses.NPO'"
    )


def test_unknown_class_path_on_the_command_line(capsys, endpoints) -> None:
    line = one_error_line(
        _curve(endpoints["a"], endpoints["b"], "--model.init_args.shape.class_path", "mcu_lightning.curves.Bezeir"),
        capsys,
    )
    assert "'mcu_lightning.curves.Bezeir' (model.init_args.shape); did you mean 'mcu_lightning.curves.Bezier'" in line


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("text", "is not a model"),
        ("architecture", "net.1.weight"),
        ("same", "identical"),
        ("nan", "non-finite values (NaN or inf) in 'net.1.weight'"),
        ("num_bends", "num_bends >= 2"),
        ("eval_ts", "outside [0, 1]"),
    ],
)
def test_curve_inputs_fail_before_training(case: str, expected: str, endpoints, tmp_path: Path, capsys) -> None:
    a, b = endpoints["a"], endpoints["b"]
    args = {
        "missing": _curve(a, tmp_path / "nowhere"),
        "text": _curve(a, endpoints["text"]),
        "architecture": _curve(a, endpoints["narrow"]),
        "same": _curve(a, a),
        "nan": _curve(a, endpoints["nan"]),
        "num_bends": _curve(a, b, "--model.init_args.shape.init_args.num_bends", "1"),
        "eval_ts": _curve(a, b, "--model.init_args.eval_ts=[0.0, 1.5]"),
    }[case]
    line = one_error_line([*args, "--trainer.default_root_dir", str(tmp_path)], capsys)
    assert expected in line
    if case == "architecture":  # the first differing tensor and both shapes
        assert "(16, 64)" in line.replace("[", "(").replace("]", ")") and "(8, 64)" in line.replace("[", "(").replace(
            "]", ")"
        )
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_reference_that_cannot_be_loaded(endpoints, tmp_path: Path, capsys) -> None:
    args = [
        "fit",
        "--config",
        str(CONFIGS / "unlearn_digits.yaml"),
        "--model.init_args.model",
        str(endpoints["a"]),
        "--model.init_args.loss",
        "mcu_lightning.losses.NPO",
        "--model.init_args.reference",
        str(tmp_path / "no_reference"),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    line = one_error_line(args, capsys)
    assert "NPO needs a reference model" in line and "no_reference" in line


def test_non_finite_starting_model_is_refused(endpoints, tmp_path: Path, capsys) -> None:
    args = [
        "fit",
        "--config",
        str(CONFIGS / "unlearn_digits.yaml"),
        "--model.init_args.model",
        str(endpoints["nan"]),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    line = one_error_line(args, capsys)
    assert "non-finite" in line and "net.1.weight" in line


def test_study_curve_naming_an_undefined_endpoint() -> None:
    study = Study(
        name="bad",
        data={"class_path": "mcu_lightning.data.ClassificationDataModule"},
        evaluation=Evaluation(suite={"class_path": "mcu_lightning.metrics.ClassificationSuite"}),
        base=ModelStage(model={"class_path": "mcu_lightning.models.MLP"}),
        endpoints=[Endpoint(name="ga", loss={"class_path": "mcu_lightning.losses.GradAscent"})],
        curves=[CurveSpec(name="c", endpoints=["ga", "npo"])],
    )
    with pytest.raises(
        ValueError, match="curve 'c' names endpoint 'npo' that is not defined; defined: base, ga, oracle"
    ):
        StudyRunner(study)
