"""Polynomial curve fits: the models of the RNN lab manual's PyTorch section (seed-000
L471-1642, after the "Learning PyTorch with Examples" tutorial), which fit sin x on [-pi, pi].

Each model maps samples of one number, (B, 1), to (B, 1), so it takes the data's sizes like
every other model and refuses data of another shape. Coefficients start from torch's seeded
generator (the document draws them with `randn` and no seed), or from `init` where given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.errors import ConfigError


def _check_scalar_data(model: str, in_shape: Sequence[int], out_features: int) -> None:
    if tuple(in_shape) != (1,) or out_features != 1:
        raise ConfigError(f"model={model} maps one number to one number, but the data gives "
                          f"in_shape={tuple(in_shape)} and out_features={out_features}; use it "
                          "with data=trig or another data option of scalar samples")


def _coefficients(model: str, n: int, init: Sequence[float] | None) -> nn.Parameter:
    """`n` coefficients: `init` if given, else standard normal draws (the document's `randn`)."""
    if init is None:
        return nn.Parameter(torch.randn(n))
    if len(init) != n:
        raise ConfigError(f"model.init={list(init)} must hold {n} numbers for model={model}")
    return nn.Parameter(torch.tensor([float(v) for v in init]))


class Polynomial(nn.Module):
    """y = a + b x + c x² + d x³ (for `degree` 3): the document's `Polynomial3` (seed-000
    L1386-1434), whose fit E1-E3 also compute by hand.

    Args:
        in_shape, out_features: from the data; must be (1,) and 1.
        degree: the highest power.
        init: the coefficients a, b, c, ... in order of power; null draws them from N(0, 1).
    """

    reads = "one number per sample: use data=trig"

    def __init__(self, in_shape: Sequence[int], out_features: int, degree: int = 3,
                 init: Sequence[float] | None = None) -> None:
        super().__init__()
        _check_scalar_data("poly3", in_shape, out_features)
        if degree < 0:
            raise ConfigError(f"model.degree={degree} must be >= 0, e.g. model.degree=3")
        self.coefficients = _coefficients("poly3", degree + 1, init)
        self.register_buffer("powers", torch.arange(degree + 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x.unsqueeze(-1).pow(self.powers) * self.coefficients).sum(-1)  # (B, 1)


class LegendrePolynomial3(torch.autograd.Function):
    """P3(z) = (5z³ - 3z) / 2 with its derivative written by hand: the document's custom
    autograd Function (seed-000 L886-938)."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return 0.5 * (5 * z ** 3 - 3 * z)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        z, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * z ** 2 - 1)


class Legendre3(nn.Module):
    """y = a + b·P3(c + d x), P3 the Legendre polynomial of degree 3 through
    `LegendrePolynomial3` (seed-000 L868-1046).

    Args:
        in_shape, out_features: from the data; must be (1,) and 1.
        init: (a, b, c, d); null draws them from N(0, 1). The document starts from
            (0, -1, 0, 0.3), "not too far from the correct result to ensure convergence".
    """

    reads = "one number per sample: use data=trig"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 init: Sequence[float] | None = None) -> None:
        super().__init__()
        _check_scalar_data("legendre3", in_shape, out_features)
        a, b, c, d = _coefficients("legendre3", 4, init).detach()
        self.a, self.b, self.c, self.d = (nn.Parameter(v.clone()) for v in (a, b, c, d))

    def forward(self, x: Tensor) -> Tensor:
        return self.a + self.b * LegendrePolynomial3.apply(self.c + self.d * x)  # (B, 1)


class PolynomialRegression(nn.Module):
    """Linear regression on the powers x, x², ..., x^degree of each input: the document's
    `nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))` on (x, x², x³) (seed-000 L1112-1144),
    with nn.Linear's own initialisation.

    Args:
        in_shape: (F,) inputs per sample; each contributes its `degree` powers.
        out_features: outputs per sample.
        degree: the highest power.
    """

    reads = "feature vectors: use data=boston, toy_linreg or random_regression"

    def __init__(self, in_shape: Sequence[int], out_features: int, degree: int = 3) -> None:
        super().__init__()
        if len(in_shape) != 1 or degree < 1:
            raise ConfigError(f"model=poly_linear needs samples of shape (F,) and degree >= 1; "
                              f"got in_shape={tuple(in_shape)}, model.degree={degree}; use "
                              "data=boston, toy_linreg or random_regression")
        self.register_buffer("powers", torch.arange(1, degree + 1), persistent=False)
        self.linear = nn.Linear(in_shape[0] * degree, out_features)

    def forward(self, x: Tensor) -> Tensor:
        features = x.unsqueeze(-1).pow(self.powers).flatten(1)  # (B, F) -> (B, F * degree)
        return self.linear(features)                            # (B, out_features)


class DynamicPolynomial(nn.Module):
    """The document's `DynamicNet` (seed-000 L1493-1642), its example of a graph built anew at
    each forward pass and of weight sharing: a polynomial of `base_order` with its own
    coefficients, plus the powers up to a randomly drawn order, all weighted by one shared
    coefficient `e`. For the defaults: y = a + b x + c x² + d x³ + e x⁴ [+ e x⁵], the order
    drawn from {3, 4, 5} with equal chances at every training forward pass.

    The draw uses torch's global generator, which `seed` seeds and checkpoints restore, so a
    run reproduces (the document uses Python's unseeded `random`). In eval mode the model
    gives the mean of its outputs over the orders instead of a draw, so validation is
    deterministic (the document never evaluates).

    Args:
        in_shape, out_features: from the data; must be (1,) and 1.
        base_order: the powers 0..base_order have a coefficient each.
        max_order: the highest order a forward pass can draw.
    """

    reads = "one number per sample: use data=trig"

    def __init__(self, in_shape: Sequence[int], out_features: int, base_order: int = 3,
                 max_order: int = 5) -> None:
        super().__init__()
        _check_scalar_data("dynamic_poly", in_shape, out_features)
        if not 0 <= base_order <= max_order:
            raise ConfigError(f"model.base_order={base_order} and model.max_order={max_order} "
                              "need 0 <= base_order <= max_order")
        self.base_order, self.max_order = base_order, max_order
        self.coefficients = nn.Parameter(torch.randn(base_order + 1))
        self.e = nn.Parameter(torch.randn(()))
        self.register_buffer("powers", torch.arange(base_order + 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y = (x.unsqueeze(-1).pow(self.powers) * self.coefficients).sum(-1)  # (B, 1)
        n_orders = self.max_order - self.base_order + 1
        if self.training:
            order = int(torch.randint(self.base_order, self.max_order + 1, ()))
            for power in range(self.base_order + 1, order + 1):
                y = y + self.e * x ** power
            return y
        for power in range(self.base_order + 1, self.max_order + 1):
            drawn = (self.max_order - power + 1) / n_orders  # the chance the draw reaches power
            y = y + drawn * self.e * x ** power
        return y
