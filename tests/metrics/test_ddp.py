"""The suites give the same results on one process and on two DDP processes (gloo, CPU, padded DistributedSampler)."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from qa_fixtures import EOS, Bigram, qa_batch
from torch import nn
from torch.utils.data import DistributedSampler

from mcu_lightning.metrics import ClassificationSuite, EvalResult, QASuite

SIZES = {"forget": 5, "holdout": 3, "real_authors": 3}  # odd sizes: the sampler pads rank 1 with repeated samples


def qa_data() -> dict[str, dict]:
    gen = torch.Generator().manual_seed(0)
    data = {}

    def words() -> list[int]:
        size = int(torch.randint(1, 4, (1,), generator=gen))
        return torch.randint(4, 12, (size,), generator=gen).tolist()

    for split, n in SIZES.items():
        questions = [[1, *words()[:1]] for _ in range(n)]
        answers = [[*words(), EOS] for _ in range(n)]
        perturbed = [[[*words(), EOS] for _ in range(2)] for _ in range(n)]
        paraphrased = [[*words(), EOS] for _ in range(n)] if split == "forget" else None
        data[split] = qa_batch(questions, answers, list(range(n)), paraphrased, perturbed, length=8)
    return data


def classification_data() -> dict[str, dict]:
    gen = torch.Generator().manual_seed(1)
    return {
        split: {"inputs": torch.randn(n, 4, generator=gen), "labels": torch.randint(0, 3, (n,), generator=gen)}
        | {"index": torch.arange(n)}
        for split, n in {"forget": 5, "retain": 4, "test": 3}.items()
    }


def models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(2)
    return Bigram(torch.softmax(torch.randn(12, 12), dim=-1)), nn.Linear(4, 3)


def take(batch: dict, rows: list[int]) -> dict:
    index = torch.tensor(rows)
    return {key: value[index] if torch.is_tensor(value) else [value[i] for i in rows] for key, value in batch.items()}


def evaluate(rank: int, world_size: int) -> tuple[EvalResult, EvalResult]:
    lm, classifier = models()
    oracle = EvalResult(
        aggregates={"mia_loss_auc": 0.6, "mia_zlib_auc": 0.55, "mia_min_k_auc": 0.5},
        per_sample={"forget": {"truth_ratio": [0.2, 0.5, 0.9, 1.1, 3.0]}},
    )
    suites = (QASuite(rouge=False, oracle=oracle), ClassificationSuite())
    for suite, (model, data) in zip(suites, ((lm, qa_data()), (classifier, classification_data())), strict=True):
        for split, full in data.items():
            n = len(full["index"])
            rows = list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))
            for start in range(0, len(rows), 2):
                suite.update(model, split, take(full, rows[start : start + 2]))
    return suites[0].compute(), suites[1].compute()


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        qa_result, cls_result = evaluate(rank, world_size)
        qa_result.to_json(f"{out}/qa_{rank}.json")
        cls_result.to_json(f"{out}/cls_{rank}.json")
    finally:
        dist.destroy_process_group()


def assert_same(a: EvalResult, b: EvalResult) -> None:
    assert a.aggregates.keys() == b.aggregates.keys()
    for name, value in a.aggregates.items():
        other = b.aggregates[name]
        assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(other, rel=1e-9, abs=1e-12), name
    assert a.per_sample == b.per_sample
    assert a.records == b.records  # non-numeric per-sample values: gathered as objects, de-duplicated by index


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.filterwarnings("ignore:model_utility is the harmonic mean")
def test_one_process_equals_two(tmp_path):
    single_qa, single_cls = evaluate(rank=0, world_size=1)
    assert single_qa.per_sample["forget"]["index"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert single_qa.records["forget"]["index"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [len(row) for row in single_qa.records["forget"]["perturbed_loss"]] == [2] * 5
    assert math.isfinite(single_qa.aggregates["forget_quality"]) and math.isfinite(single_qa.aggregates["privleak"])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert_same(EvalResult.from_json(tmp_path / f"qa_{rank}.json"), single_qa)
        assert_same(EvalResult.from_json(tmp_path / f"cls_{rank}.json"), single_cls)
