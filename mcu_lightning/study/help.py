"""What ``mcu experiment --help`` says of each study field and group (the dataclasses' docstrings say more).

jsonargparse shows a dataclass field's help only from docstring sections it can parse, and titles a group with the
first line of its class's docstring, which our wrapped docstrings cut mid-sentence; :func:`describe` sets both from
the tables here. A test keeps every option of the parser described.
"""

from __future__ import annotations

from typing import Any

_TRAIN = {
    "max_epochs": "epochs to train (set this or max_steps, not both)",
    "max_steps": "optimizer steps to train (-1: bounded by max_epochs)",
    "optimizer": "a torch optimizer as a class spec, e.g. {class_path: torch.optim.AdamW, init_args: {lr: 0.001}}",
    "lr_scheduler": "a transformers.get_scheduler name: constant, linear, cosine, ...",
    "warmup_steps": "warmup in optimizer steps, or a fraction of all steps when below 1",
    "batch_size": "the stage's batch size (default: the data module's)",
}
_MODEL_STAGE = {
    "": "the {node}: an existing model (path, only tested) or one trained here (model, split, train)",
    "path": "a model folder or Hub id to test as the {node} (then nothing is trained)",
    "model": "the model to train, as a class spec or factory (default for the oracle: the base's)",
    "split": "the data it trains on; a+b joins splits (default: {split})",
    "train": "how the {node} trains (epochs or steps, optimizer, schedule)",
}

#: Option (dotted) -> its help line.
FIELD_HELP: dict[str, str] = {
    "name": "the study's name: its folder under output_dir",
    "data": "the data module, a class spec (e.g. mcu_lightning.data.QADataModule with data, forget_split, tokenizer)",
    "evaluation": "how every stage is tested",
    "evaluation.suite": "the metric suite, a class spec (mcu_lightning.metrics.QASuite or ClassificationSuite)",
    "evaluation.eval_ts": "points of t at which each curve is tested (evenly spaced on [0, 1], ends included)",
    "evaluation.bn_batches": "retain batches for a curve's BatchNorm recompute at each t (null: all)",
    "evaluation.probes": "robustness probes run by every test, class specs of mcu_lightning.probes (Relearn, ...)",
    "endpoints": "the unlearning runs from the base, each {name, loss (class spec), train, seed, curriculum, "
    "superloss, lora, data, during_training, select, seeds}; `--endpoints.help Endpoint` lists them",
    "curves": "the curves, each {name, endpoints: [a, b] (endpoint names, base or oracle), shape, init, t_sampler, "
    "objective, train, path, ensembles, plane, export_best, ...}; `--curves.help CurveSpec` lists them",
    "merges": "task-vector merges of endpoints, each {name, endpoints, method: task_arithmetic|ties, scale, density}",
    "output_dir": "where the study's folder goes",
    "seed": "the seed of the base and the oracle",
    "seeds": "run every endpoint and curve once per seed (stages <name>-s<seed>; the report aggregates over them)",
    "trainer": "Lightning Trainer arguments for every stage (accelerator, devices, precision, ...)",
    "progress": "show Lightning's progress bars",
    "checkpoint_every_n_steps": "save a resumable checkpoint every this many steps within a stage (null: per epoch)",
    "guard": "the divergence guard watching every training, a class spec (null: none)",
}
for _node, _split in (("base", "full"), ("oracle", "retain")):
    for _key, _text in _MODEL_STAGE.items():
        FIELD_HELP[f"{_node}.{_key}" if _key else _node] = _text.format(node=_node, split=_split)
    for _key, _text in _TRAIN.items():
        FIELD_HELP[f"{_node}.train.{_key}"] = _text

#: Group (dotted key) -> its heading.
GROUP_TITLES: dict[str, str] = {
    "evaluation": "evaluation: the suite, the t grid and the probes",
    "base": "base: the model that unlearns",
    "base.train": "base.train: how the base is trained",
    "oracle": "oracle: the model never trained on the forget set",
    "oracle.train": "oracle.train: how the oracle is trained",
}


def describe(parser: Any) -> Any:
    """Set the help of every option in :data:`FIELD_HELP` and the heading of every group in :data:`GROUP_TITLES`."""
    for action in parser._actions:
        if action.dest in FIELD_HELP:
            action.help = FIELD_HELP[action.dest]
    for key, group in getattr(parser, "groups", {}).items():
        if key in GROUP_TITLES:
            group.title, group.description = GROUP_TITLES[key], None
    return parser
