"""``mcu report`` shows the stages of the study's plan (``study.json``) that are complete and current, checked as
``mcu experiment`` checks them, names the others in the summary's first lines and exits 2 unless ``--partial``,
and refuses a folder that is not one study. A full disk leaves no cut-off file in the report.

One tiny digits study (oracle, base, one GradAscent endpoint, one curve from the base) runs once; each test works
on its own copy of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcu_lightning.cli import main
from tests.reliability.helpers import REPO, run_cli, tiny_study

pytestmark = pytest.mark.slow
PNG_END = b"IEND\xaeB`\x82"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plan")
    config = tiny_study(folder)
    done = run_cli(["experiment", "--config", str(config)], cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "runs"


@pytest.fixture
def runs(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "runs")
    return tmp_path / "runs"


class Done:
    """What ``mcu report`` did in this process: its exit status and stderr."""

    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


def report(runs: Path, *extra: str, folder: str = "runs/tiny") -> tuple[Done, str]:
    """``mcu report runs/tiny EXTRA`` run from the folder holding ``runs`` (in this process: no start-up cost)."""
    cwd, err = os.getcwd(), io.StringIO()
    os.chdir(runs.parent)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(["report", folder, *extra])
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    finally:
        os.chdir(cwd)
    summary = runs / "tiny" / "report" / "summary.md"
    return Done(code, err.getvalue()), summary.read_text() if summary.is_file() else ""


def test_a_folder_left_by_a_renamed_curve_is_not_reported(runs: Path) -> None:
    """Renaming a curve (or --rerun after an endpoint changed) leaves the old folder: not in the plan, not shown."""
    shutil.copytree(runs / "tiny" / "curves" / "base-ga", runs / "tiny" / "curves" / "old-name")
    shutil.copytree(runs / "tiny" / "endpoints" / "ga", runs / "tiny" / "endpoints" / "gone")
    done, text = report(runs)
    assert done.returncode == 0, done.stderr
    assert "old-name" not in text and "gone" not in text
    assert "Incomplete" not in text and "| metric | base | oracle | ga |" in text and "## Curve `base-ga`" in text
    assert not (runs / "tiny" / "report" / "old-name.png").exists()


def test_a_half_finished_study_is_marked_and_exits_2_unless_partial(runs: Path) -> None:
    curve = runs / "tiny" / "curves" / "base-ga"
    (curve / "stage.json").rename(curve / "stage.partial.json")  # started, never finished
    done, text = report(runs)
    assert done.returncode == 2
    assert text.splitlines()[2].startswith("**Incomplete: 1 of 4 planned stages are missing or stale")
    assert "- curve 'base-ga' interrupted (started, not finished)" in text
    assert "## Curve" not in text, "an unfinished curve's files must not be reported"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 of 4 planned stages" in errors[0] and "--partial" in errors[0]
    done, text = report(runs, "--partial")
    assert done.returncode == 0, done.stderr
    assert "- curve 'base-ga' interrupted" in text


def test_an_edited_test_metrics_file_is_stale(runs: Path) -> None:
    path = runs / "tiny" / "endpoints" / "ga" / "test_metrics.json"
    metrics = json.loads(path.read_text())
    metrics["aggregates"]["forget/acc"] = 0.123456
    path.write_text(json.dumps(metrics))
    done, text = report(runs)
    assert done.returncode == 2
    assert "- endpoint 'ga' stale (its outputs test_metrics.json changed or are gone since it ran)" in text
    assert "0.1235" not in text and "| metric | base | oracle |" in text


def test_a_parent_of_studies_is_refused(runs: Path) -> None:
    done, _ = report(runs, folder="runs")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: 'runs' is not one study's folder (it has no study.json); it holds the studies runs/tiny: "
        "pass one of them"
    )
    assert not (runs / "report").exists()


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from mcu_lightning.report.summary import write_report
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    write_report(Path(sys.argv[1]))
except OSError as err:
    print("stopped:", err.strerror)
"""


def test_a_full_disk_leaves_no_cut_off_report_file(runs: Path) -> None:
    root = runs / "tiny"
    shutil.rmtree(root / "report")
    figure = root / "curves" / "base-ga" / "curve_metrics.png"
    limit = figure.stat().st_size // 2  # the curve's figure does not fit; the CSV and the summary do
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(root), str(limit)],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "stopped:" in done.stdout, done.stdout + done.stderr
    written = [p for p in (root / "report").rglob("*") if p.is_file()]
    for path in written:
        data = path.read_bytes()
        assert not path.name.endswith(".tmp"), f"a temporary file was left: {path}"
        if path.suffix == ".png":
            assert data.endswith(PNG_END), f"{path.name} is cut off at {len(data)} bytes"
    assert not (root / "report" / "base-ga.png").exists()
