"""Which stages of a study's plan are complete and current, read from the folder alone (``mcu report``).

``mcu experiment`` writes its plan into ``study.json`` (``stages``: each stage's name, kind, folder, the stages it
reads and the fingerprints it must have). A stage is *complete* when its ``stage.json`` has those fingerprints,
its recorded outputs are still hash-equal, and the outputs of the stages it read are the ones it recorded: the
checks ``mcu experiment`` makes before it skips a stage. Anything else is *missing* (never ran), *interrupted*
(``stage.partial.json`` only) or *stale*, and the report leaves it out and names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcu_lightning.core.errors import InputError
from mcu_lightning.core.names import STUDY_JSON
from mcu_lightning.report.stages import StageState
from mcu_lightning.study.identity import StageRecord, outputs_digest
from mcu_lightning.study.stage import PARTIAL_MARKER, STAGE_MARKER, Stage

PLAN_KEY = "stages"


def plan_entries(root: Path, stages: Sequence[Stage], now: Mapping[str, StageRecord]) -> list[dict[str, Any]]:
    """The plan as ``study.json`` records it: what ``mcu report`` checks each stage folder against."""
    return [
        {
            "name": stage.name,
            "kind": stage.kind,
            "folder": stage.directory.relative_to(root).as_posix(),
            "depends": list(stage.depends),
            "fingerprint": now[stage.name].fingerprint,
            "test_fingerprint": now[stage.name].test_fingerprint,
            "legacy": now[stage.name].legacy,
        }
        for stage in stages
    ]


def read_plan(root: Path) -> list[dict[str, Any]]:
    """The plan of the study in ``root``; an :class:`InputError` when ``root`` is not one study's folder."""
    root = Path(root)
    path = root / STUDY_JSON
    if not path.is_file():
        inside = sorted(p.parent.as_posix() for p in root.glob(f"*/{STUDY_JSON}")) if root.is_dir() else []
        hint = (
            f"it holds the studies {', '.join(inside)}: pass one of them"
            if inside
            else "pass the runs/<name> folder of a study that `mcu experiment` has run"
        )
        raise InputError(f"'{root}' is not one study's folder (it has no {STUDY_JSON}); {hint}")
    try:
        plan = json.loads(path.read_text()).get(PLAN_KEY)
    except (OSError, ValueError, AttributeError):
        plan = None
    if not isinstance(plan, list):
        raise InputError(
            f"'{path}' records no plan of stages (written by an older mcu-lightning, or damaged); run "
            "`mcu experiment` with the study's config once (complete stages are skipped) to record it"
        )
    return plan


def stage_states(root: Path) -> list[StageState]:
    """Each planned stage of the study in ``root`` with its state: complete, missing, interrupted or stale."""
    root = Path(root)
    plan = read_plan(root)
    records = {entry["name"]: StageRecord.read(root / entry["folder"] / STAGE_MARKER) for entry in plan}
    states = []
    for entry in plan:
        folder = root / entry["folder"]
        record = records[entry["name"]]
        expected = StageRecord(entry.get("fingerprint"), test_fingerprint=entry.get("test_fingerprint"))
        expected.legacy = entry.get("legacy")
        state, reason = "complete", ""
        if record is None:
            started = (folder / PARTIAL_MARKER).is_file()
            state, reason = ("interrupted", "started, not finished") if started else ("missing", "never ran")
        elif not record.same_fit(expected) or not record.same_test(expected):
            state, reason = "stale", "made with another config than the study's"
        elif damaged := record.damage(folder):
            state, reason = "stale", f"its outputs {', '.join(damaged)} changed or are gone since it ran"
        else:
            changed = [
                name
                for name in entry.get("depends", [])
                if records.get(name) is None or record.inputs.get(name) != outputs_digest(records[name].outputs)
            ]
            if changed:
                state, reason = "stale", f"the outputs of {', '.join(changed)} changed since it ran"
        states.append(StageState(entry["name"], entry["kind"], entry["folder"], state, reason))
    return states
