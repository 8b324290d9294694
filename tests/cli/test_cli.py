"""``mcu`` as a user runs it: help, ``--print_config`` round trips, and bad class paths failing before training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcu_lightning.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DIGITS = CONFIGS / "quickstart" / "finetune_digits.yaml"
UNLEARN_NPO = CONFIGS / "quickstart" / "unlearn_npo.yaml"
STUDY = CONFIGS / "quickstart" / "experiment.yaml"


def _exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], ["fit", "validate", "test", "predict", "experiment", "report"]),
        (
            ["fit", "--help"],
            [
                *("--model", "--data", "--trainer", "--print_config", "mcu_lightning.UnlearningModule"),
                *("mcu_lightning.CurveModule", "mcu_lightning.FineTuneModule", "mcu_lightning.QADataModule"),
            ],
        ),
        (["experiment", "--help"], ["--endpoints", "--curves", "--only", "--print_config"]),
        (["report", "--help"], ["run_dir"]),
        (["grid", "--help"], ["--forget_splits", "--contrasts", "--seeds", "--splits", "--print_config"]),
    ],
    ids=["mcu", "fit", "experiment", "report", "grid"],
)
def test_help_exits_zero_and_lists_the_options(args: list[str], expected: list[str], capsys) -> None:
    assert _exit_code(args) == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out, f"`mcu {' '.join(args)}` does not mention {word}"


def _subprocess(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


def test_mcu_help_lists_every_command_once_without_importing_the_stack() -> None:
    code = (
        "import json, sys\n"
        "from mcu_lightning.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "heavy = {'torch', 'lightning', 'pytorch_lightning', 'jsonargparse', 'transformers'}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & heavy)))\n"
    )
    *usage, imported = _subprocess(code).stdout.strip().splitlines()
    assert json.loads(imported) == []  # the listing answers from cli.py alone
    listed = [line.split()[0] for line in usage if line.startswith("  ") and line.split()]
    assert listed == list(COMMANDS)
    assert set(COMMANDS) >= {"fit", "validate", "test", "predict", "experiment", "report", "export"}
    assert all(COMMANDS[name] in "\n".join(usage) for name in COMMANDS)  # one line each, with its description


def test_grid_help_answers_without_torch() -> None:
    code = (
        "import json, sys\n"
        "from mcu_lightning.cli import main\n"
        "try:\n    main(['grid', '--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'matplotlib'})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MCU_NUM_THREADS"}  # that one sets torch's threads
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "--contrasts" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_an_unknown_command_is_one_line_with_the_closest(capsys) -> None:
    assert _exit_code(["expriment"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown command 'expriment'; did you mean 'experiment'?"


def test_fit_print_config_round_trips(tmp_path: Path, capsys) -> None:
    assert _exit_code(["fit", "--config", str(UNLEARN_NPO), "--print_config"]) == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["model"]["class_path"] == "mcu_lightning.modules.UnlearningModule"
    assert config["model"]["init_args"]["loss"]["class_path"] == "mcu_lightning.losses.NPO"
    assert config["model"]["init_args"]["loss"]["init_args"]["beta"] == 0.1
    assert config["trainer"]["max_epochs"] == 5
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    assert _exit_code(["fit", "--config", str(saved), "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == config  # the printed YAML is itself a complete config


def test_experiment_print_config_round_trips(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    main(["experiment", "--config", str(STUDY), "--print_config"])
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["name"] == "quickstart"
    assert [e["name"] for e in config["endpoints"]] == ["graddiff", "npo"]
    saved = tmp_path / "study.yaml"
    saved.write_text(printed)
    main(["experiment", "--config", str(saved), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == config
    assert not (tmp_path / "runs").exists(), "--print_config must not run the study"


def test_grid_print_config_round_trips_and_keeps_specs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    grid = CONFIGS / "quickstart" / "paper_grid.yaml"
    main(["grid", "--config", str(grid), "--print_config"])
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    raw = yaml.safe_load(grid.read_text())
    assert config["methods"] == raw["methods"] and config["variants"] == raw["variants"]  # no defaults filled in
    saved = tmp_path / "grid.yaml"
    saved.write_text(printed)
    main(["grid", "--config", str(saved), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == config
    assert not (tmp_path / "runs").exists(), "--print_config must not run the grid"


def test_unknown_loss_fails_before_training_naming_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(UNLEARN_NPO.read_text())
    raw["model"]["init_args"]["loss"]["class_path"] = "mcu_lightning.losses.NPOO"
    raw["model"]["init_args"]["model"] = "does/not/exist"  # parsing must fail before anything is loaded
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert _exit_code(["fit", "--config", "bad.yaml"]) != 0
    assert "mcu_lightning.losses.NPOO" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], "nothing may be written before training"


def test_unknown_loss_in_a_study_fails_before_any_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(STUDY.read_text())
    raw["endpoints"][1]["loss"]["class_path"] = "mcu_lightning.losses.NPOO"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    assert _exit_code(["experiment", "--config", "study.yaml", "--progress", "false"]) != 0
    err = capsys.readouterr().err
    assert "unknown class_path 'mcu_lightning.losses.NPOO'" in err and "did you mean 'mcu_lightning.losses.NPO'" in err
    assert len(err.strip().splitlines()) == 1, "one clear line, no traceback"
    assert not (tmp_path / "runs").exists(), "no stage may start"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from mcu_lightning.models import save_model, tiny_causal_lm

    root = tmp_path_factory.mktemp("two_models")
    return [
        save_model(tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32, seed=s), root / f"m{s}")
        for s in (0, 1)
    ]


def _test_config(tmp_path: Path, model: dict) -> Path:
    data = {"tokenizer": "fictitious", "batch_size": 4, "eval_batch_size": 16, "max_length": 48}
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False},
        "model": model,
        "data": {
            "class_path": "mcu_lightning.data.QADataModule",
            "init_args": {**data, "eval_splits": ["forget", "retain", "holdout"]},
        },
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SUITE = {"class_path": "mcu_lightning.metrics.QASuite", "init_args": {"max_new_tokens": 2}}


def test_mcu_test_prints_the_headline_metrics(tmp_path: Path, two_models: list[Path], capsys) -> None:
    model = {
        "class_path": "mcu_lightning.modules.FineTuneModule",
        "init_args": {"model": str(two_models[0]), "suite": SUITE, "output_dir": str(tmp_path)},
    }
    main(["test", "--config", str(_test_config(tmp_path, model))])
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "test_metrics.json").read_text())["aggregates"]
    assert "test metrics" in out
    for name in ("forget/prob", "retain/prob", "forget/loss"):
        assert re.search(rf"^{re.escape(name)}\s+{saved[name]:.4g}$", out, re.MULTILINE), name


def test_mcu_test_on_a_curve_prints_its_barrier_summary(tmp_path: Path, two_models: list[Path], capsys) -> None:
    model = {
        "class_path": "mcu_lightning.modules.CurveModule",
        "init_args": {
            "endpoints": [str(p) for p in two_models],
            "eval_ts": 3,
            "suite": SUITE,
            "output_dir": str(tmp_path),
        },
    }
    main(["test", "--config", str(_test_config(tmp_path, model))])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "barrier_summary.json").read_text())["metrics"]
    assert "barriers along the curve" in out and "vs line" in out
    row = summary["forget/prob"]
    expected = rf"^forget/prob\s+{row['value_t0']:.4g}\s+{row['value_t1']:.4g}\s+{row['barrier_vs_line']:.4g}"
    assert re.search(expected, out, re.MULTILINE)


def test_a_bug_while_building_keeps_its_traceback_and_user_input_stays_one_line(tmp_path: Path, capsys) -> None:
    """A KeyError in a loss's constructor is a bug, not the user's input: `mcu fit` shows its traceback and says so
    (exit 1); an InputError from the same place is one `error:` line (exit 2)."""
    from tests.reliability.helpers import CONFIGS, REPO, mlp_endpoint, one_error_line

    base = mlp_endpoint(tmp_path / "base", 0)
    args = ["fit", "--config", str(CONFIGS / "unlearn_digits.yaml"), "--model.init_args.model", str(base)]
    args += ["--trainer.default_root_dir", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MCU_TRACEBACK": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_lightning.cli", *args, "--model.init_args.loss", "tests.cli.buggy.BuggyLoss"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'num_layers'" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: KeyError while building the module, data or trainer") and "report it" in last
    line = one_error_line([*args, "--model.init_args.loss", "tests.cli.buggy.RefusingLoss"], capsys)
    assert line == "error: RefusingLoss: margin=-1.0 must be 0 or more"


def test_experiment_help_describes_every_study_field_under_whole_headings() -> None:
    """No option shows only its type (`--data DATA (required, type: dict[str, Any])`), no heading is a docstring's
    first line cut mid-sentence."""
    from mcu_lightning.study.help import GROUP_TITLES
    from mcu_lightning.study.schema import study_parser

    parser = study_parser()
    bare = [a.dest for a in parser._actions if not (a.help or "").strip() or a.help == "Path to a configuration file."]
    assert bare == [], f"options without a description: {bare}"
    assert {key: group.title for key, group in parser.groups.items()} == GROUP_TITLES


def test_only_an_input_error_becomes_one_line_and_only_the_cli_prints_it(capsys) -> None:
    """Making a ``ConfigError`` prints nothing; ``exit_on_input_error`` prints it (exit 2) and lets a bug through."""
    from mcu_lightning.cli.errors import ConfigError, exit_on_input_error

    err = ConfigError("config file 'x.yaml' is empty")
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as info, exit_on_input_error():
        raise err
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: config file 'x.yaml' is empty\n"
    with pytest.raises(KeyError), exit_on_input_error():
        raise KeyError("num_layers")


def test_a_bug_while_a_study_is_checked_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A `ValueError` that is not an `InputError` (a bug) is not made the user's one line by `mcu experiment`."""
    import mcu_lightning.study.runner as runner

    def buggy(*args: object) -> None:
        raise ValueError("a bug, not the user's input")

    monkeypatch.delenv("MCU_TRACEBACK", raising=False)
    monkeypatch.setattr(runner, "validate_study", buggy)
    with pytest.raises(ValueError, match="a bug, not the user's input"):
        main(["experiment", "--config", str(STUDY), "--output_dir", str(tmp_path)])
