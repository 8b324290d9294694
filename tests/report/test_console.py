"""The study's console: one line per stage plus progress bars, no warning the project could prevent.

The end-to-end test runs a reduced quickstart as a user would (``python -m mcu_lightning.cli experiment``, a
subprocess, so the console is the real one) and reads everything it printed.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mcu_lightning.callbacks.progress import StudyProgressBar
from mcu_lightning.core.clock import StudyClock
from mcu_lightning.report.console import headline, stage_purpose

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart" / "experiment.yaml"
STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (oracle|base|endpoint|curve) (\S+)  (.+?)  (\d+\.\d) s(  .+)?$")
# A warning as Python prints it ("UserWarning: ..."), or as Lightning prints its own ("file.py:321: message")
WARNING = re.compile(r"Warning|\.py:\d+: ")


def tiny_study(tmp_path: Path) -> Path:
    """The quickstart with one epoch per model, one endpoint, one 2-step curve tested at 2 points."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["base"]["model"]["init_args"].update(hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    raw["base"]["train"]["max_epochs"] = 1
    raw["endpoints"] = raw["endpoints"][:1]
    raw["endpoints"][0]["train"]["max_epochs"] = 1
    raw["curves"] = [{**raw["curves"][1], "train": {"max_steps": 2}}]  # base -> graddiff
    raw["evaluation"]["eval_ts"] = 2
    raw["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_a_study_prints_one_line_per_stage_and_no_preventable_warning(tmp_path: Path) -> None:
    config = tiny_study(tmp_path)
    env = {
        **os.environ,
        "MCU_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "default",  # every warning once per place, as a user's shell shows them
    }
    env.pop("MCU_VERBOSE", None)
    env.pop("MCU_NUM_THREADS", None)  # the default the console's first line states
    done = subprocess.run(
        [sys.executable, "-m", "mcu_lightning.cli", "experiment", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout.splitlines() + done.stderr.splitlines()
    warned = [line for line in console if WARNING.search(line)]
    assert not warned, "preventable warnings on the console:\n" + "\n".join(warned)
    assert not re.search(r"Epoch \d+/-\d", done.stdout)  # a step-bounded fit counts steps, not epochs
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    header = [line for line in itertools.takewhile(lambda line: not STAGE_LINE.match(line), lines)]
    stages, report = lines[len(header) : -1], lines[-1]
    # before the first stage: what the evaluation will cost, and the thread count chosen from the model's size
    assert [line.split(":")[0] for line in header] == ["evaluation", "mcu"], header
    assert header[1].startswith("mcu: 1 intra-op CPU thread (a model of "), header
    assert report.startswith("report: ") and report.endswith("summary.md")
    parsed = [STAGE_LINE.match(line) for line in stages]
    strays = [line for line, match in zip(stages, parsed, strict=True) if not match]
    assert not strays, "lines that are not a stage's line:\n" + "\n".join(strays)
    assert [(m[3], m[4]) for m in parsed] == [
        ("oracle", "oracle"),
        ("base", "base"),
        ("endpoint", "graddiff"),
        ("curve", "base-graddiff"),
    ]
    assert all(m[2] == "4" for m in parsed)
    assert all(m[7] for m in parsed), "every finished stage shows its headline metric"
    assert "forget_quality 1" in parsed[0][7]  # the oracle against itself, not a warning about its oracle
    assert "barrier vs line" in parsed[3][7]


def test_study_clock_estimates_what_is_left_from_the_stages_run() -> None:
    clock = StudyClock(total=4)
    assert clock.remaining() is None  # nothing finished: no estimate
    clock.durations = [10.0, 20.0]
    clock.start(3, "[3/4] endpoint x")
    left = clock.remaining()
    assert left is not None and 29.0 < left <= 30.0  # two stages (3 and 4) at the 15 s mean, less a moment


def _bar(max_steps: int, max_epochs: int | None) -> StudyProgressBar:
    bar = StudyProgressBar()
    bar._trainer = SimpleNamespace(max_steps=max_steps, max_epochs=max_epochs)  # what the descriptions read
    return bar


@pytest.mark.parametrize(
    ("max_steps", "max_epochs", "epoch", "expected"),
    [(60, -1, 29, "step"), (60, None, 3, "step"), (-1, 5, 0, "epoch 1/5"), (-1, 5, 4, "epoch 5/5")],
)
def test_progress_counts_steps_of_a_step_bounded_fit_and_epochs_from_one(
    max_steps: int, max_epochs: int | None, epoch: int, expected: str
) -> None:
    assert _bar(max_steps, max_epochs)._get_train_description(epoch) == expected


def test_headline_shows_the_first_finite_main_metrics() -> None:
    metrics: dict[str, Any] = {"forget_quality": float("nan"), "model_utility": 0.5, "forget/prob": 0.125, "x": 1.0}
    assert headline(metrics, ["forget_quality", "model_utility", "forget/prob", "retain/prob"]) == (
        "model_utility 0.5  forget/prob 0.125"
    )


def test_stage_purpose_names_what_each_stage_does() -> None:
    from mcu_lightning.study.schema import parse_study

    study, _ = parse_study(["--config", str(QUICKSTART)])
    assert stage_purpose("oracle", "oracle", study) == "train the oracle on retain+world_facts+real_authors"
    assert stage_purpose("endpoint", "npo", study) == "unlearn the base with NPO"
    assert stage_purpose("curve", "graddiff-npo", study).startswith("fit a Bezier curve graddiff -> npo")


def test_a_training_free_curve_is_a_test_line_whenever_the_schema_calls_it_one() -> None:
    """A curve the schema calls a training-free path (``is_path``: ``path``, ``fixed_bends`` or a two-bend shape
    such as ``shape: Linear``) is only tested, and its console line says so; a Bezier curve's says "fit"."""
    from dataclasses import replace

    from mcu_lightning.study.schema import is_path, parse_study

    study, _ = parse_study(["--config", str(QUICKSTART)])
    fitted = study.curves[0]
    a, b = fitted.endpoints
    points = study.evaluation.eval_ts
    lines = {}
    for name in ("Linear", "Slerp", "Bezier"):
        curve = replace(fitted, shape={"class_path": f"mcu_lightning.curves.{name}"})
        study.curves[0] = curve
        lines[name] = (is_path(curve), stage_purpose("curve", curve.name, study))
    assert lines == {
        "Linear": (True, f"test the Linear path {a} -> {b} at {points} points of t (no training)"),
        "Slerp": (True, f"test the Slerp path {a} -> {b} at {points} points of t (no training)"),
        "Bezier": (False, f"fit a Bezier curve {a} -> {b}, test at {points} points of t"),
    }


def test_quiet_drops_lightnings_start_up_lines_by_message_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from mcu_lightning.core.quiet import quiet_third_party

    monkeypatch.delenv("MCU_VERBOSE", raising=False)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    monkeypatch.setattr(logger, "filters", [])
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per logger

    def shown(message: str) -> bool:
        return bool(logger.filter(logging.LogRecord(logger.name, logging.INFO, __file__, 1, message, None, None)))

    assert not shown("GPU available: False, used: False") and not shown("💡 Tip: For seamless cloud logging")
    assert shown("Restored all states from the checkpoint at last.ckpt")  # what a resume says still prints
    assert len(logger.filters) == 2


def test_quiet_hides_the_deprecation_peft_triggers_when_it_wraps_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from peft import LoraConfig, get_peft_model

    from mcu_lightning.core.quiet import quiet_third_party
    from mcu_lightning.models import tiny_causal_lm

    monkeypatch.delenv("MCU_VERBOSE", raising=False)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    with warnings.catch_warnings(record=True) as loud:
        warnings.simplefilter("always")
        get_peft_model(tiny_causal_lm(tokenizer=None, vocab_size=32, hidden_size=16, intermediate_size=32), config)
    assert any("is_gradient_checkpointing" in str(w.message) for w in loud), "nothing to hide: the test shows nothing"
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        quiet_third_party()
        get_peft_model(tiny_causal_lm(tokenizer=None, vocab_size=32, hidden_size=16, intermediate_size=32), config)
    assert not [w for w in quiet if "is_gradient_checkpointing" in str(w.message)]


#: What `mcu fit` and `mcu test` printed before they had the study's quiet console (issue 31).
NOISE = (
    "Tip",
    "LeafSpec",
    "transfer_batch_to_device",
    "Loading weights",
    "DataLoader 0",
    "Test metric",
    "deprecated",
    "Trainable params",
)


@pytest.mark.slow
def test_fit_and_test_print_the_same_quiet_console_as_a_study(tmp_path: Path) -> None:
    """`mcu fit` then `mcu test` of an unlearning run: the thread line first, then progress and the compact metric
    table; no third-party tip, deprecation, per-loader metric table or weight-loading bar."""
    from mcu_lightning.models import save_model, tiny_causal_lm

    model = save_model(tiny_causal_lm(tokenizer="fictitious", hidden_size=16, intermediate_size=32), tmp_path / "m")
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "max_steps": 2, "enable_progress_bar": False},
        "model": {
            "class_path": "mcu_lightning.modules.UnlearningModule",
            "init_args": {
                "model": str(model),
                "loss": {"class_path": "mcu_lightning.losses.NPO"},
                "suite": {
                    "class_path": "mcu_lightning.metrics.QASuite",
                    "init_args": {"max_new_tokens": 2, "oracle": "self"},
                },
                "output_dir": str(tmp_path / "out"),
            },
        },
        "data": {
            "class_path": "mcu_lightning.data.QADataModule",
            "init_args": {"tokenizer": "fictitious", "batch_size": 4, "eval_batch_size": 16, "max_length": 48},
        },
    }
    path = tmp_path / "unlearn.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "MCU_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "default",
    }
    for name in ("MCU_VERBOSE", "MCU_NUM_THREADS"):
        env.pop(name, None)
    for command in ("fit", "test"):
        done = subprocess.run(
            [sys.executable, "-m", "mcu_lightning.cli", command, "--config", str(path), "--seed_everything", "0"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        console = done.stdout.splitlines() + done.stderr.splitlines()
        noisy = [line for line in console if WARNING.search(line) or any(word in line for word in NOISE)]
        assert not noisy, f"mcu {command} printed:\n" + "\n".join(noisy)
        first = next(line for line in done.stderr.splitlines() if line.strip())
        assert first.startswith("mcu: 1 intra-op CPU thread"), (command, first)
    assert re.search(r"^forget/prob\s+\S+$", done.stdout, re.MULTILINE)  # the compact table is still there


def test_a_curve_stage_line_says_no_barrier_instead_of_a_zero_at_t0(tmp_path: Path) -> None:
    import json

    from mcu_lightning.report.console import stage_headline

    rows = {
        "forget_quality": {"barrier_vs_line": 0.25, "t_barrier_vs_line": 0.4},
        "model_utility": {"barrier_vs_line": 0.0, "t_barrier_vs_line": 0.0},
    }
    (tmp_path / "barrier_summary.json").write_text(json.dumps({"metrics": rows}))
    line = stage_headline("curve", tmp_path, ["forget_quality", "model_utility"])
    assert line == "barrier vs line: forget_quality 0.25 (t=0.40), model_utility no barrier"
