"""The QA data module: TOFU (Hub or a local folder) or the generated fictitious-facts set.

Evaluation splits map to TOFU configs: ``forget -> {forget_split}_perturbed``, ``retain -> retain_perturbed``
(a subset of the retain authors), ``holdout -> holdout_split``, ``real_authors -> real_authors_perturbed``,
``world_facts -> world_facts_perturbed``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mcu_lightning.core.compat import OPEN_UNLEARNING, check_compat
from mcu_lightning.core.errors import InputError
from mcu_lightning.core.pretrained import resolve_pretrained
from mcu_lightning.data.base import UnlearningDataModule
from mcu_lightning.data.qa.collate import QACollator
from mcu_lightning.data.qa.datasets import QADataset, QAEvalDataset
from mcu_lightning.data.qa.fictitious import TOKENIZER_DIR, fictitious_root, prepare_fictitious
from mcu_lightning.data.qa.templates import TemplateSpec, resolve_template
from mcu_lightning.data.qa.tofu import (
    check_config,
    holdout_split_for,
    load_tofu_splits,
    perturbed_split_for,
    retain_split_for,
)
from mcu_lightning.data.qa.tokenization import ensure_pad_token
from mcu_lightning.data.samplers.curriculum import Curriculum

DATA_SOURCES = ("fictitious", "tofu")


def overlapping(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """The items of ``first`` that also occur in ``second`` (in ``first``'s order, without repeats)."""
    seen, other = set(), set(second)
    return [x for x in first if x in other and not (x in seen or seen.add(x))]


class QADataModule(UnlearningDataModule):
    """Forget/retain QA pairs and TOFU-style evaluation splits for causal LMs.

    ``data="fictitious"`` generates the embedded set (from ``data_seed`` and ``num_people``, independent of
    the training ``seed``) into ``data_root`` or ``cache_dir`` and uses its word-level tokenizer unless
    ``tokenizer`` is given; ``data="tofu"`` reads ``data_root`` (a folder of TOFU's JSON files) or the Hub and
    needs ``tokenizer`` (a path or Hub name). ``retain_split``/``holdout_split`` default to the ones matching
    ``forget_split`` (``forget10 -> retain90, holdout10``). ``finetune_split`` is a config, configs joined
    with ``+``, or ``forget``/``retain``/``holdout`` (this module's splits): the base model trains on ``full``,
    the oracle on ``retain``.

    ``template`` formats the prompts as open-unlearning does for a model: a preset name (``llama3_instruct``,
    ``llama2_chat``, ``phi_1_5``, ...; :data:`mcu_lightning.data.qa.templates.PRESETS`) or a mapping of its fields;
    ``None`` keeps this project's own format. After ``setup`` the module warns once when ``max_length`` cut any
    row, with the count and the ``max_length`` that keeps every row whole.

    ``max_rows`` sizes a run to a CPU: every config but the forget split (and its perturbed form) keeps its first
    ``max_rows`` rows (``max_rows: 40`` is two whole TOFU authors of each retain, holdout and evaluation config; the
    forget authors stay whole, so a base fine-tuned on ``forget01+retain99`` still knows all of them).

    ``compat`` (``"mcu"``, default, or ``"open_unlearning"``) chooses whose definitions the run follows where the
    two libraries differ (:mod:`mcu_lightning.core.compat`): the attention mask here, and through the modules the KL
    retain term, RMU's reduction and the generation prompts' mask.
    """

    task = "qa"
    default_eval_splits = ("forget", "retain", "holdout", "real_authors", "world_facts")

    def __init__(
        self,
        data: str = "fictitious",
        forget_split: str = "forget10",
        retain_split: str | None = None,
        holdout_split: str | None = None,
        tokenizer: str | None = None,
        max_length: int = 64,
        template: str | dict[str, Any] | None = None,
        data_root: str | None = None,
        cache_dir: str | None = None,
        data_seed: int = 0,
        num_people: int = 40,
        eval_splits: list[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        use_retain: bool = True,
        finetune_split: str | None = None,
        curriculum: Curriculum | None = None,
        compat: str | None = None,
        max_rows: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            use_retain=use_retain,
            finetune_split=finetune_split,
            curriculum=curriculum,
            eval_splits=eval_splits,
        )
        if data not in DATA_SOURCES:
            raise InputError(f"data={data!r}; use one of {DATA_SOURCES}")
        if data == "tofu" and tokenizer is None:
            raise InputError("data='tofu' needs tokenizer=<path or Hub name of the model's tokenizer>")
        self.save_hyperparameters(ignore=["curriculum"])
        self.data = data
        self.forget_split = check_config(forget_split)
        self.retain_split = check_config(retain_split or retain_split_for(forget_split))
        self.holdout_split = check_config(holdout_split or holdout_split_for(forget_split))
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        if max_rows is not None and max_rows < 1:
            raise InputError(f"max_rows={max_rows}; use a positive row count or leave it unset")
        self.max_rows = max_rows
        self.template: TemplateSpec | None = resolve_template(template)
        self._truncation_warned = False
        self.data_seed, self.num_people = data_seed, num_people
        if data == "fictitious":
            default = fictitious_root(cache_dir, data_seed, num_people)
            self.root: Path | None = Path(data_root).expanduser() if data_root else default
        else:
            self.root = Path(data_root).expanduser() if data_root else None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self.compat = check_compat(compat)

    @property
    def eval_configs(self) -> dict[str, str]:
        """Evaluation split name -> TOFU config."""
        return {
            "forget": perturbed_split_for(self.forget_split),
            "retain": "retain_perturbed",
            "holdout": self.holdout_split,
            "real_authors": "real_authors_perturbed",
            "world_facts": "world_facts_perturbed",
        }

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer (loaded on first use; the fictitious data is generated first when needed)."""
        if self._tokenizer is None:
            name = self.tokenizer_name
            if name is None or name == "fictitious":  # the generated word-level tokenizer of this data
                self.prepare_data()
                name = str(self.root / TOKENIZER_DIR)
            self._tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(resolve_pretrained(name)))
        return self._tokenizer

    def prepare_data(self) -> None:
        if self.data == "fictitious":
            prepare_fictitious(self.root, seed=self.data_seed, num_people=self.num_people)

    def load(self, spec: str) -> Any:
        if self.data == "fictitious":
            self.prepare_data()
        whole = (self.forget_split, perturbed_split_for(self.forget_split))
        return load_tofu_splits(spec, self.root, self.max_rows, whole)

    def load_forget_retain(self) -> tuple[QADataset, QADataset]:
        forget_rows, retain_rows = self.load(self.forget_split), self.load(self.retain_split)
        if len(forget_rows) == 0:
            raise InputError(f"forget split {self.forget_split!r} is empty; nothing to unlearn")
        shared = overlapping(forget_rows["question"], retain_rows["question"])
        if shared:
            raise InputError(
                f"{len(shared)} question(s) of forget split {self.forget_split!r} also appear in retain split "
                f"{self.retain_split!r}, e.g. {shared[0]!r}; pair matching splits (forget10 with retain90)"
            )
        return (
            QADataset(forget_rows, self.tokenizer, self.max_length, self.template),
            QADataset(retain_rows, self.tokenizer, self.max_length, self.template),
        )

    def load_finetune(self, split: str) -> QADataset:
        """A config, ``+``-joined configs, or the aliases ``forget``/``retain``/``holdout`` of this module's splits."""
        aliases = {"forget": self.forget_split, "retain": self.retain_split, "holdout": self.holdout_split}
        spec = "+".join(aliases.get(part.strip(), part.strip()) for part in split.split("+"))
        return QADataset(self.load(spec), self.tokenizer, self.max_length, self.template)

    def load_eval(self, split: str) -> QAEvalDataset:
        return QAEvalDataset(self.load(self.eval_configs[split]), self.tokenizer, self.max_length, self.template)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.warn_truncation()

    def warn_truncation(self) -> None:
        """Warn once (per module) when any dataset built so far had rows cut to ``max_length``."""
        if self._truncation_warned:
            return
        built = {self.forget_split: self.forget_dataset, self.retain_split: self.retain_dataset}
        built[str(self.finetune_split)] = self.finetune_dataset
        built.update({self.eval_configs[split]: data for split, data in self.eval_datasets.items()})
        cut = {name: data for name, data in built.items() if isinstance(data, QADataset) and data.truncated_rows}
        if not cut:
            return
        self._truncation_warned = True
        counts = ", ".join(f"{len(data.truncated_rows)} of {len(data)} {name}" for name, data in cut.items())
        needed = max(data.longest for data in built.values() if isinstance(data, QADataset))
        warnings.warn(
            f"max_length={self.max_length} truncated QA rows ({counts}); max_length={needed} keeps every row whole",
            stacklevel=2,
        )

    def collate_fn(self) -> QACollator:
        return QACollator(self.tokenizer.pad_token_id, mask_pad_ids=self.compat == OPEN_UNLEARNING)
