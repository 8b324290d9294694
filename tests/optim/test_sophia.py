"""SophiaG (SOUL form): one step by hand, convergence on a quadratic, checkpoint resume, config instantiation."""

from __future__ import annotations

import pytest
import torch

from mcu_lightning.optim import SophiaG


def test_one_step_matches_hand_computation() -> None:
    theta = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    theta.grad = torch.tensor([1.0, -2.0, 0.25], dtype=torch.float64)
    opt = SophiaG([theta], lr=0.1, betas=(0.9, 0.95), rho=0.04, bs=100, weight_decay=0.1)
    opt.step()
    state = opt.state[theta]
    # m = 0.1 g; h = 0.05 g^2; rho * bs * h = 4 h = [0.2, 0.8, 0.0125]; |m| / that = [0.5, 0.25, 2 -> 1]
    torch.testing.assert_close(state["exp_avg"], torch.tensor([0.1, -0.2, 0.025], dtype=torch.float64))
    torch.testing.assert_close(state["hessian"], torch.tensor([0.05, 0.2, 0.003125], dtype=torch.float64))
    # theta = 1 * (1 - 0.1 * 0.1) - 0.1 * sign(m) * ratio
    torch.testing.assert_close(theta.detach(), torch.tensor([0.94, 1.015, 0.89], dtype=torch.float64))
    assert state["step"].item() == 1


def test_maximize_ascends() -> None:
    theta = torch.nn.Parameter(torch.zeros(2))
    theta.grad = torch.tensor([1.0, -1.0])
    SophiaG([theta], lr=0.1, weight_decay=0.0, maximize=True).step()
    assert theta[0] > 0 > theta[1]


def _run(foreach: bool, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5, dtype=torch.float64))]
    opt = SophiaG(params, lr=0.05, bs=10, foreach=foreach)
    for _ in range(steps):
        for p in params:
            p.grad = torch.sin(3 * p.detach()) + 0.1
        opt.step()
    return [p.detach() for p in params]


def test_foreach_and_per_tensor_paths_agree() -> None:
    for a, b in zip(_run(foreach=True), _run(foreach=False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_converges_on_convex_quadratic() -> None:
    # f(x) = 0.5 x^T A x with A = diag(1, 10), minimum 0 at x = 0
    a = torch.tensor([1.0, 10.0])
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = SophiaG([x], lr=0.02, rho=0.04, bs=1, weight_decay=0.0)
    start = 0.5 * (a * x.detach() ** 2).sum()
    for _ in range(400):
        opt.zero_grad()
        loss = 0.5 * (a * x**2).sum()
        loss.backward()
        opt.step()
    assert x.detach().abs().max() < 0.05
    assert 0.5 * (a * x.detach() ** 2).sum() < 1e-3 * start


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _train(model: torch.nn.Module, opt: SophiaG, steps: range) -> None:
    for i in steps:
        x = torch.linspace(-1, 1, 6).view(2, 3) * (i + 1)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()


def test_state_dict_round_trip_resumes_bitwise() -> None:
    straight = _model()
    opt = SophiaG(straight.parameters(), lr=0.01, bs=10)
    _train(straight, opt, range(10))

    first = _model()
    opt_first = SophiaG(first.parameters(), lr=0.01, bs=10)
    _train(first, opt_first, range(5))
    saved_model, saved_opt = first.state_dict(), opt_first.state_dict()

    resumed = _model()
    opt_resumed = SophiaG(resumed.parameters(), lr=0.01, bs=10)
    resumed.load_state_dict(saved_model)
    opt_resumed.load_state_dict(saved_opt)
    assert opt_resumed.state[next(resumed.parameters())]["step"].item() == 5
    _train(resumed, opt_resumed, range(5, 10))
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_instantiates_from_a_config_dict() -> None:
    from lightning.pytorch.cli import instantiate_class

    params = list(_model().parameters())
    opt = instantiate_class(params, {"class_path": "mcu_lightning.optim.SophiaG", "init_args": {"lr": 0.01}})
    assert isinstance(opt, SophiaG)
    assert opt.defaults["lr"] == 0.01 and opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["bs"] == 5120


def test_parses_as_a_lightning_cli_optimizer() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_subclass_arguments(torch.optim.Optimizer, "optimizer", skip={"params"}, instantiate=False)
    config = parser.parse_object(
        {"optimizer": {"class_path": "mcu_lightning.optim.SophiaG", "init_args": {"lr": 0.001, "betas": [0.9, 0.99]}}}
    )
    init_args = config.optimizer.init_args
    assert init_args.lr == 0.001 and tuple(init_args.betas) == (0.9, 0.99) and init_args.rho == 0.04


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"betas": (1.0, 0.9)}, {"bs": 0}])
def test_rejects_invalid_hyperparameters(bad: dict) -> None:
    with pytest.raises(ValueError, match="SophiaG"):
        SophiaG([torch.nn.Parameter(torch.zeros(1))], **bad)
