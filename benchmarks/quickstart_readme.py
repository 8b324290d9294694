"""The README's quickstart numbers and figure, from one quickstart run.

    mcu experiment --config configs/quickstart/experiment.yaml
    python -m benchmarks.quickstart_readme runs/quickstart --readme README.md

copies the run's small files into ``docs/quickstart/`` (each stage's headline metrics and probe values, its
time, the curves' ``curve_metrics.csv``), its comparison figure to ``docs/quickstart_comparison.png``, and rewrites
the README's ``quickstart-*`` blocks from those committed files. ``tests/test_readme_quickstart.py`` renders the
blocks from ``docs/quickstart/`` again and compares them with the README, so the README cannot quote a run that
is not committed next to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "quickstart"
FIGURE = REPO / "docs" / "quickstart_comparison.png"
STAGES = "stages.json"
#: The stage line the README quotes, and the numbers of each model the robustness table shows.
QUOTED_STAGE = "graddiff"
RELEARN, QUANT = "probe/relearn/forget/prob", "probe/quant4/forget/prob"
KEPT = ("forget_quality", "model_utility", "forget/prob", "retain/prob", f"{RELEARN}_recovery", RELEARN)
KEPT += (f"{QUANT}_recovery",)
MIDDLE = 0.5


def collect(run: Path, docs: Path = DOCS, figure: Path = FIGURE) -> None:
    """Copy what the README quotes from the study folder ``run`` into ``docs`` and ``figure``."""
    docs.mkdir(parents=True, exist_ok=True)
    study = json.loads((run / "study.json").read_text())
    folders = [run / "oracle", run / "base", *(run / "endpoints" / e["name"] for e in study["endpoints"])]
    folders += [run / "curves" / c["name"] for c in study["curves"]]
    stages = []  # in the order the study ran them
    for marker in (folder / "stage.json" for folder in folders):
        record = json.loads(marker.read_text())
        metrics = marker.parent / "test_metrics.json"
        aggregates = json.loads(metrics.read_text())["aggregates"] if metrics.is_file() else {}
        stages.append(
            {
                "stage": record["stage"],
                "kind": record["kind"],
                "seconds": round(record["seconds"], 1),
                "aggregates": {k: aggregates[k] for k in KEPT if k in aggregates},
            }
        )
        table = marker.parent / "curve_metrics.csv"
        if table.is_file():
            shutil.copyfile(table, docs / f"{record['stage']}.csv")
    (docs / STAGES).write_text(json.dumps(stages, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(run / "report" / "curves_comparison.png", figure)


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _middle(docs: Path, curve: str) -> dict[str, float]:
    with open(docs / f"{curve}.csv", newline="") as handle:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    return min(rows, key=lambda row: abs(row["t"] - MIDDLE))


def blocks(docs: Path = DOCS) -> dict[str, str]:
    """The README blocks (by marker name) rendered from the committed files in ``docs``."""
    stages = {stage["stage"]: stage for stage in json.loads((docs / STAGES).read_text())}
    order = list(stages)
    quoted = stages[QUOTED_STAGE]
    values = quoted["aggregates"]
    index = order.index(QUOTED_STAGE) + 1
    line = (
        f"`[{index}/{len(order)}] endpoint {QUOTED_STAGE}  ...  {quoted['seconds']} s  forget_quality "
        f"{values['forget_quality']:.4g}  model_utility {values['model_utility']:.4g}  forget/prob "
        f"{values['forget/prob']:.4g}`"
    )
    total = sum(stage["seconds"] for stage in stages.values())
    timing = f"the {len(order)} stages of the committed run took {total:.0f} s together"
    rows = []
    names = {"base": "base", "oracle": "oracle (never saw the forget set)"}
    for name, stage in stages.items():
        if stage["kind"] == "curve":
            continue
        label = names.get(name, f"{name} endpoint")
        rows.append((label, stage["aggregates"]))
    for name, stage in stages.items():
        if stage["kind"] == "curve":
            rows.append((f"t = {MIDDLE} of {name}", _middle(docs, name)))
    table = [
        "| point | forget/prob | after relearning | recovery | after 4-bit (recovery) |",
        "| --- | --- | --- | --- | --- |",
    ]
    table += [
        f"| {label} | {_fmt(v['forget/prob'])} | {_fmt(v[RELEARN])} | {_fmt(v[f'{RELEARN}_recovery'])} "
        f"| {_fmt(v[f'{QUANT}_recovery'])} |"
        for label, v in rows
    ]
    return {"quickstart-line": f"{line} ({timing})", "quickstart-robustness": "\n".join(table)}


def write_readme(readme: Path, docs: Path = DOCS) -> None:
    """Replace each ``<!-- name:start ... -->`` to ``<!-- name:end -->`` block of ``readme`` with its rendering."""
    text = readme.read_text()
    for name, body in blocks(docs).items():
        pattern = re.compile(rf"(<!-- {name}:start[^>]*-->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{readme} has no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    readme.write_text(text)


def quoted(readme: Path) -> dict[str, str]:
    """The README's current blocks, by marker name."""
    text = readme.read_text()
    found = re.findall(r"<!-- ([a-z-]+):start[^>]*-->\n(.*?)\n<!-- \1:end -->", text, re.DOTALL)
    return {name: body for name, body in found if name.startswith("quickstart-")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the quickstart study folder (runs/quickstart)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    collect(args.run)
    write_readme(args.readme)
    print(f"wrote {DOCS.relative_to(REPO)}/, {FIGURE.relative_to(REPO)} and the quickstart blocks of {args.readme}")


if __name__ == "__main__":
    main()
