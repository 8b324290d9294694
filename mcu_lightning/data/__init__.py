"""Data layer: TOFU and fictitious QA sets, classification sets, curriculum samplers, data modules."""

from mcu_lightning.data.base import UnlearningDataModule
from mcu_lightning.data.classification import (
    ClassificationCollator,
    ClassificationDataset,
    ClassificationParts,
    load_digits_parts,
    load_hf_parts,
    select_forget,
)
from mcu_lightning.data.classification_datamodule import ClassificationDataModule
from mcu_lightning.data.fictitious import (
    build_fictitious_tokenizer,
    fictitious_tokenizer_path,
    generate_fictitious,
    prepare_fictitious,
)
from mcu_lightning.data.paired import KeyedCollator, PairedDataset
from mcu_lightning.data.qa import QACollator, QADataset, QAEvalDataset, QATokenizer, ensure_pad_token, format_qa
from mcu_lightning.data.qa_datamodule import QADataModule
from mcu_lightning.data.samplers import (
    Curriculum,
    CurriculumSampler,
    ExponentialPacing,
    ForgetRetainSampler,
    LinearPacing,
    Pacing,
    RootPacing,
    StepPacing,
)
from mcu_lightning.data.templates import PRESETS, PromptTemplate, resolve_template
from mcu_lightning.data.tofu import TOFU_CONFIGS, load_tofu_split, load_tofu_splits

__all__ = [
    "PRESETS",
    "TOFU_CONFIGS",
    "ClassificationCollator",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ClassificationParts",
    "Curriculum",
    "CurriculumSampler",
    "ExponentialPacing",
    "ForgetRetainSampler",
    "KeyedCollator",
    "LinearPacing",
    "Pacing",
    "PairedDataset",
    "PromptTemplate",
    "QACollator",
    "QADataModule",
    "QADataset",
    "QAEvalDataset",
    "QATokenizer",
    "RootPacing",
    "StepPacing",
    "UnlearningDataModule",
    "build_fictitious_tokenizer",
    "ensure_pad_token",
    "fictitious_tokenizer_path",
    "format_qa",
    "generate_fictitious",
    "load_digits_parts",
    "load_hf_parts",
    "load_tofu_split",
    "load_tofu_splits",
    "prepare_fictitious",
    "resolve_template",
    "select_forget",
]
