"""The RNN lab manual's polynomial fits of one number (seed-000 L471-1642): the cubic, Legendre P3
with its hand-written autograd Function, polynomial regression and the dynamic polynomial."""

from __future__ import annotations

import math

import pytest
import torch

from nnrun.data import Sizes
from nnrun.errors import ConfigError
from nnrun.models.polynomials import (
    DynamicPolynomial,
    Legendre3,
    LegendrePolynomial3,
    Polynomial,
    PolynomialRegression,
)
from tests.helpers import build_model, check_forward_backward

SCALAR = {"in_shape": (1,), "out_features": 1}


@pytest.mark.parametrize("option", ["poly3", "legendre3", "poly_linear", "dynamic_poly"])
def test_model_options_build_forward_and_backward(option):
    torch.manual_seed(0)
    net = build_model(Sizes((1,), 1), f"model={option}")
    if option == "dynamic_poly":
        net.eval()  # every order at once; a training pass that draws order 3 leaves e unused
    check_forward_backward(net, torch.linspace(-3, 3, 7).unsqueeze(1), out_shape=(7, 1))


def test_polynomial_is_the_documents_cubic():
    net = Polynomial(**SCALAR, init=[0.5, -1.0, 2.0, 0.25])
    x = torch.tensor([[-2.0], [0.0], [1.5]])
    assert torch.allclose(net(x), 0.5 - x + 2 * x ** 2 + 0.25 * x ** 3)
    assert Polynomial(**SCALAR, degree=5).coefficients.shape == (6,)


def test_polynomial_regression_is_linear_in_the_powers():
    torch.manual_seed(0)
    net = PolynomialRegression(**SCALAR)
    x = torch.tensor([[-2.0], [0.5], [3.0]])
    w, b = net.linear.weight[0], net.linear.bias
    assert torch.allclose(net(x), b + w[0] * x + w[1] * x ** 2 + w[2] * x ** 3)
    several = PolynomialRegression(in_shape=(4,), out_features=2, degree=2)
    assert several(torch.randn(5, 4)).shape == (5, 2) and several.linear.in_features == 8


def test_legendre3_and_its_autograd_function():
    z = torch.linspace(-1.5, 1.5, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LegendrePolynomial3.apply, (z,))
    assert torch.allclose(LegendrePolynomial3.apply(z), (5 * z ** 3 - 3 * z) / 2)
    net = Legendre3(**SCALAR, init=[0.0, -1.0, 0.0, 0.3])
    x = torch.tensor([[-1.0], [2.0]])
    assert torch.allclose(net(x), -0.5 * (5 * (0.3 * x) ** 3 - 3 * (0.3 * x)))


def test_models_refuse_data_that_is_not_one_number_per_sample():
    with pytest.raises(ConfigError, match="in_shape=\\(20, 1\\)"):
        Polynomial(in_shape=(20, 1), out_features=1)
    with pytest.raises(ConfigError, match="model.init"):
        Legendre3(**SCALAR, init=[0.0, 1.0])


def test_dynamic_polynomial_draws_its_order_from_the_seeded_generator():
    torch.manual_seed(0)
    net = DynamicPolynomial(**SCALAR)
    x = torch.tensor([[2.0]])
    base = float((net.coefficients.detach() * x[0, 0] ** torch.arange(4)).sum())
    e = net.e.item()
    # each order 3, 4, 5 comes out of a training forward pass with about equal chances
    outputs = torch.cat([net(x) for _ in range(600)]).flatten().tolist()
    by_order = {3: base, 4: base + e * 16, 5: base + e * (16 + 32)}
    counts = {k: sum(math.isclose(o, v, rel_tol=1e-5) for o in outputs)
              for k, v in by_order.items()}
    assert sum(counts.values()) == 600 and all(150 < c < 250 for c in counts.values()), counts
    # the same seed draws the same orders
    torch.manual_seed(1)
    first = torch.cat([net(x) for _ in range(20)])
    torch.manual_seed(1)
    assert torch.equal(first, torch.cat([net(x) for _ in range(20)]))
    # one weight serves x^4 and x^5: with order 5 drawn, its gradient has both terms
    while (y := net(x)).item() != pytest.approx(by_order[5]):
        pass
    net.zero_grad()
    y.sum().backward()
    assert net.e.grad.item() == pytest.approx(16 + 32)
    # eval mode: the mean over the orders, the same every time, no draw
    net.eval()
    state = torch.get_rng_state()
    assert net(x).item() == pytest.approx(sum(by_order.values()) / 3, rel=1e-6)
    assert torch.equal(torch.get_rng_state(), state)
