import pytest
import torch

from mcu_lightning.curves.sampling import ClippedNormal, Stratified, Uniform, t_grid


def test_uniform_range_and_determinism():
    draws = [Uniform().sample(torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0] == draws[1]
    gen = torch.Generator().manual_seed(0)
    values = [Uniform().sample(gen) for _ in range(500)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert min(values) < 0.05 and max(values) > 0.95


def test_clipped_normal_mean_and_clipping():
    gen = torch.Generator().manual_seed(0)
    values = torch.tensor([ClippedNormal().sample(gen) for _ in range(2000)])
    assert abs(values.mean().item() - 0.5) < 0.01
    assert abs(values.std().item() - 0.1) < 0.01
    wide = [ClippedNormal(0.5, 2.0).sample(gen) for _ in range(200)]
    assert min(wide) == 0.0 and max(wide) == 1.0  # clipped, and clipping happens


def test_stratified_covers_every_stratum_each_cycle():
    gen = torch.Generator().manual_seed(1)
    sampler = Stratified(num_strata=4)
    for _ in range(3):
        strata = sorted(int(sampler.sample(gen) * 4) for _ in range(4))
        assert strata == [0, 1, 2, 3]
    a = [Stratified(8).sample(torch.Generator().manual_seed(5)) for _ in range(1)]
    b = [Stratified(8).sample(torch.Generator().manual_seed(5)) for _ in range(1)]
    assert a == b


def draws(sampler, seed: int, indices) -> list[float]:
    from mcu_lightning.core.streams import stream_generator

    return [sampler.draw(seed, i, stream_generator(seed, "curve-t", i)) for i in indices]


def test_stratified_draw_depends_on_seed_and_index_alone():
    sampler = Stratified(num_strata=4)
    run = draws(sampler, 0, range(12))
    for cycle in range(3):  # every cycle of 4 draws visits every stratum once
        assert sorted(int(t * 4) for t in run[4 * cycle : 4 * cycle + 4]) == [0, 1, 2, 3]
    resumed = draws(Stratified(num_strata=4), 0, range(6, 12))  # a fresh sampler from step 6, mid-cycle
    assert resumed == run[6:]
    other = draws(sampler, 1, range(12))
    assert [int(t * 4) for t in other] != [int(t * 4) for t in run]  # another seed: another stratum order


def test_t_grid():
    assert t_grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    points = t_grid()
    assert len(points) == 31 and points[0] == 0.0 and points[-1] == 1.0
    assert t_grid([0.2, 0.35]) == [0.2, 0.35]
    with pytest.raises(ValueError, match="at least 2 points"):
        t_grid(1)
    with pytest.raises(ValueError, match="outside"):
        t_grid([0.5, 1.5])
