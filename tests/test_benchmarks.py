"""Smoke tests of the benchmarks: each runs at tiny sizes, prints its ratio lines and writes its JSON.

Not timed tests: no speed is asserted (a shared CI machine cannot promise one), only that every figure is
measured, finite and positive, and that the report renders from the files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from benchmarks import (
    cli_startup,
    curve_eval,
    curve_memory,
    curve_objectives,
    curve_step,
    ensemble_plane,
    report,
    study,
    unlearn_step,
)
from benchmarks._common import paired_ratio
from benchmarks.curve_memory import TensorBytes

ROOT = Path(__file__).resolve().parent.parent
TINY_LM = ["--vocab-size", "64", "--hidden-size", "16"]


def _rows(out: Path, name: str) -> list[dict]:
    data = json.loads(out.read_text())
    assert data["benchmark"] == name
    assert data["environment"]["device"] == "cpu"
    return data["rows"]


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_paired_ratio_is_the_median_of_pair_ratios():
    assert paired_ratio([2.0, 3.0, 30.0], [1.0, 3.0, 10.0]) == 2.0  # pairs 2, 1, 3
    assert paired_ratio([1.1, 5.5], [1.0, 5.0]) == pytest.approx(1.1)  # a burst in both members cancels
    with pytest.raises(ValueError, match="equally long"):
        paired_ratio([1.0], [1.0, 2.0])


def test_curve_step_prints_ratios(tmp_path, capsys):
    out = tmp_path / "curve_step.json"
    curve_step.main(
        [
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--batch-sizes",
            "1,2",
            "--image-size",
            "8",
            "--width",
            "4",
            "--lm-batch-sizes",
            "1",
            "--seq-len",
            "8",
            "--layers",
            "1",
            "--lora",
            "2",
            *TINY_LM,
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert printed.count("curve_step ") == 4 and "curve/plain: ratio" in printed
    rows = _rows(out, "curve_step")
    assert [r["case"] for r in rows] == ["conv batch 1", "conv batch 2", "lm batch 1 seq 8", "lora batch 1 seq 8 r 2"]
    assert all(_positive(r["ratio"]) for r in rows)
    assert all(math.isclose(r["ratio_of_medians"], r["curve_ms"] / r["plain_ms"]) for r in rows)


def test_curve_eval_prints_ratios(tmp_path, capsys):
    out = tmp_path / "curve_eval.json"
    curve_eval.main(
        [
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--points",
            "3",
            "--eval-batches",
            "1",
            "--batch-size",
            "2",
            "--image-size",
            "8",
            "--lm-batch-size",
            "1",
            "--seq-len",
            "8",
            *TINY_LM,
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "curve_eval conv, 3 t x 1 batches: curve/plain: ratio" in printed
    assert "batch-major/plain: ratio" in printed
    rows = _rows(out, "curve_eval")
    assert len(rows) == 2 and all(_positive(r["ratio"]) and _positive(r["batch_major_ratio"]) for r in rows)


def test_tensor_bytes_counts_live_storages():
    import torch

    x = torch.ones(1000)
    with TensorBytes(known={x.untyped_storage().data_ptr()}) as counter:
        y = x * 2  # 4000 bytes
        z = y + 1  # 8000 live
        del y  # 4000 live
        w = z.view(10, 100)  # a view: no new bytes
        del z
        assert counter.current == 4000
        del w
    assert counter.peak == 8000 and counter.current == 0


def test_curve_memory_matches_prediction(tmp_path, capsys):
    out = tmp_path / "curve_memory.json"
    curve_memory.main(
        [
            "--batch-size",
            "2",
            "--image-size",
            "8",
            "--lm-batch-size",
            "1",
            "--seq-len",
            "8",
            "--layers",
            "1",
            *TINY_LM,
            "--out",
            str(out),
        ]
    )
    assert "curve/plain peak ratio" in capsys.readouterr().out
    for row in _rows(out, "curve_memory"):
        # the curve holds more than the plain model (two endpoints, AdamW state of the control point) but no extra copy
        assert row["curve_peak"] > row["plain_peak"] > 0
        assert 0.8 < row["curve_vs_predicted"] < 1.2, row
        assert row["extra_model_copies"] < 1.0


def test_unlearn_step_prints_ratios(tmp_path, capsys):
    out = tmp_path / "unlearn_step.json"
    unlearn_step.main(
        [
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--layers",
            "1",
            *TINY_LM,
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "unlearn_step GradDiff: Trainer/loop tokens/s ratio" in printed and "unlearn_step NPO:" in printed
    rows = _rows(out, "unlearn_step")
    assert [r["loss"] for r in rows] == ["GradDiff", "NPO"]
    assert all(_positive(r["trainer_tokens_per_s"]) and _positive(r["loop_tokens_per_s"]) for r in rows)


@pytest.mark.slow
def test_study_reads_stage_markers(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "configs" / "quickstart" / "experiment.yaml").read_text())
    config["base"]["train"]["max_epochs"] = 1
    config["endpoints"] = config["endpoints"][:2]
    for endpoint in config["endpoints"]:
        endpoint["train"]["max_epochs"] = 1
    config["curves"] = [{**config["curves"][0], "train": {"max_steps": 2}}]
    config["evaluation"]["eval_ts"] = 2
    config["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "study.json"
    study.main(["--config", str(path), "--keep", str(tmp_path / "run"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "stages/wall ratio" in printed
    rows = {r["case"]: r for r in _rows(out, "study")}
    assert {"base:base", "oracle:oracle", "endpoint:graddiff", "endpoint:npo", "curve:graddiff-npo"} <= set(rows)
    assert rows["base:base"]["fit_seconds"] > 0 and rows["base:base"]["test_seconds"] > 0
    assert 0 < rows["total"]["ratio"] <= 1


def test_cli_startup_times_both_helps(tmp_path, capsys):
    out = tmp_path / "cli_startup.json"
    cli_startup.main(["--repeats", "1", "--warmup", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "mcu --help:" in printed and "mcu fit --help:" in printed and "ratio" in printed
    rows = {r["case"]: r for r in _rows(out, "cli_startup")}
    assert _positive(rows["mcu --help"]["seconds"]) and _positive(rows["mcu fit --help"]["seconds"])
    assert _positive(rows["ratio"]["ratio"])


def test_ensemble_plane_prints_cost_per_member_and_per_grid_point(tmp_path, capsys):
    out = tmp_path / "ensemble_plane.json"
    ensemble_plane.main(
        ["--repeats", "1", "--warmup", "0", "--members", "2", "--grid", "2", "--eval-batches", "1", "--batch-size",
         "2", "--image-size", "8", "--lm-batch-size", "1", "--seq-len", "8", *TINY_LM, "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("ensemble per member/plain: ratio") == 2 and printed.count("plane per grid point/plain") == 2
    rows = _rows(out, "ensemble_plane")
    assert [r["model"] for r in rows] == ["conv", "lm"] and [r["batchnorm"] for r in rows] == [True, False]
    assert all(_positive(r["ensemble_member_ratio"]) and _positive(r["plane_point_ratio"]) for r in rows)


def test_report_renders_every_section(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    env = {"torch": "x", "device": "cpu", "threads": 1}
    row = {
        "case": "conv batch 1",
        "params": 10,
        "curve_ms": 1.1,
        "plain_ms": 1.0,
        "ratio": 1.1,
        "target": 1.1,
        "meets_target": True,
    }
    (results / "curve_step.json").write_text(json.dumps({"benchmark": "curve_step", "environment": env, "rows": [row]}))
    out = report.main(["--results", str(results), "--out", str(tmp_path / "perf.md"), "--notes", str(tmp_path / "x")])
    text = out.read_text()
    assert "| conv batch 1 | 10 | 1.10 | 1.00 | 1.100 | <= 1.10 | yes |" in text
    assert "Not measured yet: run `python -m benchmarks.study`" in text


def test_curve_objectives_prints_values_and_ratios(tmp_path, capsys):
    out = tmp_path / "curve_objectives.json"
    rows = curve_objectives.main(
        ["--repeats", "1", "--warmup", "0", "--losses", "SalUn,RMU", "--hidden-size", "16", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert [r["case"] for r in _rows(out, "curve_objectives")] == ["RMU", "SalUn"]
    for row in rows:
        assert all(math.isfinite(row[key]) for key in ("objective_t0", "objective_t05", "objective_t1"))
        assert _positive(row["ratio"]) and _positive(row["curve_ms"]) and _positive(row["endpoint_ms"])
        assert f"curve_objectives {row['case']}: objective after 3 steps at t=0 " in printed
        assert f"curve_objectives {row['case']}: curve/endpoint step: ratio " in printed
    assert all(0 < row["on_curve"] <= row["params"] for row in rows)  # the curve holds what the loss trains
    with pytest.raises(SystemExit, match="NoSuchLoss"):
        curve_objectives.main(["--losses", "NoSuchLoss", "--out", str(out)])


def test_during_training_prints_the_extra_seconds_per_epoch(tmp_path, capsys):
    from benchmarks import during_training

    out = tmp_path / "during_training.json"
    (row,) = during_training.main(["--epochs", "2", "--warmup", "0", "--no-rouge", "--out", str(out)])
    assert "evaluation during training: +" in capsys.readouterr().out
    assert _rows(out, "during_training") == [row]
    assert len(row["eval_s"]) == len(row["train_s"]) == 2 and all(map(_positive, row["eval_s"] + row["train_s"]))


def test_the_lm_benchmarks_take_a_real_model_by_flag(tmp_path):
    """``--model`` times the given causal LM (here a saved folder; `smollm2-135m-instruct` at real size) alone,
    with its own vocabulary, in the four benchmarks the issue names."""
    from mcu_lightning.models import tiny_causal_lm

    folder = tmp_path / "lm"
    tiny_causal_lm(tokenizer=None, vocab_size=96, hidden_size=16, intermediate_size=32).save_pretrained(folder)
    model = ["--model", str(folder), "--seq-len", "16"]
    fast = ["--repeats", "1", "--warmup", "1"]
    rows = curve_step.main([*fast, *model, "--lm-batch-sizes", "2", "--out", str(tmp_path / "s.json")])
    assert [r["model"] for r in rows] == ["lm"] and rows[0]["params"] == sum(
        p.numel()
        for p in tiny_causal_lm(tokenizer=None, vocab_size=96, hidden_size=16, intermediate_size=32).parameters()
    )
    rows = curve_eval.main([*fast, *model, "--points", "2", "--eval-batches", "1", "--out", str(tmp_path / "e.json")])
    assert len(rows) >= 1 and all("conv" not in r["case"] for r in rows)
    rows = curve_memory.main([*model, "--out", str(tmp_path / "m.json")])
    assert [r["case"].split()[0] for r in rows] == ["lm"]
    args = ["--steps", "3", "--repeats", "1", "--warmup", "1", "--batch-size", "2", *model]
    rows = unlearn_step.main([*args, "--out", str(tmp_path / "u.json")])
    assert rows and json.loads((tmp_path / "u.json").read_text())["args"]["model"] == str(folder)


def test_report_puts_the_tiny_and_the_real_lm_side_by_side(tmp_path):
    results = tmp_path / "results"
    (results / "real").mkdir(parents=True)
    env = {"torch": "x", "device": "cpu", "threads": 2}

    def write(folder, model, ratio, params):
        row = {"case": "lm batch 4 seq 128", "model": "lm", "params": params, "curve_ms": 2.0, "plain_ms": 1.0,
               "ratio": ratio, "target": 1.1, "meets_target": ratio <= 1.1}  # fmt: skip
        data = {"benchmark": "curve_step", "environment": env, "args": {"model": model}, "rows": [row]}
        (folder / "curve_step.json").write_text(json.dumps(data))

    write(results, None, 0.99, 10)
    write(results / "real", "smollm2-135m-instruct", 1.25, 134_515_008)
    text = report.main(["--results", str(results), "--out", str(tmp_path / "p.md"), "--notes", str(tmp_path / "x")])
    text = text.read_text()
    section = text[text.index("## Tiny models vs a real LM") :]
    assert "| `curve_step` | tiny 10 | lm batch 4 seq 128 | 0.990 | <= 1.10 | yes |" in section
    assert (
        "| `curve_step` | smollm2-135m-instruct 134,515,008 | lm batch 4 seq 128 | 1.250 | <= 1.10 | **no** |"
        in section
    )
    assert "| `unlearn_step` | real | not measured |" in section
