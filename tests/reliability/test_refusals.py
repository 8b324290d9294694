"""User errors that used to end in a traceback (or, in a study, only when their stage started) are one
``error:`` line and exit status 2, before any stage or training starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import main
from mcu_lightning.data.qa.rows import MissingFieldError
from mcu_lightning.data.qa.tofu import load_tofu_split
from tests.reliability.helpers import CONFIGS, mlp_endpoint, one_error_line
from tests.study.test_experiment import reduced_study


def _fail(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()  # what earlier commands of the test printed
    return one_error_line(args, capsys)


def _lr(value: float) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        raw["endpoints"][1]["train"]["optimizer"]["init_args"]["lr"] = value

    return edit


def _curve_steps(raw: dict[str, Any]) -> None:
    raw["curves"][-1]["train"]["max_steps"] = -5


def _base_epochs(raw: dict[str, Any]) -> None:
    raw["base"]["train"]["max_epochs"] = -3


def _both_lengths(raw: dict[str, Any]) -> None:
    raw["endpoints"][0]["train"].update(max_steps=50, max_epochs=3)


def _trainer_length(raw: dict[str, Any]) -> None:
    raw["trainer"]["max_epochs"] = 4


def _endpoint_batch(raw: dict[str, Any]) -> None:
    raw["endpoints"][0]["train"]["batch_size"] = 0


def _data_batch(raw: dict[str, Any]) -> None:
    raw["data"]["init_args"]["batch_size"] = 0


STUDY_ERRORS = {
    "nan lr": (_lr(float("nan")), "endpoint 'npo' train.optimizer.init_args.lr=nan must be a finite number above 0"),
    "negative lr": (_lr(-0.001), "endpoint 'npo' train.optimizer.init_args.lr=-0.001 must be a finite number above 0"),
    "zero lr": (_lr(0.0), "lr=0.0 must be a finite number above 0"),
    "curve max_steps": (_curve_steps, "curve 'base-graddiff' train.max_steps=-5 must be -1 (no limit) or at least 0"),
    "base max_epochs": (_base_epochs, "base.train.max_epochs=-3 must be -1 (no limit) or at least 0"),
    "both lengths": (_both_lengths, "endpoint 'graddiff' train sets both max_steps=50 and max_epochs=3"),
    "trainer length": (_trainer_length, "trainer.max_epochs would be ignored: give each stage its length"),
    "endpoint batch": (_endpoint_batch, "endpoint 'graddiff' train.batch_size=0 must be a positive whole number"),
    "data batch": (_data_batch, "data.init_args.batch_size=0 must be a positive whole number"),
}


@pytest.mark.parametrize("case", list(STUDY_ERRORS))
def test_study_settings_are_checked_for_every_stage_up_front(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, expected = STUDY_ERRORS[case]
    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    edit(raw)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    line = _fail(["experiment", "--config", str(config), "--progress", "false"], capsys)
    assert expected in line
    assert not (tmp_path / "runs" / "quickstart" / "oracle").exists(), "a stage started"


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = reduced_study(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be made under a file, even by root
    line = _fail(["experiment", "--config", str(config), "--output_dir", str(blocker / "runs")], capsys)
    assert f"output folder '{blocker / 'runs' / 'quickstart'}' is not writable" in line
    assert "set output_dir to a folder you can write" in line


def test_traceback_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    _curve_steps(raw)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("MCU_TRACEBACK", "1")
    with pytest.raises(ValueError, match="max_steps=-5"):
        main(["experiment", "--config", str(config)])


def test_report_on_a_folder_without_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "somewhere").mkdir()
    line = _fail(["report", str(tmp_path / "somewhere")], capsys)
    assert "is not one study's folder (it has no study.json)" in line and "runs/<name>" in line
    assert not (tmp_path / "somewhere" / "report").exists()


def test_qa_file_row_missing_a_field_names_file_line_and_field(tmp_path: Path) -> None:
    rows = [{"question": "Who?", "answer": "Ana"}, {"question": "Where?"}, {"question": "When?", "answer": "1990"}]
    (tmp_path / "forget10.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(MissingFieldError) as info:
        load_tofu_split("forget10", tmp_path)
    message = str(info.value)
    assert f"TOFU file '{tmp_path / 'forget10.json'}' line 2: field 'answer' is missing" in message
    assert "NoneType" not in message and "type" not in message


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-step digits curve, checkpointed: what the resume refusals start from."""
    root = tmp_path_factory.mktemp("curve_run")
    a, b = mlp_endpoint(root / "a", 1), mlp_endpoint(root / "b", 2)
    args = [
        "fit",
        "--config",
        str(CONFIGS / "curve_digits.yaml"),
        f"--model.init_args.endpoints=[{a}, {b}]",
        "--trainer.default_root_dir",
        str(root / "run"),
        "--trainer.max_epochs",
        "1",
        "--trainer.max_steps",
        "2",
    ]
    main(args)
    return {"args": args, "last": root / "run" / "checkpoints" / "last.ckpt"}


def test_resume_with_another_number_of_bends_names_both(
    curve_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*curve_run["args"], "--model.init_args.shape.init_args.num_bends", "4", "--trainer.max_steps", "3"]
    line = _fail([*args, "--ckpt_path", str(curve_run["last"])], capsys)
    assert "made with Bezier(num_bends=3) and this curve is Bezier(num_bends=4)" in line


def test_truncated_checkpoint_is_named(
    curve_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "last.ckpt"
    broken.write_bytes(curve_run["last"].read_bytes()[:2048])
    line = _fail([*curve_run["args"], "--trainer.max_steps", "3", "--ckpt_path", str(broken)], capsys)
    assert f"checkpoint '{broken}' cannot be resumed from (truncated or not a checkpoint" in line
    assert "delete it to start over" in line
    line = _fail([*curve_run["args"], "--ckpt_path", str(tmp_path / "nothing.ckpt")], capsys)
    assert "does not exist" in line


@pytest.mark.parametrize(("lr", "expected"), [(".nan", "rate: nan"), ("-0.5", "rate: -0.5"), ("0.0", "rate is 0.0")])
def test_mcu_fit_refuses_a_bad_learning_rate(
    lr: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = mlp_endpoint(tmp_path / "base", 0)
    args = [
        "fit",
        "--config",
        str(CONFIGS / "unlearn_digits.yaml"),
        "--model.init_args.model",
        str(base),
        f"--model.init_args.optimizer.init_args.lr={lr}",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    ]
    line = _fail(args, capsys)
    assert f"learning {expected}" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_study_on_a_local_tofu_folder_checks_every_row_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from mcu_lightning.data.qa.fictitious import build_fictitious_tokenizer

    sample = Path(__file__).resolve().parents[1] / "fixtures" / "tofu_sample"
    folder = shutil.copytree(sample, tmp_path / "tofu")
    build_fictitious_tokenizer(folder).save_pretrained(tmp_path / "tokenizer")
    lines = (folder / "retain99.json").read_text().splitlines()
    row = json.loads(lines[2])
    del row["answer"]
    lines[2] = json.dumps(row)
    (folder / "retain99.json").write_text("\n".join(lines) + "\n")
    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["init_args"] = {
        "data": "tofu",
        "data_root": str(folder),
        "forget_split": "forget01",
        "tokenizer": str(tmp_path / "tokenizer"),
    }
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    line = _fail(["experiment", "--config", str(config), "--progress", "false"], capsys)
    assert f"TOFU file '{folder / 'retain99.json'}' line 3: field 'answer' is missing" in line
    assert not (tmp_path / "runs" / "quickstart" / "oracle").exists(), "a stage started"


def test_a_curve_trains_for_the_length_its_config_gives(tmp_path: Path) -> None:
    """A curve that sets only max_epochs trains for those epochs (no 100-step default inherited); one that sets
    neither keeps the default 100 steps; the Trainer gets exactly that."""
    from mcu_lightning.study.runner import StudyRunner
    from mcu_lightning.study.schema import CURVE_DEFAULT_STEPS, parse_study

    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["curves"][0]["train"] = {"max_epochs": 2, "optimizer": raw["curves"][0]["train"]["optimizer"]}
    raw["curves"][1].pop("train")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    study, _ = parse_study(["--config", str(config)])
    epochs, default = study.curves[0].train, study.curves[1].train
    assert (epochs.max_epochs, epochs.max_steps) == (2, -1)
    assert (default.max_epochs, default.max_steps) == (None, CURVE_DEFAULT_STEPS)
    trainer = StudyRunner(study).context.trainer(tmp_path / "stage", epochs)
    assert (trainer.max_epochs, trainer.max_steps) == (2, -1)


def test_a_curve_from_the_base_to_a_lora_endpoint_lives_in_lora_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The base is the zero adapter of a LoRA endpoint: a curve base -> LoRA endpoint is a LoRA-space curve on the
    base; the oracle (another full model) and a LoRA endpoint still do not connect."""
    from mcu_lightning.study.runner import StudyRunner
    from mcu_lightning.study.schema import parse_study
    from mcu_lightning.study.stages import is_lora_curve

    config = reduced_study(tmp_path)
    raw = yaml.safe_load(config.read_text())
    for endpoint in raw["endpoints"]:
        endpoint["lora"] = {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}
    for curve in raw["curves"]:
        curve.pop("init", None)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    study, _ = parse_study(["--config", str(config)])
    runner = StudyRunner(study)
    runner.validate()
    assert [curve.endpoints[0] for curve in study.curves] == ["graddiff", "base"]
    assert [is_lora_curve(runner.context, curve) for curve in study.curves] == [True, True]
    raw["curves"][1]["endpoints"] = ["oracle", "graddiff"]
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    line = _fail(["experiment", "--config", str(config), "--progress", "false"], capsys)
    assert "connects a LoRA endpoint to a full-weight one ['oracle', 'graddiff']" in line
