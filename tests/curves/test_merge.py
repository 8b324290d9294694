"""Task-vector merges: task arithmetic and TIES on hand-computed state dicts, name checks, a loadable model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mcu_lightning.curves import merged_model, task_arithmetic, task_vectors, ties
from mcu_lightning.curves.merge import ties_delta, trim
from mcu_lightning.models.io import save_model


def _state(w: list[float], steps: int = 7) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(w), "steps": torch.tensor(steps)}


def test_task_arithmetic_scale_one_on_identical_task_vectors() -> None:
    base = _state([1.0, 2.0, -1.0, 0.0])
    tau = torch.tensor([0.5, -1.0, 0.25, 2.0])
    end = _state((base["w"] + tau).tolist(), steps=99)
    merged = task_arithmetic([end, end], base, scale=1.0)
    torch.testing.assert_close(merged["w"], base["w"] + 2 * tau)
    assert merged["steps"].item() == 7  # integer tensors are the base's
    half = task_arithmetic([end, end], base, scale=0.5)
    torch.testing.assert_close(half["w"], end["w"])  # the mean of two identical endpoints is the endpoint


def test_task_arithmetic_keeps_the_base_dtype() -> None:
    base = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16)}
    end = {"w": torch.tensor([1.5, 2.5], dtype=torch.bfloat16)}
    merged = task_arithmetic([end], base)
    assert merged["w"].dtype == torch.bfloat16
    assert merged["w"].tolist() == [1.5, 2.5]


def test_trim_keeps_the_largest_magnitudes() -> None:
    tau = torch.tensor([0.1, -3.0, 0.2, 2.0, -0.05])
    assert trim(tau, 0.4).tolist() == [0.0, -3.0, 0.0, 2.0, 0.0]  # floor(0.4 * 5) = 2 entries
    assert trim(tau, 0.1).tolist() == [0.0, -3.0, 0.0, 0.0, 0.0]  # floor(0.5) = 0: at least one entry
    assert torch.equal(trim(tau, 1.0), tau)


def test_ties_hand_computed() -> None:
    # three task vectors on six entries; density 0.5 keeps the 3 largest |.| of each
    taus = [
        torch.tensor([1.0, -2.0, 0.1, 3.0, 0.0, -0.5]),  # keeps 1.0, -2.0, 3.0
        torch.tensor([-4.0, 1.0, 0.2, -1.0, 0.3, 0.0]),  # keeps -4.0, 1.0, -1.0
        torch.tensor([2.0, -1.0, 0.0, 0.5, 0.1, -3.0]),  # keeps 2.0, -1.0, -3.0
    ]
    # trimmed sums per entry: [-1, -2, 0, 2, 0, -3] -> elected signs [-, -, +, +, +, -]
    # entry 0: only -4 agrees -> -4; entry 1: -2 and -1 agree -> -1.5; entry 2: nothing kept -> 0
    # entry 3: only 3 agrees (-1 disagrees) -> 3; entry 4: nothing kept -> 0; entry 5: -3
    expected = torch.tensor([-4.0, -1.5, 0.0, 3.0, 0.0, -3.0])
    torch.testing.assert_close(ties_delta(taus, density=0.5), expected)
    base = _state([10.0] * 6)
    ends = [_state((base["w"] + tau).tolist()) for tau in taus]
    torch.testing.assert_close(ties(ends, base, density=0.5, scale=1.0)["w"], base["w"] + expected)
    torch.testing.assert_close(ties(ends, base, density=0.5, scale=0.5)["w"], base["w"] + 0.5 * expected)


def test_ties_density_one_agreeing_signs_is_the_mean() -> None:
    base = _state([0.0, 0.0])
    ends = [_state([1.0, -2.0]), _state([3.0, -4.0])]
    torch.testing.assert_close(ties(ends, base, density=1.0)["w"], torch.tensor([2.0, -3.0]))


def test_mismatched_names_and_shapes_refused_in_one_line() -> None:
    base = _state([0.0, 0.0])
    with pytest.raises(ValueError, match=r"^merge: endpoint #1 lacks 'w' that the base has") as error:
        task_arithmetic([_state([1.0, 1.0]), {"v": torch.zeros(2), "steps": torch.tensor(1)}], base)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"^merge: endpoint #0 has 'extra' that the base lacks"):
        ties([{**_state([1.0, 1.0]), "extra": torch.zeros(1)}], base)
    with pytest.raises(ValueError, match=r"^merge: 'w' has shape \(3,\) in endpoint #0 but \(2,\) in the base"):
        task_vectors([_state([1.0, 1.0, 1.0])], base)
    with pytest.raises(ValueError, match="density"):
        ties([_state([1.0, 1.0])], base, density=0.0)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.init_args: dict = {}
        self.lin = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.norm(self.lin(x))


def test_merged_model_loads_and_refuses_a_foreign_state(tmp_path) -> None:
    torch.manual_seed(0)
    base, a, b = (Tiny().state_dict() for _ in range(3))
    state = ties([a, b], base, density=0.5)
    model = merged_model(Tiny(), state)
    assert not model.training
    assert torch.equal(model.lin.weight, state["lin.weight"])
    assert model.norm.num_batches_tracked.item() == base["norm.num_batches_tracked"].item()
    folder = save_model(model, tmp_path / "ties")  # a loadable folder, like an endpoint's
    assert merged_model(folder, state).lin.bias.tolist() == state["lin.bias"].tolist()
    with pytest.raises(ValueError, match=r"lacks 'lin\.bias'"):
        merged_model(Tiny(), {k: v for k, v in state.items() if k != "lin.bias"})
