"""The layer contract of pyproject.toml holds, and it is a real contract: an upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {"PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env)


def test_every_import_points_down_the_layers():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "mcu_lightning", copy / "mcu_lightning", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    sample = copy / "mcu_lightning" / "core" / "per_sample.py"
    sample.write_text(sample.read_text() + "\nfrom mcu_lightning.metrics.suite import MetricSuite  # noqa\n")
    done = lint_imports(copy)
    assert done.returncode != 0
    assert "mcu_lightning.core is not allowed to import mcu_lightning.metrics" in done.stdout
