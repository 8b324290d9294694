"""``write_report`` / ``mcu report`` on a hand-made run directory: no training, every number checkable.

The curve's barrier numbers in ``summary.md`` must be the ones ``barrier_summary.json`` holds, which are
the formulas of ``curves/barrier.py`` applied to ``curve_metrics.csv``: for the lower-is-better series
retain/loss m = (1, 3, 2) at t = (0, 0.5, 1): vs_line = max_i [m_i - ((1 - t_i) m_0 + t_i m_1)] = 3 - 1.5 = 1.5,
vs_max_end = 3 - max(1, 2) = 1, vs_mean_end = 3 - 1.5 = 1.5. The directions are QASuite's: forget/loss is better
higher, so a curve whose midpoint relearned the forget set (its loss drops) does not "beat both endpoints" there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcu_lightning.cli import main
from mcu_lightning.metrics import QASuite
from mcu_lightning.report.curve import barrier_summaries, write_csv
from mcu_lightning.report.summary import write_report
from mcu_lightning.study.identity import output_hashes, outputs_digest

DIRECTION = QASuite().direction


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return toy_study_folder(tmp_path)


def toy_study_folder(tmp_path: Path) -> Path:
    """A finished study's folder written by hand: base, oracle, endpoints a and b, and the curve a-b."""
    root = tmp_path / "runs" / "toy"
    nodes = {
        root / "base": {"forget/prob": 0.9, "retain/prob": 0.9},
        root / "oracle": {"forget/prob": 0.3, "retain/prob": 0.88},
        root / "endpoints" / "a": {"forget/prob": 0.2, "retain/prob": 0.8},
        root / "endpoints" / "b": {"forget/prob": 0.25, "retain/prob": 0.7},
    }
    for folder, aggregates in nodes.items():
        folder.mkdir(parents=True)
        directions = {name: DIRECTION(name) for name in aggregates}
        payload = {"aggregates": aggregates, "per_sample": {}, "directions": directions}
        (folder / "test_metrics.json").write_text(json.dumps(payload))
    curve = root / "curves" / "a-b"
    columns = ["t", "forget/loss", "forget/prob", "holdout/loss", "privleak", "retain/loss"]
    rows = [  # the midpoint relearned (forget loss down) yet has a lower forget prob; privleak nearer 0 inside
        {"t": 0.0, "forget/loss": 2.0, "forget/prob": 0.2, "holdout/loss": 1.0, "privleak": -30.0, "retain/loss": 1.0},
        {"t": 0.5, "forget/loss": 1.0, "forget/prob": 0.1, "holdout/loss": 0.5, "privleak": -5.0, "retain/loss": 3.0},
        {"t": 1.0, "forget/loss": 2.5, "forget/prob": 0.25, "holdout/loss": 2.0, "privleak": -20.0, "retain/loss": 2.0},
    ]
    write_csv(curve / "curve_metrics.csv", columns, rows)
    summary = barrier_summaries(columns, rows, DIRECTION, path_length=1.25)
    (curve / "barrier_summary.json").write_text(json.dumps(summary))
    graddiff = {"class_path": "mcu_lightning.losses.GradDiff", "init_args": {"alpha": 1.0}}
    sampler = {"class_path": "mcu_lightning.curves.ClippedNormal", "init_args": {"mean": 0.5, "std": 0.1}}
    study = {
        "name": "toy",
        "endpoints": [{"name": "a", "loss": graddiff}, {"name": "b", "loss": graddiff}],
        "curves": [{"name": "a-b", "endpoints": ["a", "b"], "objective": "endpoint", "t_sampler": sampler}],
    }
    plan = [("oracle", "oracle", []), ("base", "base", ["oracle"]), ("endpoints/a", "endpoint", ["base", "oracle"])]
    plan += [("endpoints/b", "endpoint", ["base", "oracle"]), ("curves/a-b", "curve", ["a", "b", "base", "oracle"])]
    study["stages"] = record_stages(root, plan)
    (root / "study.json").write_text(json.dumps(study))
    return root


def record_stages(root: Path, plan: list[tuple[str, str, list[str]]]) -> list[dict[str, object]]:
    """``stage.json`` for each ``(folder, kind, depends)`` as a finished `mcu experiment` leaves it, and the plan
    entries ``study.json`` records (``mcu report`` checks the one against the other)."""
    entries, outputs = [], {}
    for folder, kind, depends in plan:
        name = Path(folder).name
        outputs[name] = output_hashes(root / folder)
        inputs = {dep: outputs_digest(outputs[dep]) for dep in depends}
        record = {"fingerprint": f"fit-{name}", "test_fingerprint": f"test-{name}", "outputs": outputs[name]}
        (root / folder / "stage.json").write_text(json.dumps({**record, "inputs": inputs}))
        entries.append({"name": name, "kind": kind, "folder": folder, "depends": depends, **record})
    return entries


def test_barrier_numbers_follow_the_formulas(run_dir: Path) -> None:
    summary = json.loads((run_dir / "curves" / "a-b" / "barrier_summary.json").read_text())
    loss = summary["metrics"]["retain/loss"]
    assert loss["barrier_vs_line"] == pytest.approx(1.5)
    assert loss["barrier_vs_max_end"] == pytest.approx(1.0)
    assert loss["barrier_vs_mean_end"] == pytest.approx(1.5)
    assert loss["t_barrier_vs_line"] == pytest.approx(0.5)
    prob = summary["metrics"]["forget/prob"]  # lower is better on forget: the interior 0.1 beats both endpoints
    assert prob["interior_beats_endpoints"] is True and prob["direction"] == "lower"
    assert prob["margin"] == pytest.approx(0.1)
    forget_loss = summary["metrics"]["forget/loss"]  # higher is better: the relearned midpoint is a barrier
    assert forget_loss["interior_beats_endpoints"] is False and forget_loss["direction"] == "higher"
    assert forget_loss["barrier_vs_max_end"] == pytest.approx(1.0)  # -1 - max(-2, -2.5)
    privleak = summary["metrics"]["privleak"]  # closer to 0: -5 beats -20 by 15
    assert privleak["interior_beats_endpoints"] is True and privleak["margin"] == pytest.approx(15.0)
    holdout = summary["metrics"]["holdout/loss"]
    assert holdout["direction"] == "none" and holdout["interior_beats_endpoints"] is False


def test_report_writes_summary_and_figures(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report" / "summary.md"
    text = path.read_text()
    assert text.startswith("# MCU study: toy")
    assert "| metric | base | oracle | a | b |" in text
    assert "| forget/prob ↓ | 0.9 | 0.3 | 0.2 | 0.25 |" in text
    assert "| retain/prob ↑ | 0.9 | 0.88 | 0.8 | 0.7 |" in text
    assert "## Curve `a-b` (a -> b)" in text
    assert "Fitted on GradDiff(alpha=1.0), the loss of endpoint `a` (`objective: endpoint`) at theta(t), " in text
    assert "t ~ ClippedNormal(mean=0.5, std=0.1)." in text
    assert "3 points on t in [0, 1]; path length 1.25." in text
    assert "| retain/loss ↓ | 1 | 2 | 1.5 (0.5) | 1 (0.5) | 1.5 (0.5) |" in text
    assert "| forget/loss ↑ | 2 | 2.5 | " in text
    assert "| holdout/loss · | 1 | 2 |" + " not ranked |" * 5 in text
    assert "| privleak →0 | -30 | -20 | " in text
    assert "Interior points beat both endpoints on: forget/prob, privleak." in text
    for png in ("a-b.png", "curves_comparison.png"):
        assert (run_dir / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "report" / "a-b" / "curve_metrics.csv").read_bytes() == (
        run_dir / "curves" / "a-b" / "curve_metrics.csv"
    ).read_bytes()


def test_report_cli_rebuilds_identically(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_report(run_dir).read_text()
    main(["report", str(run_dir)])
    figures = len(list((run_dir / "report").glob("*.png")))
    assert figures >= 2  # the comparison and one per curve
    expected = f"report: {run_dir / 'report' / 'summary.md'} (and {figures} figures in {run_dir / 'report'})"
    assert capsys.readouterr().out.strip() == expected
    assert (run_dir / "report" / "summary.md").read_text() == first


def test_report_of_a_missing_study_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no study at"):
        write_report(tmp_path / "runs" / "nothing")


def test_curve_without_barrier_summary_is_reported_as_unfinished(run_dir: Path) -> None:
    (run_dir / "curves" / "a-b" / "barrier_summary.json").unlink()
    text = write_report(run_dir).read_text()
    assert "barrier summary missing (the curve's test did not finish)" in text


def test_report_vector_copies_every_figure(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["report", str(run_dir), "--vector", "svg"])
    report = run_dir / "report"
    pngs = sorted(p.stem for p in report.glob("*.png"))
    assert pngs and sorted(p.stem for p in report.glob("*.svg")) == pngs
    assert (report / "a-b.svg").read_text().lstrip().startswith("<?xml")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["report", str(run_dir), "--vector", "eps"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --vector eps: choose one of pdf, svg, or leave it out"


def test_curve_training_names_the_curves_first_endpoint_and_its_sampler() -> None:
    from mcu_lightning.report.summary import curve_training

    npo = {"class_path": "mcu_lightning.losses.NPO", "init_args": {"beta": 0.1}}
    study = {
        "endpoints": [
            {"name": "a", "loss": {"class_path": "x.GradDiff"}},
            {"name": "b", "loss": npo, "superloss": True},
        ]
    }
    uniform = {"class_path": "mcu_lightning.curves.Uniform"}
    line = curve_training({"endpoints": ["base", "b", "a"], "objective": "endpoint", "t_sampler": uniform}, study)
    expected = "Fitted on SuperLoss(NPO(beta=0.1)), the loss of endpoint `b` (`objective: endpoint`) at theta(t), "
    assert line == expected + "t ~ Uniform()."
    nll = curve_training(
        {"endpoints": ["a", "b"], "objective": {"class_path": "m.NLL", "init_args": {"split": "retain"}}}, {}
    )
    assert nll.startswith("Fitted on NLL(split=retain) at theta(t)")


def test_the_report_says_what_each_mia_auc_is_ranked_against() -> None:
    from mcu_lightning.report.summary import mia_note

    directions = {"mia_min_k_auc": "toward 0.62", "mia_loss_auc": "toward 0.5", "forget/prob": "lower"}
    note = mia_note(directions, {"oracle": {"mia_min_k_auc": 0.62}})
    assert "mia_min_k_auc by its distance from the oracle's AUC, 0.62" in note
    assert "mia_loss_auc by its distance from 0.5 (no oracle AUC), 0.5" in note
    assert mia_note({"forget/prob": "lower"}, {}) == ""


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ({"shape": {"class_path": "mcu_lightning.curves.Linear"}}, "the straight line"),
        ({"shape": {"class_path": "mcu_lightning.curves.Slerp"}}, "SLERP per tensor"),
        ({"path": "base"}, "the polychain through the base"),
        ({"fixed_bends": True, "init": "base"}, "fixed bends"),
    ],
    ids=["shape-linear", "shape-slerp", "path-base", "fixed-bends"],
)
def test_a_training_free_curve_is_not_said_to_be_fitted(spec: dict, what: str) -> None:
    """The summary names a two-bend shape a training-free path, as the schema and the console do."""
    from mcu_lightning.report.summary import curve_training

    line = curve_training({"endpoints": ["a", "b"], "objective": "endpoint", **spec}, {"endpoints": []})
    assert line == f"A training-free path ({what}): not fitted, tested on the same t grid."
