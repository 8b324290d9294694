"""The analysis notebook runs top to bottom on a finished study and shows its figures and tables.

A reduced copy of the quickstart study (a few epochs and steps, 3 points per curve) runs in ``tmp_path``; the
notebook then executes under nbclient in ``notebooks/`` (as ``jupyter nbconvert --execute`` runs it) with a
relative ``MCU_RUN_DIR``, which the notebook reads from the repository root. CI runs this test (it is ``slow``).
"""

from __future__ import annotations

import ast
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "mcu_analysis.ipynb"
QUICKSTART = REPO / "configs" / "quickstart" / "experiment.yaml"


def _code_cells(notebook: dict[str, Any]) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_notebook_cells_are_valid_python() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    cells = _code_cells(notebook)
    assert len(cells) >= 5
    for source in cells:  # IPython magics are not Python: drop them before parsing
        ast.parse("\n".join(line for line in source.splitlines() if not line.startswith("%")))
    assert all(not cell.get("outputs") for cell in notebook["cells"] if cell["cell_type"] == "code"), (
        "commit the notebook without outputs"
    )
    assert any("MCU_RUN_DIR" in source for source in cells)


def reduced_quickstart(out: Path) -> dict[str, Any]:
    """The quickstart study, cut to seconds: 2 base epochs, 1 endpoint epoch, 2 curve steps, 3 t."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec = copy.deepcopy(spec)
    spec.update(name="nb", output_dir=str(out), progress=False)
    spec["base"]["train"]["max_epochs"] = 2
    for endpoint in spec["endpoints"]:
        endpoint["train"]["max_epochs"] = 1
    spec["curves"] = [{**spec["curves"][0], "train": {**spec["curves"][0]["train"], "max_steps": 2}}]
    spec["evaluation"]["eval_ts"] = 3
    spec["evaluation"]["suite"]["init_args"]["max_new_tokens"] = 4
    return spec


@pytest.mark.slow
def test_notebook_executes_on_a_quickstart_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from mcu_lightning.study.runner import StudyRunner
    from mcu_lightning.study.schema import parse_study

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(reduced_quickstart(tmp_path / "runs")))
    study, _ = parse_study(["--config", str(config)])
    StudyRunner(study).run()
    run_dir = tmp_path / "runs" / "nb"
    curve = study.curves[0].name
    assert (run_dir / "curves" / curve / "barrier_summary.json").is_file()

    # as `jupyter nbconvert --execute notebooks/mcu_analysis.ipynb` runs it: in notebooks/, with MCU_RUN_DIR relative
    # to the repository root (the default, runs/quickstart, is read from there too)
    monkeypatch.setenv("MCU_RUN_DIR", os.path.relpath(run_dir, REPO))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    errors = [out for out in outputs if out.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 1  # one figure per curve
    html = "\n".join(out.get("data", {}).get("text/html", "") for out in outputs)
    assert "barrier_vs_line" in html and curve in html  # the barrier table, with this curve's rows
    assert "retain/loss" in html
    for node in ("base", "oracle", "graddiff", "npo"):  # the endpoints-vs-base/oracle table
        assert f"<th>{node}</th>" in html
