"""Question answering for causal LMs: the QA data module and what it is built from.

``datamodule`` (``QADataModule``) reads its rows from a source, ``tofu`` (TOFU's configs, from the Hub or a folder)
or ``fictitious`` (the generated set in TOFU's format); ``rows`` checks them, ``tokenization`` turns them into token
ids (prompt formatting, answer mask, truncation; ``templates`` are open-unlearning's per-model prompts),
``datasets`` holds the tokenized items and ``collate`` pads them into batches.
"""

from mcu_lightning.data.qa.collate import QACollator
from mcu_lightning.data.qa.datamodule import QADataModule
from mcu_lightning.data.qa.datasets import QADataset, QAEvalDataset
from mcu_lightning.data.qa.fictitious import (
    build_fictitious_tokenizer,
    fictitious_tokenizer_path,
    generate_fictitious,
    prepare_fictitious,
)
from mcu_lightning.data.qa.templates import PRESETS, PromptTemplate, resolve_template
from mcu_lightning.data.qa.tofu import TOFU_CONFIGS, load_tofu_split, load_tofu_splits
from mcu_lightning.data.qa.tokenization import QATokenizer, ensure_pad_token, format_qa

__all__ = [
    "PRESETS",
    "TOFU_CONFIGS",
    "PromptTemplate",
    "QACollator",
    "QADataModule",
    "QADataset",
    "QAEvalDataset",
    "QATokenizer",
    "build_fictitious_tokenizer",
    "ensure_pad_token",
    "fictitious_tokenizer_path",
    "format_qa",
    "generate_fictitious",
    "load_tofu_split",
    "load_tofu_splits",
    "prepare_fictitious",
    "resolve_template",
]
