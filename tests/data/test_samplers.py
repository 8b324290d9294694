import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mcu_lightning.data.samplers import (
    CurriculumSampler,
    ExponentialPacing,
    LinearPacing,
    RootPacing,
    StepPacing,
)

REPO = Path(__file__).parents[2]


def test_pacing_values():
    # s = 0.2, E = 4
    assert [LinearPacing(0.2, 4).fraction(e) for e in (0, 2, 4, 9)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    assert RootPacing(0.2, 4).fraction(2) == pytest.approx(math.sqrt(0.04 + 0.96 * 0.5))  # 0.72111
    assert RootPacing(0.2, 4).fraction(0) == pytest.approx(0.2)
    step = StepPacing(0.2, 4, num_steps=2)
    assert [step.fraction(e) for e in range(5)] == pytest.approx([0.2, 0.2, 0.6, 0.6, 1.0])
    assert ExponentialPacing(0.2, 4).fraction(2) == pytest.approx(0.2 * 5**0.5)  # 0.44721
    assert ExponentialPacing(0.2, 4).fraction(4) == 1.0
    with pytest.raises(ValueError, match="start_fraction"):
        LinearPacing(0.0, 4)


def test_easy_first_yields_only_the_easiest_fraction_early():
    scores = torch.tensor([5.0, 0.1, 3.0, 0.2, 9.0, 0.3, 7.0, 8.0, 6.0, 4.0])  # easiest: 1, 3, 5
    sampler = CurriculumSampler(range(10), scores, "easy_first", LinearPacing(0.3, 2), seed=1)
    drawn = list(sampler)
    assert len(drawn) == 10 and set(drawn) == {1, 3, 5}
    assert sorted(drawn.count(i) for i in (1, 3, 5)) == [3, 3, 4]  # the pool repeated to a constant length
    assert sorted(drawn[:3]) == sorted(drawn[3:6]) == [1, 3, 5]  # each repeat is a full reshuffled pass
    sampler.set_epoch(1)  # fraction 0.65 -> ceil(6.5) = 7 easiest
    assert set(sampler) == {1, 3, 5, 2, 9, 0, 8}
    sampler.set_epoch(2)
    assert sorted(sampler) == list(range(10))
    hard = CurriculumSampler(range(10), scores, "hard_first", LinearPacing(0.2, 2))
    assert set(hard) == {4, 7}


def test_draw_depends_on_seed_and_epoch_only():
    a = CurriculumSampler(range(20), torch.arange(20.0), pacing=LinearPacing(0.5, 2), seed=3)
    b = CurriculumSampler(range(20), torch.arange(20.0), pacing=LinearPacing(0.5, 2), seed=3)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and list(a) != list(CurriculumSampler(range(20), torch.arange(20.0), seed=3))
    assert len(a) == 20


def test_scores_by_length_and_from_file(tmp_path):
    items = [{"labels": [-100, 1, 2]}, {"labels": [-100, -100, 1]}, {"labels": [1, 2, 3]}]
    sampler = CurriculumSampler(items, "length", pacing=LinearPacing(0.34, 1))
    assert sampler.scores.tolist() == [2.0, 1.0, 3.0] and set(sampler) == {1, 0}
    path = tmp_path / "scores.json"
    path.write_text(json.dumps([3, 1, 2]))
    assert CurriculumSampler(items, path).ordered.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="got 2 curriculum scores for 3 samples"):
        CurriculumSampler(items, [1.0, 2.0])
    with pytest.raises(ValueError, match="order="):
        CurriculumSampler(items, [1.0, 2.0, 3.0], order="random")


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from mcu_lightning.data.samplers import CurriculumSampler, LinearPacing

    def work(rank, out):
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + os.environ["PORT"], rank=rank, world_size=2)
        sampler = CurriculumSampler(range(12), torch.arange(12.0), pacing=LinearPacing(0.25, 3), seed=7)
        wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        draws = []
        for epoch in range(4):
            wrapped.set_epoch(epoch)
            draws.append(list(wrapped))
        gathered = [None, None]
        dist.all_gather_object(gathered, draws)
        if rank == 0:
            json.dump(gathered, open(out, "w"))
        dist.destroy_process_group()

    if __name__ == "__main__":
        # fork: the children inherit the imports instead of paying for them again
        mp.start_processes(work, args=(sys.argv[1],), nprocs=2, start_method="fork")
    """
)


@pytest.mark.slow
@pytest.mark.ddp
def test_ranks_share_the_visible_pool_under_ddp(tmp_path):
    script, out = tmp_path / "worker.py", tmp_path / "draws.json"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(29500 + os.getpid() % 1000)}
    subprocess.run([sys.executable, str(script), str(out)], check=True, env=env, timeout=120)
    rank0, rank1 = json.loads(out.read_text())
    pools = [3, 6, 9, 12]  # ceil(12 * (0.25 + 0.75 e / 3))
    for epoch, size in enumerate(pools):
        a, b = rank0[epoch], rank1[epoch]
        assert len(a) == len(b) == 6  # 12 indices split over 2 ranks
        assert set(a) | set(b) == set(range(size))  # both draw from the pool and together cover it
        reference = CurriculumSampler(range(12), torch.arange(12.0), pacing=LinearPacing(0.25, 3), seed=7)
        reference.set_epoch(epoch)
        assert sorted(a + b) == sorted(reference)
