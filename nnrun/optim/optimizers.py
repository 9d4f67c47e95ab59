"""Optimizers that torch.optim does not have. Each takes `params` at the call site
(`instantiate(cfg.optimizer, params=model.parameters())`) and its hyperparameters from YAML."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from nnrun.errors import ConfigError


class _ByHand(torch.optim.Optimizer):
    """What the optimizers below share: a learning rate that must be positive, and the step
    loop, which `update`s each parameter that has a gradient under `torch.no_grad()`."""

    def __init__(self, params: Iterable[Tensor], lr: float, **hyperparameters: float) -> None:
        if lr <= 0:
            raise ConfigError(f"optimizer.lr={lr} must be > 0, e.g. optimizer.lr=0.01")
        super().__init__(params, {"lr": lr, **hyperparameters})

    def update(self, p: Tensor, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss


class GradientDescent(_ByHand):
    """Plain gradient descent as documents write it by hand: `p -= lr * p.grad`, under
    `torch.no_grad()` (seed-002 L215 and L843-844).

    In exact arithmetic this is `torch.optim.SGD` with momentum 0; in floating point it is not.
    SGD takes its step as `p.add_(grad, alpha=-lr)`, one fused multiply-add with a single
    rounding, while the hand-written update rounds `lr * grad` first and the subtraction
    second. The two part in float32's last bit, and a trajectory on the edge of stability (the
    lecture's lr 0.0013 against a limit of 0.0013274, catalog/002 gotcha 7) carries that into the
    7th digit of the loss within five steps. Use this optimizer to reproduce numbers printed from
    such a loop; use `sgd` otherwise.

    Args:
        params: the parameters to update.
        lr: the learning rate.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01) -> None:
        super().__init__(params, lr)

    def update(self, p: Tensor, group: dict) -> None:
        p -= group["lr"] * p.grad  # two roundings, as written by hand


class VelocitySGD(_ByHand):
    """SGD with momentum in the velocity form of Deep Learning from Scratch (seed-003
    L3794-3803): `v = momentum * v + lr * grad; p -= v`, velocities starting at zero.

    `torch.optim.SGD(momentum=...)` keeps `buf = momentum * buf + grad` and steps
    `p -= lr * buf`, the standard form. The two agree at a constant learning rate and part
    under a schedule: here a velocity keeps the rates it was built with, there every past
    gradient is rescaled by the current rate.

    Args:
        params: the parameters to update.
        lr: the learning rate.
        momentum: the velocity's decay μ, in [0, 1).
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, momentum: float = 0.9) -> None:
        if not 0 <= momentum < 1:
            raise ConfigError(f"optimizer.momentum={momentum} must be in [0, 1), e.g. 0.9")
        super().__init__(params, lr, momentum=momentum)

    def update(self, p: Tensor, group: dict) -> None:
        state = self.state[p]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p)
        v = state["velocity"]
        v.mul_(group["momentum"]).add_(p.grad, alpha=group["lr"])
        p -= v
