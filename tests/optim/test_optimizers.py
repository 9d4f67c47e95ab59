"""The documents' hand-written optimizers against torch.optim."""

from __future__ import annotations

import pytest
import torch

from nnrun.errors import ConfigError
from nnrun.optim.optimizers import GradientDescent, VelocitySGD


def test_velocity_sgd_steps_as_the_book():
    # SGDMomentum: v = mu v + lr g; p -= v (L3794-3803), velocities from zero.
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = VelocitySGD([p], lr=0.1, momentum=0.9)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]), torch.tensor([0.0, 1.0])]
    v, ref = torch.zeros(2), torch.tensor([1.0, -1.0])
    for g in grads:
        p.grad = g.clone()
        opt.step()
        v = 0.9 * v + 0.1 * g
        ref = ref - v
        torch.testing.assert_close(p.detach(), ref)


def test_velocity_sgd_matches_torch_at_a_constant_rate_not_under_decay():
    def trajectory(make_opt, decay: bool) -> torch.Tensor:
        p = torch.nn.Parameter(torch.tensor([2.0, -3.0], dtype=torch.float64))
        opt = make_opt([p])
        for _ in range(20):
            p.grad = p.detach() * torch.tensor([1.0, 0.3], dtype=torch.float64)
            opt.step()
            if decay:
                opt.param_groups[0]["lr"] *= 0.9
        return p.detach()

    ours = lambda ps: VelocitySGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    torchs = lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    torch.testing.assert_close(trajectory(ours, False), trajectory(torchs, False))
    assert not torch.allclose(trajectory(ours, True), trajectory(torchs, True))


def test_gradient_descent_rounds_like_the_hand_written_update():
    g = torch.Generator().manual_seed(0)
    start, grad, lr = torch.randn(1000, generator=g), 100 * torch.randn(1000, generator=g), 0.0013
    by_hand = start.clone()
    by_hand -= lr * grad                          # seed-002 L215
    p = torch.nn.Parameter(start.clone())
    p.grad = grad.clone()
    optimizer = GradientDescent([p], lr=lr)
    optimizer.step()
    assert torch.equal(p.detach(), by_hand)
    sgd = torch.nn.Parameter(start.clone())
    sgd.grad = grad.clone()
    torch.optim.SGD([sgd], lr=lr).step()
    torch.testing.assert_close(sgd.detach(), by_hand)  # the same step up to rounding
    optimizer.load_state_dict(optimizer.state_dict())
    with pytest.raises(ConfigError, match="optimizer.lr"):
        GradientDescent([p], lr=0.0)
