import math

import pytest
import torch
from tiny_lm import one_unlearning_step, two_token_example

from mcu_lightning.losses import PDU

GAP = (2 * math.log(2) / 3) ** 2 / 2  # position 0: (ln 2 - ln 2 / 3)^2; position 1 (uniform): 0; mean of 2
RETAIN = -(math.log(1 / 2) + math.log(1 / 3)) / 2  # the example's token-mean NLL, used as its own retain batch


def example() -> tuple[torch.Tensor, dict]:
    logits, batch = two_token_example()
    batch["retain"] = batch["forget"]
    return logits, batch


def test_defaults_are_open_unlearnings():
    loss = PDU(retain_loss_eps=0.5)  # configs/trainer/PDU.yaml: eps required, primal-dual, step 1, gamma 1, alpha 1
    assert (loss.primal_dual, loss.dual_step_size, loss.gamma, loss.alpha, loss.retain_loss) == (
        True, 1.0, 1.0, 1.0, "nll"
    )  # fmt: skip
    assert float(loss.retain_preference) == 1.0
    with pytest.raises(TypeError):
        PDU()  # eps has no default, as in open-unlearning (???)
    with pytest.raises(ValueError, match="dual_update_upon must be 'step'"):
        PDU(retain_loss_eps=0.5, dual_update_upon="epoch")


@pytest.mark.parametrize(("gamma", "alpha", "eps"), [(1.0, 1.0, 0.5), (0.5, 2.0, 2.0)])
def test_value_by_hand_and_the_dual_ascent(gamma, alpha, eps):
    logits, batch = example()
    loss = PDU(retain_loss_eps=eps, gamma=gamma, alpha=alpha).train()
    out = loss(lambda b: logits, batch)
    assert out.logs["forget_loss"].item() == pytest.approx(GAP, rel=1e-6)
    assert out.loss.item() == pytest.approx(gamma * GAP + alpha * (RETAIN - eps), rel=1e-6)
    dual = max(0.0, alpha + (RETAIN - eps))
    assert float(loss.retain_preference) == pytest.approx(dual, rel=1e-6)
    out = loss(lambda b: logits, batch)  # the next forward uses the updated multiplier
    assert out.loss.item() == pytest.approx(gamma * GAP + dual * (RETAIN - eps), rel=1e-6)
    assert out.logs["retain_preference"].item() == pytest.approx(dual, rel=1e-6)


def test_no_dual_update_in_eval_during_warmup_or_without_primal_dual():
    logits, batch = example()
    for loss in (
        PDU(retain_loss_eps=0.0).eval(),
        PDU(retain_loss_eps=0.0, dual_warmup_steps=3).train(),
        PDU(retain_loss_eps=0.0, primal_dual=False).train(),
    ):
        loss.on_train_step(2)
        loss(lambda b: logits, batch)
        assert float(loss.retain_preference) == 1.0
    loss = PDU(retain_loss_eps=0.0, dual_warmup_steps=3).train()
    loss.on_train_step(3)
    loss(lambda b: logits, batch)
    assert float(loss.retain_preference) == pytest.approx(1.0 + RETAIN, rel=1e-6)
    assert "retain_preference" in loss.state_dict(), "the multiplier is saved with the checkpoint"


def test_gradient_lowers_the_largest_logit():
    logits, batch = two_token_example(requires_grad=True)
    batch["retain"] = {**batch["forget"], "labels": torch.full((1, 3), -100)}  # no retain tokens: R = 0
    PDU(retain_loss_eps=0.0)(lambda b: logits, batch).loss.backward()
    # d/dz of (max - mean)^2 / 2 at position 0: (gap)(1 - 1/3) on the max, -(gap)/3 on the others.
    gap = 2 * math.log(2) / 3
    assert logits.grad[0, 0].tolist() == pytest.approx([gap * 2 / 3, -gap / 3, -gap / 3], rel=1e-5)
    assert logits.grad[0, 0, 0] > 0


def test_one_step_lowers_the_forget_probability():
    before, after = one_unlearning_step(PDU(retain_loss_eps=0.5))
    assert after < before - 0.05, (before, after)


def test_compat_open_unlearning_reads_the_logits_at_the_answer_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 4, 6, 2], [-100, -100, -100, 3, -100]])
    batch = {"forget": {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels}}
    batch["retain"] = batch["forget"]
    gap = (logits.max(-1).values - logits.mean(-1)) ** 2
    theirs = gap[labels != -100].mean()  # open-unlearning's pdu.py: unshifted, labels != -100
    shifted = gap[:, :-1][labels[:, 1:] != -100].mean()  # ours: the logits that predict the answer tokens
    loss = PDU(retain_loss_eps=0.0)
    assert loss(lambda b: logits, batch).logs["forget_loss"].item() == pytest.approx(shifted.item(), rel=1e-5)
    loss.set_compat("open_unlearning")
    assert loss(lambda b: logits, batch).logs["forget_loss"].item() == pytest.approx(theirs.item(), rel=1e-5)


def _dual_worker(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    logits, batch = example()
    loss = PDU(retain_loss_eps=0.0).train()
    retain_logits = torch.zeros(1, 3, 3) if rank == 0 else logits  # uniform (R = ln 3) on rank 0, RETAIN on rank 1
    retain = dict(batch["forget"])
    loss(lambda b: retain_logits if b is retain else logits, {**batch, "retain": retain})
    torch.save(loss.retain_preference, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_the_dual_step_is_the_same_on_every_ddp_process(tmp_path):
    import torch.multiprocessing as mp

    # fork: the workers need nothing the test process has not imported (spawn would re-import torch twice)
    mp.start_processes(_dual_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork")
    duals = [float(torch.load(tmp_path / f"rank{rank}.pt")) for rank in (0, 1)]
    assert duals == pytest.approx([1.0 + (math.log(3) + RETAIN) / 2] * 2, rel=1e-6)
