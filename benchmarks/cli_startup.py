"""Start-up time of ``mcu --help`` (no torch, no Lightning) and of ``mcu fit --help`` (the whole LightningCLI).

Each command runs as a fresh ``python -m mcu_lightning.cli ...`` process, the two interleaved (A B A B ...) so load
on a shared machine hits both alike; the median wall seconds of each and their paired ratio are printed.

    python -m benchmarks.cli_startup                 # 5 repeats each
    python -m benchmarks.cli_startup --repeats 10
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks._common import median, paired_ratio, parser, write_json

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"mcu --help": ["--help"], "mcu fit --help": ["fit", "--help"]}


def seconds(args: list[str]) -> float:
    """Wall seconds of one ``python -m mcu_lightning.cli ARGS`` process, which must exit 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mcu_lightning.cli", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"`mcu {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser("cli_startup", __doc__.splitlines()[0])
    p.set_defaults(repeats=5, warmup=1)
    args = p.parse_args(argv)
    for _ in range(args.warmup):  # the first run also fills the OS file cache and writes .pyc files
        for command in COMMANDS.values():
            seconds(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    rows = []
    for name, values in times.items():
        rows.append({"case": name, "seconds": median(values), "runs": values})
        print(f"{name}: {median(values):.3f} s (median of {len(values)})")
    ratio = paired_ratio(times["mcu fit --help"], times["mcu --help"])
    print(f"start-up: `mcu fit --help` / `mcu --help` ratio {ratio:.1f}")
    rows.append({"case": "ratio", "ratio": ratio})
    write_json(args.out, "cli_startup", torch.device("cpu"), args, rows)
    return rows


if __name__ == "__main__":
    main()
