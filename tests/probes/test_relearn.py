"""Relearning: fine-tuning a copy on the forget set brings forget/prob back; the model given is never changed."""

from __future__ import annotations

import pytest
import torch

from mcu_lightning.probes import Relearn
from tests.probes.helpers import context_for, same_state, state_copy


def test_relearning_on_the_forget_set_recovers_forget_prob(tiny_lm, qa_suite, qa_data) -> None:
    """A model that does not know the forget set (a fresh tiny LM) learns it back in 40 steps; the copy is dropped."""
    context = context_for(tiny_lm, qa_suite, qa_data, ["forget", "retain"])
    before = context.before.aggregates["forget/prob"]
    state = state_copy(tiny_lm)
    out = Relearn(steps=40, batch_size=8, lr=1e-2, seed=0)(tiny_lm, context)
    after = out["probe/relearn/forget/prob"]
    assert after > before + 0.2, (before, after)
    assert out["probe/relearn/forget/prob_recovery"] == pytest.approx(after - before)
    assert not any(name.startswith("probe/relearn/retain/") for name in out)  # eval_splits defaults to forget
    assert same_state(tiny_lm, state)


def test_benign_relearning_recovers_less_than_forget_relearning(tiny_lm, qa_suite, qa_data) -> None:
    """Relearning on retain data (other people's facts) brings forget/prob back less than the forget set itself."""
    context = context_for(tiny_lm, qa_suite, qa_data, ["forget", "retain"])
    forget = Relearn(name="targeted", steps=40, lr=1e-2)(tiny_lm, context)["probe/targeted/forget/prob_recovery"]
    benign = Relearn(name="benign", split="retain", steps=40, lr=1e-2)(tiny_lm, context)
    assert benign["probe/benign/forget/prob_recovery"] < forget


def test_relearning_is_deterministic_and_leaves_the_rng_alone(mlp, class_suite, digits) -> None:
    context = context_for(mlp, class_suite, digits, ["forget", "retain"])
    probe = Relearn(steps=5, lr=0.05, optimizer="SGD", fraction=0.5, seed=3)
    torch.manual_seed(123)
    first = probe(mlp, context)
    next_draw = torch.rand(1)
    torch.manual_seed(123)
    assert probe(mlp, context) == first
    assert torch.equal(torch.rand(1), next_draw)  # the run's random stream did not move
    assert first["probe/relearn/forget/acc_recovery"] != 0.0


def test_the_relearn_draw_is_the_probes_own_stream(mlp, class_suite, digits) -> None:
    """The draw depends on the probe's seed and name alone (every model probed alike), never on the run's RNG."""
    context = context_for(mlp, class_suite, digits, ["forget"])

    def chosen(probe: Relearn) -> list[int]:
        batches = probe.relearn_batches(context, torch.device("cpu"), probe.generator(probe.seed))
        return [i for batch in batches for i in batch["index"].tolist()]

    kwargs = {"fraction": 0.5, "steps": 3, "lr": 0.1, "optimizer": "SGD", "batch_size": 4}
    torch.manual_seed(0)
    first = chosen(Relearn(seed=0, **kwargs))
    torch.manual_seed(1)
    assert chosen(Relearn(seed=0, **kwargs)) == first
    assert chosen(Relearn(seed=1, **kwargs)) != first
    assert chosen(Relearn(name="other", seed=0, **kwargs)) != first


def test_fraction_changes_the_relearn_set(mlp, class_suite, digits) -> None:
    context = context_for(mlp, class_suite, digits, ["forget"])
    small = Relearn(fraction=0.05, steps=3, lr=0.1, optimizer="SGD", batch_size=4)(mlp, context)
    full = Relearn(fraction=1.0, steps=3, lr=0.1, optimizer="SGD", batch_size=4)(mlp, context)
    assert small != full


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"steps": 0}, "steps"),
        ({"optimizer": "Adamm"}, "torch.optim"),
        ({"name": "a/b"}, "without '/'"),
        ({"every": 0}, "every"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Relearn(**kwargs)


def test_an_unknown_relearn_split_names_the_split(mlp, class_suite, digits) -> None:
    context = context_for(mlp, class_suite, digits, ["forget"])
    with pytest.raises(KeyError, match="holdout"):
        Relearn(split="holdout", steps=1)(mlp, context)
