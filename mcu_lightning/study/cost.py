"""What a study's evaluation will cost, stated before it runs, and refused above a bound unless asked for.

The unit is one *suite pass*: the metric suite over one evaluation split for one model. A study makes

    passes = splits x (models tested once + sum over curves of points of t + sum over planes of points^2)

where the models tested once are the base, the oracle, each endpoint, merge and ensemble. A QA suite generates
up to ``max_new_tokens`` tokens for every row of a split in each pass (ROUGE), which dominates on a language
model. ``eval_ts: 100000`` is a typo that runs for hours: above :data:`MAX_PASSES` the study stops before any
stage unless ``--yes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcu_lightning.study.schema import Study, StudyError

#: Suite passes a study may make without ``--yes`` (the shipped studies make 185 to 385).
MAX_PASSES = 20_000


@dataclass
class EvaluationCost:
    splits: int
    models: int
    curve_points: int
    plane_points: int
    max_new_tokens: int | None = None

    @property
    def passes(self) -> int:
        return self.splits * (self.models + self.curve_points + self.plane_points)

    def line(self) -> str:
        points = f"{self.models} models + {self.curve_points} curve points"
        if self.plane_points:
            points += f" + {self.plane_points} plane points"
        generation = f", each generating up to {self.max_new_tokens} tokens a row" if self.max_new_tokens else ""
        return f"{self.splits} splits x ({points}) = {self.passes} suite passes{generation}"


def evaluation_cost(study: Study, splits: int, suite: Any) -> EvaluationCost:
    """The cost of ``study`` with ``splits`` evaluation splits and its built ``suite``."""
    from mcu_lightning.curves.sampling import t_grid

    points = len(t_grid(study.evaluation.eval_ts))
    models = 2 + len(study.endpoints) + len(study.merges) + sum(len(c.ensembles) for c in study.curves)
    planes = sum(c.plane.points**2 for c in study.curves if c.plane is not None)
    tokens = getattr(suite, "max_new_tokens", None)
    tokens = tokens if isinstance(tokens, int) else None
    return EvaluationCost(splits, models, points * len(study.curves), planes, tokens)


def check_cost(cost: EvaluationCost, yes: bool) -> None:
    """Raise :class:`StudyError` when ``cost`` is above :data:`MAX_PASSES` and ``yes`` is not set."""
    if cost.passes > MAX_PASSES and not yes:
        raise StudyError(
            f"the evaluation would make {cost.line()}, above the {MAX_PASSES} a study makes without asking; "
            "lower evaluation.eval_ts (or a plane's points), or pass --yes to run it as it is"
        )
