"""A full disk, a read-only report folder and a damaged ``test_metrics.json`` end in one ``error:`` line naming the
file and the fix, with nothing half-written left behind; a stage that failed so stays incomplete and runs again.

The disk is a real small file system where the test may mount one (a tmpfs: root with CAP_SYS_ADMIN, as in the
project's sandbox); elsewhere the same tests run with the kernel's error raised in-process at the write
(``os.fsync`` for ENOSPC, ``tempfile.mkstemp`` for EROFS), which is where a real disk raises it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcu_lightning.core.atomic import atomic_write
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.storage import StorageError, read_json
from tests.reliability.helpers import one_error_line
from tests.report.test_summary import toy_study_folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return toy_study_folder(tmp_path)


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 256 KiB tmpfs mounted for the test, or ``None`` where mounting is not allowed."""
    folder = tmp_path / "disk"
    mounted = _mount(folder, "size=256k,mode=0777")
    yield folder if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(disk: Path) -> None:
    """Fill ``disk`` to the last byte."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def _simulate(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The kernel's error where a real disk raises it: at fsync (ENOSPC) or when the file is made (EROFS)."""
    if code == errno.ENOSPC:

        def fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("mcu_lightning.core.atomic.os.fsync", fsync)
    else:

        def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir")))

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_content(
    small_disk: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = small_disk or tmp_path
    target = folder / "curve_metrics.png"
    target.write_bytes(b"the previous figure")
    if small_disk is not None:
        _fill(small_disk)
    else:
        _simulate(monkeypatch, errno.ENOSPC)
    with pytest.raises(StorageError) as info:
        atomic_write(target, b"x" * 512 * 1024)
    assert str(info.value).startswith(f"cannot write '{target}': No space left on device; free space on that disk")
    assert "run the same command again" in str(info.value)
    assert target.read_bytes() == b"the previous figure"
    assert _leftovers(folder) == []


def test_report_on_a_full_disk_is_one_line_and_leaves_no_partial_file(
    run_dir: Path, small_disk: Path | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = run_dir
    if small_disk is not None:
        root = Path(shutil.copytree(run_dir, small_disk / "toy"))
        _fill(small_disk)
    else:
        _simulate(monkeypatch, errno.ENOSPC)
    line = one_error_line(["report", str(root)], capsys)
    assert f"cannot write '{root / 'report'}" in line
    assert "No space left on device; free space on that disk (or set output_dir to a folder on another one)" in line
    assert _leftovers(root) == []
    for copy in (root / "report").rglob("curve_metrics.csv"):  # whole or absent (atomic_copy)
        assert copy.read_bytes() == (root / "curves" / copy.parent.name / copy.name).read_bytes()
    assert not (root / "report" / "summary.md").exists()  # written last: the report is not claimed complete


def test_read_only_report_folder_is_one_line(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = run_dir
    disk = tmp_path / "ro"
    if _mount(disk, "size=4m,mode=0777"):
        try:
            root = Path(shutil.copytree(run_dir, disk / "toy"))
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            line = one_error_line(["report", str(root)], capsys)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    else:
        _simulate(monkeypatch, errno.EROFS)
        line = one_error_line(["report", str(root)], capsys)
    assert f"cannot write '{root / 'report'}" in line
    assert "Read-only file system; the file system is read-only: set output_dir to a folder you can write" in line


def test_damaged_test_metrics_is_one_line_naming_the_file(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = run_dir / "endpoints" / "a" / "test_metrics.json"
    damaged.write_text(damaged.read_text()[:25])  # cut off, as by a copy that ran out of space
    line = one_error_line(["report", str(run_dir)], capsys)
    assert "endpoint 'a' stale (its outputs test_metrics.json changed or are gone" in line
    assert "run `mcu experiment` with the study's config" in line
    with pytest.raises(InputError) as info:  # any reader of the file: its name, where it breaks, the fix
        read_json(damaged)
    assert str(info.value).startswith(f"'{damaged}' is damaged (line 1 column ")
    assert "rerun `mcu experiment` with the study's config" in str(info.value)


def test_a_stage_stopped_by_a_full_disk_stays_incomplete_and_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner records a stage complete only after its files are written: a write that fails leaves it
    incomplete (``stage.partial.json``, no ``stage.json``), and the next run runs it again."""
    from mcu_lightning.study.identity import StageRecord
    from mcu_lightning.study.runner import StudyRunner
    from mcu_lightning.study.schema import parse_study
    from mcu_lightning.study.stage import Stage
    from tests.study.test_experiment import reduced_study

    study, _ = parse_study(["--config", str(reduced_study(tmp_path)), "--progress", "false"])
    runner = StudyRunner(study)
    curve = study.curves[0]
    directory = runner.context.curve_dir(curve)
    runs: list[int] = []

    def run() -> dict[str, float]:
        runs.append(1)
        atomic_write(directory / "curve_metrics.csv", b"t\n0\n")
        with monkeypatch.context() as patch:
            if len(runs) == 1:  # the disk is full when the figure is written the first time
                _simulate(patch, errno.ENOSPC)
            atomic_write(directory / "curve_metrics.png", b"png" * 1000)
        return {}

    stage = Stage(name=curve.name, kind="curve", directory=directory, run=run)
    record = StageRecord(fingerprint="f", version="v")
    with pytest.raises(StorageError, match=r"curve_metrics\.png': No space left on device"):
        runner.run_stage(stage, record, {curve.name: stage}, 1, 1)
    assert stage.partial_marker.is_file() and not stage.marker.exists()
    assert _leftovers(directory) == [] and not (directory / "curve_metrics.png").exists()
    runner.run_stage(stage, record, {curve.name: stage}, 1, 1)
    assert len(runs) == 2 and json.loads(stage.marker.read_text())["stage"] == curve.name
    assert (directory / "curve_metrics.png").read_bytes() == b"png" * 1000
