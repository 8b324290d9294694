"""MU-Bench's overall unlearning score and ZRF, against their definitions (mubench/evaluation.py) and scipy."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from test_classification import DATA, run

from mcu_lightning.metrics import ClassificationSuite
from mcu_lightning.metrics.mubench import js_divergence, overall_unlearning_score, random_teacher, zrf_divergence


def test_overall_score_is_the_harmonic_mean():
    a, b = 1 - abs(0.80 - 0.8328), 1 - abs(0.05 - 0.01)
    assert overall_unlearning_score(0.80, 0.05, 0.8328, 0.01) == pytest.approx(2 * a * b / (a + b))
    assert overall_unlearning_score(0.8328, 0.01, 0.8328, 0.01) == 1.0  # original test accuracy, chance on forget


def test_js_divergence_is_scipys_squared_distance():
    rng = np.random.default_rng(0)
    p, q = softmax(rng.normal(size=(6, 5)), 1), softmax(rng.normal(size=(6, 5)), 1)
    ours = js_divergence(torch.tensor(p), torch.tensor(q)).numpy()
    np.testing.assert_allclose(ours, jensenshannon(p, q, axis=1) ** 2, rtol=1e-10)
    one_hot = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert js_divergence(one_hot, one_hot.flip(-1)).item() == pytest.approx(np.log(2))  # disjoint: ln 2, no NaN


def test_zrf_divergence_averages_the_teachers():
    logits = torch.randn(70, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    teachers = random_teacher(4, draws=300, seed=3)
    p = softmax(logits.numpy(), 1)
    expected = [np.mean(jensenshannon(np.repeat(row[None], 300, 0), teachers.numpy(), axis=1) ** 2) for row in p]
    np.testing.assert_allclose(zrf_divergence(logits, teachers).numpy(), expected, rtol=1e-10)
    assert torch.equal(random_teacher(4, 300, 3), teachers)  # the same teachers wherever they are drawn


def test_suite_reports_zrf_and_overall_score():
    agg = run(ClassificationSuite(original_test_acc=0.9)).aggregates
    teachers = random_teacher(2, 500, 0).numpy()
    forget = softmax(DATA["forget"]["inputs"].double().numpy(), 1)
    js = [np.mean(jensenshannon(np.repeat(row[None], 500, 0), teachers, axis=1) ** 2) for row in forget]
    assert agg["zrf"] == pytest.approx(1 - np.mean(js), rel=1e-10)
    # test acc 0 (original 0.9), forget acc 0.5 = chance with two classes: a = 0.1, b = 1
    assert agg["unlearn_overall"] == pytest.approx(2 * 0.1 * 1.0 / 1.1)
    assert "unlearn_overall" not in run(ClassificationSuite()).aggregates  # needs the original accuracy
    assert "zrf" not in run(ClassificationSuite(zrf_draws=0)).aggregates


def test_confident_forget_predictions_lower_zrf():
    suite = ClassificationSuite()
    sure = {**DATA["forget"], "inputs": torch.tensor([[20.0, -20.0], [-20.0, 20.0]])}
    unsure = {**DATA["forget"], "inputs": torch.zeros(2, 2)}
    values = []
    for data in (sure, unsure):
        suite.reset()
        suite.update(torch.nn.Identity(), "forget", data)
        values.append(suite.compute().aggregates["zrf"])
    assert values[0] < 0.9 < 0.99 < values[1]


def test_directions_and_bad_arguments():
    suite = ClassificationSuite()
    assert suite.higher_is_better("zrf") and suite.higher_is_better("unlearn_overall")
    with pytest.raises(ValueError, match="not an accuracy"):
        ClassificationSuite(original_test_acc=83.28)
    with pytest.raises(ValueError, match="zrf_draws=-1"):
        ClassificationSuite(zrf_draws=-1)
