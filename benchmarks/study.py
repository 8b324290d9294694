"""Wall time of a whole study (``mcu experiment``) end to end, split per stage from the ``stage.json`` markers.

Runs ``python -m mcu_lightning.cli experiment --config <config>`` in a fresh temporary folder (``runs/`` is relative
to the working directory; ``MCU_CACHE`` points into it too, so generated data is rebuilt as on a first run), then
reads each stage's ``stage.json`` (``seconds``, ``fit_seconds``, ``test_seconds``). The ratio printed is the sum of
the stages' seconds over the wall time: what is left (process start-up, imports, report) is overhead.

    python -m benchmarks.study                                   # configs/quickstart/experiment.yaml
    python -m benchmarks.study --config my_study.yaml --keep runs/study_benchmark
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import parser, write_json

ROOT = Path(__file__).resolve().parent.parent


def stage_markers(folder: Path) -> dict[str, dict]:
    """Every ``stage.json`` under ``folder``, by stage name (``kind:name``, e.g. ``curve:graddiff-npo``)."""
    markers = (json.loads(path.read_text()) for path in folder.rglob("stage.json"))
    return {f"{marker.get('kind', 'stage')}:{marker.get('stage', '?')}": marker for marker in markers}


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("study", __doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart" / "experiment.yaml"))
    p.add_argument("--keep", default=None, help="run in this folder and keep it (default: a temporary folder)")
    p.add_argument("--profile", default=None, help="also write a cProfile of the run here (inspect with pstats)")
    p.add_argument("extra", nargs="*", help="more arguments for `mcu experiment` (e.g. --base.train.max_epochs=2)")
    args = p.parse_args(argv)
    if args.device != "cpu":
        print("note: --device is not passed on; the study's YAML (trainer.accelerator) chooses the device")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mcu-study-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MCU_CACHE": str(folder / "cache"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if args.threads and args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    profile = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())] if args.profile else []
    command = [
        sys.executable,
        *profile,
        "-m",
        "mcu_lightning.cli",
        "experiment",
        "--config",
        str(Path(args.config).resolve()),
    ]
    command += ["--progress", "false", *args.extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({done.returncode}) in {folder}:\n{done.stderr[-4000:]}")
    markers = stage_markers(folder)
    rows = []
    for stage, marker in sorted(markers.items()):
        row = {"case": stage, **{k: marker[k] for k in ("seconds", "fit_seconds", "test_seconds") if k in marker}}
        rows.append(row)
        split = ", ".join(f"{k.split('_')[0]} {row[k]:.1f} s" for k in ("fit_seconds", "test_seconds") if k in row)
        print(f"study stage {stage}: {row.get('seconds', float('nan')):.1f} s ({split})")
    staged = sum(row.get("seconds", 0.0) for row in rows)
    print(f"study total: wall {wall:.1f} s, stages {staged:.1f} s; stages/wall ratio {staged / wall:.3f} "
          f"(the rest is start-up, imports and the report)")  # fmt: skip
    rows.append({"case": "total", "wall_seconds": wall, "stage_seconds": staged, "ratio": staged / wall})
    write_json(args.out, "study", torch.device("cpu"), args, rows)
    return rows


if __name__ == "__main__":
    main()
