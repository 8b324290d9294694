"""Independent seeds: every sampler draws from (seed, stream, epoch), so two seeds share no order, and a sampler
rebuilt at epoch e (a resumed run) draws what the uninterrupted one drew."""

from __future__ import annotations

import pytest
import torch

from mcu_lightning.core.streams import stream_seed
from mcu_lightning.data.samplers import CurriculumSampler, EpochRandomSampler, ForgetRetainSampler, LinearPacing

EPOCHS = 6


def epoch_orders(make, epochs: int = EPOCHS) -> list[list]:
    """The draw of every epoch from one sampler, as a run sees them (set_epoch before each)."""
    sampler = make()
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


SAMPLERS = {
    "data order": lambda seed: EpochRandomSampler(24, seed),
    "forget order and partners": lambda seed: ForgetRetainSampler(24, 50, seed=seed),
    "curriculum": lambda seed: CurriculumSampler(range(24), torch.arange(24.0), pacing=LinearPacing(1.0, 1), seed=seed),
}


@pytest.mark.parametrize("kind", SAMPLERS)
def test_seed_one_shares_no_order_with_seed_zero_and_resumes_exactly(kind):
    zero = epoch_orders(lambda: SAMPLERS[kind](0))
    one = epoch_orders(lambda: SAMPLERS[kind](1))
    for epoch, order in enumerate(one):
        assert order not in zero, f"seed 1 at epoch {epoch} draws one of seed 0's orders"
        resumed = SAMPLERS[kind](1)  # a fresh sampler (a restarted process) told only the restored epoch
        resumed.set_epoch(epoch)
        assert list(resumed) == order


def test_partners_come_from_their_own_stream():
    sampler = ForgetRetainSampler(24, 24, seed=0)
    order = torch.randperm(24, generator=torch.Generator().manual_seed(stream_seed(0, "forget-order", 0)))
    assert [i for i, _ in sampler] == order.tolist()
    assert not torch.equal(sampler.partners(0), order)  # not the forget order again
    assert not torch.equal(ForgetRetainSampler(24, 24, seed=1).partners(0), sampler.partners(1))
