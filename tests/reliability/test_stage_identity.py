"""A study's folder holds only results of the config that describes it: stage fingerprints, healing, one writer.

One reduced quickstart runs once (module fixture); each test works on its own copy of the run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcu_lightning.cli import main
from mcu_lightning.study.identity import StageRecord, changed_keys, digest
from tests.reliability.helpers import REPO
from tests.study.test_experiment import reduced_study

pytestmark = pytest.mark.slow

STAGES = {
    "oracle": "oracle",
    "base": "base",
    "graddiff": "endpoints/graddiff",
    "npo": "endpoints/npo",
    "graddiff-npo": "curves/graddiff-npo",
    "base-graddiff": "curves/base-graddiff",
}


def markers(root: Path) -> dict[str, tuple[int, bytes]]:
    return {name: _stat(root / folder / "stage.json") for name, folder in STAGES.items()}


def _stat(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def experiment(config: Path, output_dir: Path, *extra: str) -> None:
    main(["experiment", "--config", str(config), "--progress", "false", "--output_dir", str(output_dir), *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("identity")
    config = reduced_study(tmp_path)
    experiment(config, tmp_path / "runs")
    return {"config": config, "runs": tmp_path / "runs"}


@pytest.fixture
def study(finished: dict[str, Path], tmp_path: Path) -> dict[str, Any]:
    """A private copy of the finished study, and its config."""
    runs = tmp_path / "runs"
    shutil.copytree(finished["runs"], runs)
    return {"config": finished["config"], "runs": runs, "root": runs / "quickstart", "tmp": tmp_path}


def edited(study: dict[str, Any], edit: Any) -> Path:
    raw = yaml.safe_load(study["config"].read_text())
    edit(raw)
    path = study["tmp"] / "edited.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def set_lr(raw: dict[str, Any]) -> None:
    raw["endpoints"][0]["train"]["optimizer"]["init_args"]["lr"] = 0.01


def test_a_changed_config_stops_before_any_stage_and_names_the_keys(
    study: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    root = study["root"]
    before, study_json = markers(root), _stat(root / "study.json")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        experiment(edited(study, set_lr), study["runs"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "endpoint 'graddiff': train.optimizer.init_args.lr 0.003 -> 0.01" in err
    assert "curve 'graddiff-npo': upstream stage 'graddiff' changed" in err
    assert "--rerun" in err and "output_dir" in err
    assert "endpoint 'npo'" not in err and "base 'base'" not in err
    assert markers(root) == before, "a stage ran or was relabelled"
    assert _stat(root / "study.json") == study_json, "study.json describes a config the results were not made with"


def test_rerun_remakes_the_changed_stage_and_what_reads_it(study: dict[str, Any]) -> None:
    root = study["root"]
    before = markers(root)
    experiment(edited(study, set_lr), study["runs"], "--rerun")
    after = markers(root)
    assert {n for n in STAGES if after[n] == before[n]} == {"oracle", "base", "npo"}
    record = json.loads((root / "endpoints" / "graddiff" / "stage.json").read_text())
    assert record["config"]["endpoint"]["train"]["optimizer"]["init_args"]["lr"] == 0.01
    written = json.loads((root / "study.json").read_text())
    assert written["endpoints"][0]["train"]["optimizer"]["init_args"]["lr"] == 0.01
    experiment(edited(study, set_lr), study["runs"])  # and now it is the config of record
    assert markers(root) == after


def test_a_stage_whose_output_is_gone_runs_again(study: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    root = study["root"]
    model = root / "endpoints" / "npo" / "model" / "model.safetensors"
    model.unlink()
    before = markers(root)
    capsys.readouterr()
    experiment(study["config"], study["runs"])
    err = capsys.readouterr().err
    assert "endpoint 'npo': its outputs model/model.safetensors are missing or changed" in " ".join(err.split())
    assert model.is_file()
    after = markers(root)
    assert after["npo"] != before["npo"]
    assert all(after[n] == before[n] for n in ("oracle", "base", "graddiff"))
    record = StageRecord.read(root / "endpoints" / "npo" / "stage.json")
    assert record is not None and not record.damage(root / "endpoints" / "npo")


def test_a_truncated_checkpoint_of_an_interrupted_stage_restarts_it(
    study: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    """The curve stage as a kill would leave it (started, not finished), with its last.ckpt cut short."""
    folder = study["root"] / "curves" / "base-graddiff"
    record = json.loads((folder / "stage.json").read_text())
    (folder / "stage.json").unlink()
    (folder / "stage.partial.json").write_text(json.dumps(record))
    last = folder / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    experiment(study["config"], study["runs"])
    err = " ".join(capsys.readouterr().err.split())
    assert "last.ckpt cannot be read" in err and "the stage starts over" in err
    assert (folder / "checkpoints" / "last.ckpt.damaged").is_file()
    assert (folder / "stage.json").is_file() and not (folder / "stage.partial.json").exists()


def test_an_interrupted_stage_of_another_config_is_not_resumed(
    study: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    folder = study["root"] / "curves" / "base-graddiff"
    (folder / "stage.json").rename(folder / "stage.partial.json")

    def more_steps(raw: dict[str, Any]) -> None:
        raw["curves"][1]["train"]["max_steps"] = 6

    capsys.readouterr()
    with pytest.raises(SystemExit):
        experiment(edited(study, more_steps), study["runs"])
    assert "curve 'base-graddiff': train.max_steps 4 -> 6" in capsys.readouterr().err


def test_one_study_per_folder(study: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    root = study["root"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from mcu_lightning.study.lock import StudyLock\n"
            f"with StudyLock({str(root)!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = markers(root)
        capsys.readouterr()
        started = time.perf_counter()
        with pytest.raises(SystemExit) as exit_info:
            experiment(study["config"], study["runs"])
        assert exit_info.value.code == 2 and time.perf_counter() - started < 30
        err = " ".join(capsys.readouterr().err.split())
        assert f"another `mcu experiment` is running on '{root}' (pid {holder.pid} on " in err
        assert markers(root) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing: its record is stale, and the next study takes the folder over
    assert (root / "study.lock.json").is_file()
    with pytest.warns(UserWarning, match=rf"took over the lock .*\(pid {holder.pid} on "):
        experiment(study["config"], study["runs"])
    assert not (root / "study.lock.json").exists()


def test_fingerprints_ignore_spelling_and_order_but_not_values() -> None:
    assert digest({"lr": 1e-3, "a": [1, 2]}) == digest({"a": [1, 2], "lr": 0.001})
    assert digest({"lr": 1e-3}) != digest({"lr": 1e-2})
    assert digest({"x": float("nan")}) == digest({"x": float("nan")})
    assert changed_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}}) == ["a.c 2 -> 3", "a.d <unset> -> 4"]


FITTED = {  # what each stage's fit made: a changed evaluation must leave these untouched
    "base": "base/model/model.safetensors",
    "graddiff": "endpoints/graddiff/model/model.safetensors",
    "npo": "endpoints/npo/model/model.safetensors",
    "graddiff-npo": "curves/graddiff-npo/checkpoints/last.ckpt",
    "base-graddiff": "curves/base-graddiff/checkpoints/last.ckpt",
}


def test_a_changed_evaluation_reruns_only_the_tests(study: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    root = study["root"]
    fitted = {name: _stat(root / path) for name, path in FITTED.items()}

    def more_ts(raw: dict[str, Any]) -> None:
        raw["evaluation"]["eval_ts"] = 4

    capsys.readouterr()
    with pytest.raises(SystemExit):
        experiment(edited(study, more_ts), study["runs"])
    err = " ".join(capsys.readouterr().err.split())
    assert "curve 'graddiff-npo': evaluation.eval_ts 3 -> 4 (evaluation only: its test reruns, its fit is kept)" in err
    experiment(edited(study, more_ts), study["runs"], "--rerun")
    captured = capsys.readouterr()
    said = " ".join((captured.out + captured.err).split())
    assert "evaluation changed: 6 stage(s) rerun only their test on their fitted weights" in said
    assert {name: _stat(root / path) for name, path in FITTED.items()} == fitted, "a fit was redone"
    for curve in ("graddiff-npo", "base-graddiff"):
        rows = (root / "curves" / curve / "curve_metrics.csv").read_text().splitlines()
        assert len(rows) == 1 + 4, f"{curve} was not retested on the new grid"
    record = StageRecord.read(root / "curves" / "graddiff-npo" / "stage.json")
    assert record is not None and record.test_config["evaluation"]["eval_ts"] == 4
    before = markers(root)
    experiment(edited(study, more_ts), study["runs"])  # and now it is the evaluation of record
    assert markers(root) == before


def test_a_study_folder_recorded_before_fit_and_test_were_apart_is_reused(study: dict[str, Any]) -> None:
    """A stage.json written when the evaluation was part of the one fingerprint still describes its stage."""
    from mcu_lightning.study.identity import fingerprint

    root = study["root"]
    legacy: dict[str, str] = {}
    for name, folder in STAGES.items():
        path = root / folder / "stage.json"
        raw = json.loads(path.read_text())
        config = {**raw.pop("config"), **raw.pop("test_config")}
        upstream = {n: legacy[n] for n in raw["upstream"]}
        kind = raw["kind"]
        legacy[name] = fingerprint(kind, config, upstream, raw["data"])
        for key in ("test_fingerprint", "fit_inputs"):
            raw.pop(key)
        path.write_text(json.dumps({**raw, "config": config, "upstream": upstream, "fingerprint": legacy[name]}))
    before = markers(root)
    experiment(study["config"], study["runs"])
    assert markers(root) == before, "a stage recorded before the split ran again"
