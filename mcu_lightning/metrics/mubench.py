"""MU-Bench's classification scores (Cheng & Amiri, 2024, "MU-Bench: A Multitask Multimodal Benchmark for Machine
Unlearning"; CLU-UML/MU-Bench, ``mubench/evaluation.py``), the scores the MCU authors' own code selects models by.

* The overall unlearning score: the harmonic mean of how close the test accuracy stays to the original model's and
  how close the forget accuracy comes to chance.
* ZRF, Zero Retrain Forgetting (Chundawat et al., 2023, "Can Bad Teaching Induce Forgetting? Unlearning in Deep
  Networks using an Incompetent Teacher", AAAI): one minus the mean Jensen-Shannon divergence between the model's
  and a random (incompetent) teacher's predictive distributions on the forget set.
"""

from __future__ import annotations

import torch
from torch import Tensor


def overall_unlearning_score(test_acc: float, forget_acc: float, original_test_acc: float, chance_acc: float) -> float:
    """MU-Bench's overall score (``harmonic_mean`` in mubench/evaluation.py): with
    ``a = 1 - |test_acc - original_test_acc|`` and ``b = 1 - |forget_acc - chance_acc|``, ``2ab / (a + b)``.

    1 when the test accuracy equals the original model's and the forget accuracy equals chance (``1 / classes``).
    MU-Bench additionally sets the score to 0 when the test accuracy drops by more than 20 % (40 % for gradient
    ascent) outside mode connectivity; that model-selection rule is not applied here.
    """
    a = 1.0 - abs(test_acc - original_test_acc)
    b = 1.0 - abs(forget_acc - chance_acc)
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def random_teacher(num_classes: int, draws: int = 500, seed: int = 0) -> Tensor:
    """``[draws, C]`` predictive distributions of incompetent teachers: ``softmax(U(0, 1)^C)``, as MU-Bench draws them
    (``np.random.rand`` logits; here from a fixed seed, so every process and every evaluation uses the same ones)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.rand(draws, num_classes, generator=generator, dtype=torch.float64), dim=-1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence (natural log) between distributions ``p [..., C]`` and ``q [..., C]``:
    ``JS = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2`` (= ``scipy.spatial.distance.jensenshannon ** 2``).
    """
    m = (p + q) / 2
    return (torch.xlogy(p, p) - torch.xlogy(p, m) + torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1) / 2


def zrf_divergence(logits: Tensor, teachers: Tensor) -> Tensor:
    """Per sample, the mean over the teachers of ``JS(softmax(logits_i), teacher_r)``: ``[B]``. ZRF (Chundawat et al.,
    2023) of a forget set is ``1 - mean_i`` of these; MU-Bench averages 500 random teachers the same way."""
    p = torch.softmax(logits.double(), dim=-1)
    teachers = teachers.to(p.device)
    step = max(1, 2**22 // max(1, teachers.numel()))  # samples at a time: about 4M values per [b, R, C] temporary
    return torch.cat([js_divergence(c[:, None, :], teachers[None]).mean(dim=1) for c in p.split(step)])
