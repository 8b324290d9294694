"""``compat: open_unlearning`` reproduces open-unlearning's definitions; the default keeps ours.

Each expected value is computed here by hand from open-unlearning's code as written (``src/data/collators.py``,
``src/trainer/utils.py`` ``compute_kl_divergence``, ``src/trainer/unlearn/rmu.py`` ``compute_activation_loss``), on a
batch with unequal answer lengths and a Llama-3-style chat template whose end-of-turn token is also the pad token.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mcu_lightning.core.compat import check_compat
from mcu_lightning.core.errors import InputError
from mcu_lightning.data.qa import QACollator, QADataset
from mcu_lightning.losses import NPO, RMU, GradDiff, SuperLoss
from mcu_lightning.losses.rmu import activation_loss, activation_loss_open_unlearning
from tests.data.test_templates import LLAMA3_TEMPLATE, _byte_level
from tests.losses.tiny_lm import VOCAB, tiny_llama

ROWS = [
    {"question": "Who wrote the book?", "answer": "The book was written by Basil Mahfouz Al-Kuwaiti."},
    {"question": "Where was the author born?", "answer": "Kuwait City."},
]


@pytest.fixture(scope="module")
def llama3():
    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = _byte_level(special, bos="<|begin_of_text|>", eos="<|eot_id|>")
    tok.chat_template = LLAMA3_TEMPLATE
    tok.pad_token = tok.eos_token  # open-unlearning's Llama-3 configs: pad = eos
    return tok


def _batch(tokenizer, mask_pad_ids: bool) -> dict:
    data = QADataset(ROWS, tokenizer, max_length=256, template="llama3_instruct")
    return QACollator(tokenizer.pad_token_id, mask_pad_ids=mask_pad_ids)([data[0], data[1]])


def test_check_compat_names_the_modes():
    assert check_compat(None) == "mcu"
    assert check_compat("open_unlearning") == "open_unlearning"
    with pytest.raises(
        InputError, match=r"compat='open-unlearning' is not a mode; use one of \['mcu', 'open_unlearning'\]"
    ):
        check_compat("open-unlearning")


def test_collator_masks_every_pad_id_like_open_unlearning(llama3):
    ours, theirs = _batch(llama3, False), _batch(llama3, True)
    ids = ours["input_ids"]
    assert torch.equal(ids, theirs["input_ids"]) and torch.equal(ours["labels"], theirs["labels"])
    eot = llama3.convert_tokens_to_ids("<|eot_id|>")
    # open-unlearning: attention_mask = input_ids.ne(pad_token_id), written out element by element
    expected = torch.tensor([[int(token != eot) for token in row] for row in ids.tolist()])
    assert torch.equal(theirs["attention_mask"], expected)
    # the system turn's <|eot_id|> inside the prompt: hidden there, attended to here
    first_eot = ids[0].tolist().index(eot)
    assert first_eot < (ours["labels"][0] != -100).nonzero()[0].item()
    assert theirs["attention_mask"][0, first_eot] == 0 and ours["attention_mask"][0, first_eot] == 1
    lengths = [len(QADataset([row], llama3, 256, "llama3_instruct")[0]["input_ids"]) for row in ROWS]
    assert ours["attention_mask"].sum(1).tolist() == lengths  # ours: only the padding


def _kl_by_hand_all_positions(logits, ref_logits):
    b, length, _ = logits.shape
    total = 0.0
    for i in range(b):
        for t in range(length):
            log_p = F.log_softmax(logits[i, t].double(), -1)
            log_r = F.log_softmax(ref_logits[i, t].double(), -1)
            total += float((log_r.exp() * (log_r - log_p)).sum())
    return total / (b * length)


def _kl_by_hand_answer_tokens(logits, ref_logits, labels):
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for t in range(logits.shape[1] - 1):
            if labels[i, t + 1] == -100:
                continue
            log_p = F.log_softmax(logits[i, t].double(), -1)
            log_r = F.log_softmax(ref_logits[i, t].double(), -1)
            total, count = total + float((log_r.exp() * (log_r - log_p)).sum()), count + 1
    return total / count


def _unequal_batch(seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, 9), generator=generator)
    labels = ids.clone()
    labels[0, :3] = -100  # six answer tokens
    labels[1, :3] = -100
    labels[1, 5:] = -100  # two answer tokens, then padding
    ids[1, 5:] = 0
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "index": torch.arange(2)}


@pytest.mark.parametrize("loss_class", [GradDiff, NPO])
def test_kl_retain_term_open_unlearning_vs_ours(loss_class):
    policy, reference = tiny_llama(0), tiny_llama(1)
    batch = {"forget": _unequal_batch(0), "retain": _unequal_batch(1)}
    retain = batch["retain"]
    inputs = {k: retain[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits, ref_logits = policy(**inputs).logits, reference(**inputs).logits
    call = lambda m: lambda b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"])  # noqa: E731
    values = {}
    for mode in ("mcu", "open_unlearning"):
        loss = loss_class(retain_loss="kl", gamma=0.0)  # the retain term alone
        loss.set_compat(mode)
        values[mode] = loss(call(policy), batch, call(reference)).logs["retain_loss"].item()
    assert values["open_unlearning"] == pytest.approx(_kl_by_hand_all_positions(logits, ref_logits), rel=1e-5)
    assert values["mcu"] == pytest.approx(_kl_by_hand_answer_tokens(logits, ref_logits, retain["labels"]), rel=1e-5)
    assert not math.isclose(values["mcu"], values["open_unlearning"], rel_tol=1e-3)


def test_wrappers_pass_compat_on():
    inner = GradDiff(retain_loss="kl")
    wrapped = SuperLoss(inner)
    wrapped.set_compat("open_unlearning")
    assert inner.compat == wrapped.compat == "open_unlearning"
    with pytest.raises(InputError, match="is not a mode"):
        wrapped.set_compat("hf")


def test_rmu_reduction_open_unlearning_vs_ours():
    torch.manual_seed(0)
    activations, target = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)  # 3 and 1 answer tokens
    per_token = ((activations - target) ** 2).mean(-1)
    sums = [float((per_token[b] * mask[b]).sum()) for b in range(2)]
    counts = [3.0, 1.0]
    # open-unlearning: ([b] sums) / ([b, 1] counts) -> [b, b], then .mean(): mean_j mean_b S_b / n_j
    theirs = sum(s / n for s in sums for n in counts) / 4
    ours = (sums[0] / 3 + sums[1] / 1) / 2
    assert theirs == pytest.approx(sum(sums) / 2 * (1 / 3 + 1) / 2)
    assert activation_loss_open_unlearning(activations, target, mask).item() == pytest.approx(theirs, rel=1e-6)
    assert activation_loss(activations, target, mask).item() == pytest.approx(ours, rel=1e-6)
    assert not math.isclose(theirs, ours, rel_tol=1e-3)
    even = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)  # equal lengths: the two agree
    assert activation_loss_open_unlearning(activations, target, even).item() == pytest.approx(
        activation_loss(activations, target, even).item(), rel=1e-6
    )


def test_rmu_loss_follows_the_switch():
    model, reference = tiny_llama(0), tiny_llama(0)
    batch = {"forget": _unequal_batch(0), "retain": _unequal_batch(1)}
    call = lambda m: lambda b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"])  # noqa: E731
    values = {}
    for mode in ("mcu", "open_unlearning"):
        loss = RMU(steering_coeff=2.0)
        loss.attach(model, reference)
        loss.set_compat(mode)
        values[mode] = loss(call(model), batch, call(reference)).logs["forget_rmu"].item()
    assert not math.isclose(values["mcu"], values["open_unlearning"], rel_tol=1e-3)
    assert RMU().steering_coeff == 2.0  # open-unlearning's shipped configs/trainer/RMU.yaml


class _RecordingLM(torch.nn.Module):
    """A stand-in with ``generate`` that records the attention mask it is given and returns the prompt."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.masks.append(attention_mask.clone())
        return input_ids


def test_generation_prompts_masked_like_open_unlearning(llama3):
    from mcu_lightning.metrics import QASuite

    eot = llama3.convert_tokens_to_ids("<|eot_id|>")
    prompts = [torch.tensor([5, eot, 7, 8]), torch.tensor([9, eot])]
    masks = {}
    for mode in ("mcu", "open_unlearning"):
        suite = QASuite(rouge=True)
        suite.bind(llama3)
        suite.set_compat(mode)
        model = _RecordingLM()
        suite._generate(model, prompts)
        masks[mode] = model.masks[0]
    assert masks["mcu"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert masks["open_unlearning"].tolist() == [[1, 0, 1, 1], [0, 0, 1, 0]]


def test_module_hands_the_data_modules_switch_to_loss_and_suite():
    from types import SimpleNamespace

    from mcu_lightning.metrics import QASuite
    from mcu_lightning.modules import UnlearningModule

    loss, suite = GradDiff(retain_loss="kl"), QASuite()
    module = UnlearningModule(tiny_llama(0), loss, suite=suite, export=False)
    strategy = SimpleNamespace(root_device=torch.device("meta"))  # not a CPU run: no thread choice here
    module._trainer = SimpleNamespace(
        strategy=strategy, datamodule=SimpleNamespace(compat="open_unlearning", tokenizer=None)
    )
    module.setup("test")
    assert loss.compat == suite.compat == "open_unlearning"
    module._trainer = SimpleNamespace(strategy=strategy, datamodule=SimpleNamespace(tokenizer=None))  # no switch there
    module.setup("test")
    assert loss.compat == suite.compat == "mcu"


def test_data_module_switch_is_checked_before_anything_runs():
    from mcu_lightning.data import QADataModule

    assert QADataModule().compat == "mcu"
    assert QADataModule(compat="open_unlearning").compat == "open_unlearning"
    with pytest.raises(InputError, match="compat='OU' is not a mode"):
        QADataModule(compat="OU")
