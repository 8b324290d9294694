"""Which library's definitions to follow where this project deliberately differs: the ``compat`` switch.

``"mcu"`` (the default) keeps this project's definitions; ``"open_unlearning"`` reproduces locuslab/open-unlearning
exactly, for comparisons with its published numbers. The switch is set once, on the data module (``compat:`` of
``QADataModule``, or of a study), and the modules hand it to the loss and the suite. What it changes:

* **Attention mask** (``mcu_lightning.data.qa.QACollator``): open-unlearning's collator sets
  ``attention_mask = input_ids != pad_token_id`` (``src/data/collators.py``), and with ``pad = eos`` every real
  end-of-turn token (Llama-3's ``<|eot_id|>``, zephyr's ``</s>``) is hidden from the tokens after it (its issue
  #128). Ours masks only the padding. Generation prompts are masked the same way under the switch.
* **KL retain term** (``mcu_lightning.losses.kl``): open-unlearning's ``compute_kl_divergence``
  (``src/trainer/utils.py``) averages ``KL(p_ref || p_theta)`` over all ``B * L`` positions (``batchmean`` over
  ``logits.view(-1, V)``: prompt and padding included, unshifted). Ours averages over the answer tokens.
* **RMU's reduction** (``mcu_lightning.losses.rmu``): open-unlearning's ``compute_activation_loss``
  (``src/trainer/unlearn/rmu.py``) divides a ``[b]`` vector of per-sample sums by a ``[b, 1]`` token count, which
  broadcasts to ``[b, b]`` and averages to ``mean(S) * mean(1 / n)``. Ours computes the intended ``mean(S / n)``;
  the two agree when every answer has the same length.
* **UNDIAL's and PDU's positions** (``mcu_lightning.losses.undial``, ``mcu_lightning.losses.pdu``): open-unlearning
  averages UNDIAL's cross-entropy over every position (a label -100 lowering token ``V - 100``) and PDU's logit gap
  over the logits at the answer positions, unshifted. Ours use the logits that predict the answer tokens.
"""

from __future__ import annotations

from mcu_lightning.core.errors import InputError

MCU = "mcu"
OPEN_UNLEARNING = "open_unlearning"
COMPAT_MODES: tuple[str, ...] = (MCU, OPEN_UNLEARNING)


def check_compat(mode: str | None) -> str:
    """``mode`` as one of :data:`COMPAT_MODES` (``None`` means ``"mcu"``), or one line naming the choices."""
    if mode is None:
        return MCU
    if mode not in COMPAT_MODES:
        raise InputError(f"compat={mode!r} is not a mode; use one of {list(COMPAT_MODES)} (default {MCU!r})")
    return mode
