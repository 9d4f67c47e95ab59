"""Fully connected models: the MLP (with Deep Learning from Scratch's Dense options), linear
regression with the lecture's hand-derived gradient, and least squares in closed form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnrun.data.batches import FullBatch
from nnrun.errors import ConfigError
from nnrun.models.mlp import MLP, AnalyticLinear, LeastSquares, LinearRegression
from tests.helpers import LECTURE_W, LECTURE_X, check_forward_backward


@pytest.mark.parametrize("activation", ["ReLU", "Tanh", "Sigmoid"])
def test_mlp(activation):
    torch.manual_seed(0)
    net = MLP(in_shape=(1, 28, 28), out_features=10, hidden_sizes=[32, 16],
                     activation=activation, dropout=0.1)
    check_forward_backward(net, torch.randn(4, 1, 28, 28), out_shape=(4, 10))
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [32, 16, 10]


def test_mlp_rejects_an_unknown_activation():
    with pytest.raises(ConfigError, match="model.activation"):
        MLP(in_shape=(4,), out_features=2, activation="Relu")


@pytest.mark.parametrize("kwargs,in_shape,out", [
    ({"hidden_sizes": []}, (13,), 1),
    ({"hidden_sizes": [13, 13], "init": "standard_normal"}, (13,), 1),
    ({"hidden_sizes": [89], "activation": "Tanh", "output_activation": "Sigmoid"}, (1, 28, 28), 10),
    ({"hidden_sizes": [178, 46], "activation": "Tanh", "init": "dlfs_glorot", "dropout": 0.2,
      "rescale_dropout": False}, (1, 28, 28), 10),
])
def test_dense_options_forward_backward(kwargs, in_shape, out):
    """The MLP with Deep Learning from Scratch's options (`model=dense`)."""
    torch.manual_seed(0)
    model = MLP(in_shape, out, **kwargs)
    y = check_forward_backward(model, torch.randn(7, *in_shape), out_shape=(7, out))
    if kwargs.get("output_activation") == "Sigmoid":
        assert ((y > 0) & (y < 1)).all()


def test_least_squares_fits_the_normal_equations_solution():
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 3 + 0.1 * torch.randn(50, 1)
    model = LeastSquares((3,), 1)
    model.fit(FullBatch(x, y))
    design = torch.cat([x, torch.ones(50, 1)], 1).double()
    beta = torch.linalg.solve(design.T @ design, design.T @ y.double())
    torch.testing.assert_close(model.weight.double(), beta[:3].T, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.bias.double(), beta[3], atol=1e-5, rtol=0)
    assert model(x).shape == (50, 1)
    assert not any(p.requires_grad for p in model.parameters())  # nothing to learn by gradient


def test_analytic_gradient_is_the_lectures_formula():
    x, y = torch.tensor(LECTURE_X), torch.tensor(LECTURE_X) @ torch.tensor(LECTURE_W)
    w = torch.tensor([0.16900, 2.21000])         # the lecture's w after epoch 0
    model = LinearRegression((2,), 1, gradient="analytic")
    with torch.no_grad():
        model.weight.copy_(w)
    y_pred = model(x)
    assert type(y_pred.grad_fn).__name__ == "AnalyticLinearBackward"  # not autograd's matmul
    F.mse_loss(y_pred, y.unsqueeze(1)).backward()
    y_pred = x @ w                                # seed-002 L166-184
    lecture = ((2 * (y_pred - y)).unsqueeze(1) * x).mean(dim=0)
    assert torch.equal(model.weight.grad[0], lecture)


@pytest.mark.parametrize("bias", [False, True])
def test_analytic_gradient_passes_a_numeric_check(bias):
    """The lecture's own check (seed-002 L1276-1284): central differences, in float64."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    assert torch.autograd.gradcheck(AnalyticLinear.apply, (x, weight, b))


@pytest.mark.parametrize("bias", [False, True])
def test_linear_regression_gradients_agree(bias):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 2, 3, generator=g), torch.randn(8, 4, generator=g)
    grads = []
    for gradient in ("autograd", "analytic"):
        model = LinearRegression((2, 3), 4, bias=bias, gradient=gradient)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        out = model(x)
        assert out.shape == (8, 4)
        F.mse_loss(out, y).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        grads.append([p.grad for p in model.parameters()])
    assert len(grads[0]) == (2 if bias else 1)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_linear_regression_starts_at_zero_and_checks_its_options():
    assert LinearRegression((2,), 1).weight.abs().sum() == 0
    with pytest.raises(ConfigError, match="model.gradient"):
        LinearRegression((2,), 1, gradient="manual")
