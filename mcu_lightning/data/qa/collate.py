"""QA items -> a batch: training keys padded on the right, ``prompt_*`` keys on the LEFT (for ``generate``), perturbed
answers stacked to ``[B, K, L]``. Batch keys follow docs/internals.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mcu_lightning.core.per_sample import IGNORE_INDEX
from mcu_lightning.data.padding import pad_sequences, padding_mask


class QACollator:
    """Pads QA items into a batch (keys of docs/internals.md); picklable for worker processes.

    ``mask_pad_ids=True`` is open-unlearning's attention mask (``compat: open_unlearning``,
    :mod:`mcu_lightning.core.compat`): ``input_ids != pad_token_id`` on the training and scoring keys, so with
    ``pad = eos`` every real end-of-turn token inside a sequence is hidden too. By default only the padding is masked.
    ``prompt_attention_mask`` always marks the padding (the suite strips it, then masks its generation prompts).
    """

    def __init__(self, pad_token_id: int, mask_pad_ids: bool = False) -> None:
        self.pad_token_id = pad_token_id
        self.mask_pad_ids = mask_pad_ids

    def _pair(self, prefix: str, ids: list, labels: list, out: dict[str, Any]) -> None:
        input_ids = pad_sequences(ids, self.pad_token_id)
        out[f"{prefix}input_ids"] = input_ids
        if self.mask_pad_ids:
            out[f"{prefix}attention_mask"] = (input_ids != self.pad_token_id).long()
        else:
            out[f"{prefix}attention_mask"] = padding_mask(ids, input_ids.shape[1])
        out[f"{prefix}labels"] = pad_sequences(labels, IGNORE_INDEX, length=input_ids.shape[1])

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._pair("", [it["input_ids"] for it in items], [it["labels"] for it in items], out)
        out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        first = items[0]
        if "paraphrased_input_ids" in first:
            self._pair(
                "paraphrased_",
                [it["paraphrased_input_ids"] for it in items],
                [it["paraphrased_labels"] for it in items],
                out,
            )
        if "perturbed_input_ids" in first:
            k = len(first["perturbed_input_ids"])
            flat = {}
            ids = [s for it in items for s in it["perturbed_input_ids"]]
            labels = [s for it in items for s in it["perturbed_labels"]]
            self._pair("", ids, labels, flat)
            for key, value in flat.items():
                out[f"perturbed_{key}"] = value.view(len(items), k, -1)
        if "prompt_input_ids" in first:
            prompts = [it["prompt_input_ids"] for it in items]
            out["prompt_input_ids"] = pad_sequences(prompts, self.pad_token_id, left=True)
            out["prompt_attention_mask"] = padding_mask(prompts, out["prompt_input_ids"].shape[1], left=True)
        for key in ("answer", "question"):
            if key in first:
                out[key] = [it[key] for it in items]
        return out
