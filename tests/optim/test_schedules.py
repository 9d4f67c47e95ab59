"""Deep Learning from Scratch's per-epoch decays."""

from __future__ import annotations

import pytest
import torch

from nnrun.optim.schedules import exponential_decay, linear_decay


def _rates(builder, lr: float, epochs: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = builder(opt, total_steps=epochs * 1000, epochs=epochs, final_lr=0.05)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: changes nothing, keeps torch's step order
        schedule.after_epoch()
    return rates


def test_linear_decay_per_epoch_over_epochs_minus_one():
    # L3879-3903: decay_per_epoch = (0.15 - 0.05) / 49 = 0.0020408; epoch 50 uses 0.05.
    rates = _rates(linear_decay, 0.15, 50)
    assert rates[0] == pytest.approx(0.15) and rates[-1] == pytest.approx(0.05)
    assert round(rates[0] - rates[1], 7) == 0.0020408
    assert all(a - b == pytest.approx(0.1 / 49) for a, b in zip(rates, rates[1:]))


def test_exponential_decay_per_epoch_over_epochs_minus_one():
    # L3934-3965: decay_per_epoch = 0.25 ** (1 / 49) = 0.9721047.
    rates = _rates(exponential_decay, 0.2, 50)
    assert rates[0] == pytest.approx(0.2) and rates[-1] == pytest.approx(0.05)
    assert round(rates[1] / rates[0], 7) == 0.9721047
    assert all(b / a == pytest.approx(0.25 ** (1 / 49)) for a, b in zip(rates, rates[1:]))
