"""Data layer: the data modules and what they are built from.

Shared by every task: ``base`` (``UnlearningDataModule``: forget/retain training pairs, named evaluation splits),
``samplers`` (forget/retain pairs, the fine-tuning order, the curriculum and its pacing), ``paired`` (the
forget/retain batch), ``loader`` (exact mid-epoch resume) and ``padding``. The tasks: ``qa`` (TOFU and the generated
fictitious set, for causal LMs) and ``classification`` (MU-Bench style image and text sets).
"""

from mcu_lightning.data.base import UnlearningDataModule
from mcu_lightning.data.classification import (
    ClassificationCollator,
    ClassificationDataModule,
    ClassificationDataset,
    ClassificationParts,
    load_digits_parts,
    load_hf_parts,
    select_forget,
)
from mcu_lightning.data.paired import KeyedCollator, PairedDataset
from mcu_lightning.data.qa import (
    PRESETS,
    TOFU_CONFIGS,
    PromptTemplate,
    QACollator,
    QADataModule,
    QADataset,
    QAEvalDataset,
    QATokenizer,
    build_fictitious_tokenizer,
    ensure_pad_token,
    fictitious_tokenizer_path,
    format_qa,
    generate_fictitious,
    load_tofu_split,
    load_tofu_splits,
    prepare_fictitious,
    resolve_template,
)
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
