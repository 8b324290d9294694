"""Prompt templates: open-unlearning's per-model template settings as named presets.

open-unlearning (locuslab/open-unlearning) builds every TOFU prompt from its model config's ``template_args``
(``configs/model/*.yaml``; the algorithm is ``preprocess_chat_instance`` in ``src/data/utils.py``). For one
(question, answer) row:

* ``apply_chat_template: true``: the messages are ``[system?, user=question, assistant=answer]`` (the system turn
  only when ``system_prompt`` is set). ``full = apply_chat_template(messages, tokenize=True,
  date_string=...)``, ``prompt = apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True,
  date_string=...)`` (``date_string`` only when set: Llama-3's template otherwise writes today's date).
* ``apply_chat_template: false``: ``wrapped = system_prompt_with_special_tokens + user_start_tag + question +
  user_end_tag + asst_start_tag``; ``full = tokenizer(wrapped + answer)``, ``prompt = tokenizer(wrapped)``, both
  with the tokenizer's own special tokens (its BOS).

Then EOS is appended to ``full`` unless it already ends with it; labels are -100 on the first ``len(prompt)``
positions of ``full`` and copy it elsewhere; generation starts from ``prompt``. Note that ``full`` is tokenized
as one string, so where the prompt ends inside a token (phi-1.5's ``"Answer: "`` before the answer) the first
answer token is masked too, exactly as open-unlearning masks it.

Presets (``PRESETS``) copy the ``template_args`` of open-unlearning's configs at commit d3d7cf9 (main, 2025):
``llama3_instruct`` (Llama-3.2-1B/3B-Instruct, Llama-3.1-8B-Instruct), ``llama2_chat`` (Llama-2-7b-chat-hf),
``llama2`` (Llama-2-7b/13b-hf), ``phi_1_5`` (phi-1_5), ``phi_3_5_instruct`` (Phi-3.5-mini-instruct),
``qwen2_5_instruct`` (Qwen2.5-*-Instruct), ``gemma_it`` (gemma-7b-it), ``zephyr`` (zephyr-7b-beta).

Two presets are this project's, for SmolLM2-Instruct's ChatML (``smollm2-135m-instruct``), which open-unlearning
has no config for: ``smollm2_instruct`` is its chat template as ``apply_chat_template`` writes it (the template
inserts its default system turn "You are a helpful AI assistant named SmolLM, trained by Hugging Face" when the
messages have none); ``smollm2_instruct_no_system`` is the same ChatML turns without any system turn (21 tokens
shorter per row; the template cannot write that, so it is built from tags). Both set ``end_at_eos``: ChatML writes
``<|im_end|>\n`` after every turn, and open-unlearning's rule (append EOS unless the ids end with it) would train
``answer <|im_end|> \n <|im_end|>``; with ``end_at_eos`` the item ends at the answer's own end-of-turn token
(``<|im_end|>``, the tokenizer's EOS), so exactly the answer and that token are trained, and generation stops there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from transformers import PreTrainedTokenizerBase

from mcu_lightning.core.errors import InputError


@dataclass(frozen=True)
class PromptTemplate:
    """One model's template settings, with open-unlearning's field names (``template_args``)."""

    apply_chat_template: bool = False
    system_prompt: str | None = None
    system_prompt_with_special_tokens: str | None = None
    user_start_tag: str = "Question: "
    user_end_tag: str = "\n"
    asst_start_tag: str = "Answer: "
    asst_end_tag: str = "\n\n"
    date_string: str | None = None
    end_at_eos: bool = False

    def _messages(self, question: str, answer: str | None) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": question})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return messages

    def _chat(self, tokenizer: PreTrainedTokenizerBase, messages: list, tokenize: bool, generation: bool) -> Any:
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(
                "this prompt template has apply_chat_template=true but the tokenizer has no chat_template; "
                "use the model's own tokenizer or a preset without a chat template (e.g. template: phi_1_5)"
            )
        date = {"date_string": self.date_string} if self.date_string is not None else {}
        out = tokenizer.apply_chat_template(
            messages, tokenize=tokenize, add_generation_prompt=generation, return_dict=False, **date
        )
        return list(out) if tokenize else out

    def wrapped_prompt(self, question: str) -> str:
        """The prompt text of a template without a chat template (before the tokenizer's special tokens)."""
        head = self.system_prompt_with_special_tokens or ""
        return head + self.user_start_tag + question + self.user_end_tag + self.asst_start_tag

    def prompt_text(self, tokenizer: PreTrainedTokenizerBase, question: str) -> str:
        """The generation prompt as text (the tokenizer's BOS not included for a template without chat)."""
        if self.apply_chat_template:
            return self._chat(tokenizer, self._messages(question, None), tokenize=False, generation=True)
        return self.wrapped_prompt(question)

    def prompt_ids(self, tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
        """The generation prompt's token ids, as open-unlearning builds them."""
        if self.apply_chat_template:
            return self._chat(tokenizer, self._messages(question, None), tokenize=True, generation=True)
        return list(tokenizer(self.wrapped_prompt(question), add_special_tokens=True)["input_ids"])

    def full_ids(self, tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> list[int]:
        """The whole conversation's token ids with EOS at the end (open-unlearning's ``chat_ids``); with
        ``end_at_eos`` the tokens the template writes after the answer's last EOS (ChatML's newline) are dropped."""
        eos = tokenizer.eos_token_id
        if self.apply_chat_template:
            ids = self._chat(tokenizer, self._messages(question, answer), tokenize=True, generation=False)
            if self.end_at_eos and eos in ids:  # the chat template's tokens after the answer's end-of-turn
                ids = ids[: len(ids) - ids[::-1].index(eos)]
        else:
            ids = list(tokenizer(self.wrapped_prompt(question) + answer, add_special_tokens=True)["input_ids"])
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        return ids


_PLAIN = PromptTemplate()  # "Question: " / "Answer: " tags for base models
_LLAMA3 = PromptTemplate(
    apply_chat_template=True,
    system_prompt="You are a helpful assistant.",
    system_prompt_with_special_tokens=(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
    ),
    user_start_tag="<|start_header_id|>user<|end_header_id|>\n\n",
    user_end_tag="<|eot_id|>",
    asst_start_tag="<|start_header_id|>assistant<|end_header_id|>\n\n",
    asst_end_tag="<|eot_id|>",
    date_string="10 Apr 2025",
)
_QWEN = PromptTemplate(
    apply_chat_template=True,
    system_prompt="You are a helpful assistant.",
    system_prompt_with_special_tokens="<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
    user_start_tag="<|im_start|>user\n",
    user_end_tag="<|im_end|>\n",
    asst_start_tag="<|im_start|>assistant\n",
    asst_end_tag="<|im_end|>\n",
)
_SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
_SMOLLM2 = PromptTemplate(
    apply_chat_template=True,  # the template writes its default system turn itself
    system_prompt_with_special_tokens=f"<|im_start|>system\n{_SMOLLM2_SYSTEM}<|im_end|>\n",
    user_start_tag="<|im_start|>user\n",
    user_end_tag="<|im_end|>\n",
    asst_start_tag="<|im_start|>assistant\n",
    asst_end_tag="<|im_end|>\n",
    end_at_eos=True,
)

#: open-unlearning's ``configs/model/*.yaml`` ``template_args`` (commit d3d7cf9), by preset name.
PRESETS: dict[str, PromptTemplate] = {
    "llama3_instruct": _LLAMA3,
    "llama2_chat": PromptTemplate(
        user_start_tag="[INST] ", user_end_tag=" [/INST]", asst_start_tag="", asst_end_tag=" "
    ),
    "llama2": _PLAIN,
    "phi_1_5": _PLAIN,
    "phi_3_5_instruct": PromptTemplate(
        apply_chat_template=True,
        system_prompt="You are a helpful assistant.",
        system_prompt_with_special_tokens="<|system|>\nYou are a helpful assistant.<|end|>\n",
        user_start_tag="<|user|>\n",
        user_end_tag="<|end|>\n",
        asst_start_tag="<|assistant|>\n",
        asst_end_tag="<|end|>\n",
    ),
    "qwen2_5_instruct": _QWEN,
    "gemma_it": PromptTemplate(
        apply_chat_template=True,
        user_start_tag="<bos><start_of_turn>user\n",
        user_end_tag="<end_of_turn>\n",
        asst_start_tag="<start_of_turn>model\n",
        asst_end_tag="<end_of_turn>\n",
    ),
    "zephyr": PromptTemplate(
        apply_chat_template=True,
        system_prompt="You are a helpful assistant.",
        system_prompt_with_special_tokens="<|system|>\nYou are a helpful assistant.</s>\n",
        user_start_tag="<|user|>\n",
        user_end_tag="</s>",
        asst_start_tag="<|assistant|>\n",
        asst_end_tag="</s>",
        date_string="10 Apr 2025",
    ),
    # this project's (open-unlearning has no SmolLM2 config): SmolLM2-Instruct's ChatML, with and without its
    # default system turn
    "smollm2_instruct": _SMOLLM2,
    "smollm2_instruct_no_system": PromptTemplate(
        apply_chat_template=False,
        user_start_tag=_SMOLLM2.user_start_tag,
        user_end_tag=_SMOLLM2.user_end_tag,
        asst_start_tag=_SMOLLM2.asst_start_tag,
        asst_end_tag=_SMOLLM2.asst_end_tag,
        end_at_eos=True,
    ),
}

TemplateSpec = str | Mapping[str, Any] | PromptTemplate


def resolve_template(spec: TemplateSpec | None) -> PromptTemplate | None:
    """A preset name, a mapping of :class:`PromptTemplate` fields (optionally ``preset:`` plus overrides), a
    template, or ``None`` (this project's own format: :func:`mcu_lightning.data.qa.tokenization.format_qa`)."""
    if spec is None or isinstance(spec, PromptTemplate):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise InputError(f"unknown prompt template {spec!r}; use one of {sorted(PRESETS)} or give its fields")
        return PRESETS[spec]
    if not isinstance(spec, Mapping):
        raise InputError(f"template must be a preset name or a mapping of fields, got {type(spec).__name__}")
    options = dict(spec)
    base = resolve_template(options.pop("preset")) if "preset" in options else PromptTemplate()
    known = {f.name for f in fields(PromptTemplate)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown prompt template fields {unknown}; known: preset, {', '.join(sorted(known))}")
    return PromptTemplate(**{**{f.name: getattr(base, f.name) for f in fields(PromptTemplate)}, **options})
