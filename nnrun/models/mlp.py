"""Fully connected networks: the MLP (with Deep Learning from Scratch's Dense-layer options) and
linear regression, by gradient or in closed form."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batches
from nnrun.errors import ConfigError
from nnrun.models import ClosedForm
from nnrun.models.layers import Dropout, init_, make_activation


class MLP(nn.Module):
    """Flatten, then hidden blocks (Linear, activation, dropout), then a Linear output layer,
    with `output_activation` if given.

    The same network is Deep Learning from Scratch's stack of `Dense` layers (`model=dense`),
    whose options are the book's: its initialisations (`init`, `numpy_seed`) and its unscaled
    dropout (`rescale_dropout=false`).

    Args:
        in_shape, out_features: from the data.
        hidden_sizes: units of each hidden layer; [] is a linear model (the book's `Dense(1)`).
        activation: the hidden layers' torch.nn activation (ReLU, Tanh, Sigmoid, ...).
        dropout: the share of units dropped after every hidden activation; 0 = none. (The book
            calls the keep probability `dropout`: its 0.8 is 0.2 here.)
        output_activation: null (linear output) or a torch.nn activation name (chapter 4's
            sigmoid output).
        init: `torch`, `standard_normal`, `dlfs_glorot` or `glorot_normal` (`init_`).
        rescale_dropout: true = inverted dropout (standard); false = the book's (`Dropout`).
        numpy_seed: null = torch's generator draws the init; a seed = the book's exact numpy
            draws, every layer reseeded with it (`init_`).
    """

    reads = "feature vectors, or windows and images flattened: use data=boston, sine or mnist"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (128,), activation: str = "ReLU",
                 dropout: float = 0.0, output_activation: str | None = None,
                 init: str = "torch", rescale_dropout: bool = True,
                 numpy_seed: int | None = None) -> None:
        super().__init__()
        sizes = [math.prod(in_shape), *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [init_(nn.Linear(n_in, n_out), init, numpy_seed),
                       make_activation(activation)]
            if dropout:
                layers.append(Dropout(dropout, rescale_dropout))
        layers.append(init_(nn.Linear(sizes[-1], out_features), init, numpy_seed))
        if output_activation is not None:
            layers.append(make_activation(output_activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, ...) -> (B, out_features)


class AnalyticLinear(torch.autograd.Function):
    """y = x Wᵀ + b with its backward written out by hand, as the lecture derives it
    (seed-002 L173-184): for MSE, dJ/dw = 2/N · Σ (w·x - y) · x, the loss's factor
    dJ/dy = 2/N · (y_pred - y) arriving as `grad_y` and this layer's local derivative
    dy/dw = x applied here. Autograd records the call, not the matmul inside it."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = x @ weight.T                      # (B, in) @ (in, out) -> (B, out)
        return y + bias if bias is not None else y

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        x, weight = ctx.saved_tensors
        # dJ/dW[o, i] = Σ_b dJ/dy[b, o] · x[b, i]: each product first, then the sum over the
        # batch, as the lecture's ((2 * (y_pred - y)).unsqueeze(1) * x).mean(dim=0) does
        grad_weight = (grad_y.unsqueeze(2) * x.unsqueeze(1)).sum(0)  # (B, out, in) -> (out, in)
        grad_x = grad_y @ weight if ctx.needs_input_grad[0] else None  # dy/dx = W
        grad_bias = grad_y.sum(0) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias


class LinearRegression(nn.Module):
    """y = x Wᵀ (+ b) on flattened inputs, the weights starting at zero (the lecture's
    w = [0, 0], seed-002 L161; the least-squares loss is convex, so the start only sets the path).

    Args:
        in_shape, out_features: from the data.
        bias: learn an intercept b (the lecture's f = X w has none).
        gradient: how the weights' gradient is computed. `autograd`: torch differentiates the
            matmul (the lecture's `l.backward()`, L787-864). `analytic`: the hand-derived
            formula in `AnalyticLinear.backward` (the lecture's `gradient(x, y, y_pred)`,
            L173-184); `tests/models/test_mlp.py` checks it against finite differences.
    """

    reads = "feature vectors, or windows and images flattened: use data=boston, sine or mnist"

    GRADIENTS = ("autograd", "analytic")

    def __init__(self, in_shape: Sequence[int], out_features: int, bias: bool = False,
                 gradient: str = "autograd") -> None:
        super().__init__()
        if gradient not in self.GRADIENTS:
            raise ConfigError(f"model.gradient={gradient!r} must be one of "
                              f"{', '.join(self.GRADIENTS)}")
        self.gradient = gradient
        self.weight = nn.Parameter(torch.zeros(out_features, math.prod(in_shape)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)                                    # (B, in)
        if self.gradient == "analytic":
            return AnalyticLinear.apply(x, self.weight, self.bias)
        return nn.functional.linear(x, self.weight, self.bias)  # (B, out_features)


class LeastSquares(ClosedForm):
    """Linear regression solved in closed form (least squares with an intercept, in float64)
    from the rows of the training split: scikit-learn's `LinearRegression`, Deep Learning from
    Scratch's chapter-2 baseline (L2010). Nothing is learned by gradient: the runner calls `fit`
    and the trainer takes no step (`model=least_squares data=boston`).

    Args:
        in_shape, out_features: from the data.
    """

    reads = "real-valued features and targets: use data=boston, toy_linreg or random_regression"

    def __init__(self, in_shape: Sequence[int], out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, math.prod(in_shape)),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False)

    @torch.no_grad()
    def fit(self, train: Batches) -> None:
        """Solve for the weights from every (x, y) batch of `train`."""
        # on the CPU in float64 whatever the device: lstsq's CUDA driver assumes full rank
        batches = list(train.epoch())  # one pass: a DataLoader split is read once
        if len(batches[0]) != 2 or not batches[0][1].is_floating_point():
            raise ConfigError(f"model=least_squares reads {self.reads}")
        x = torch.cat([batch[0].flatten(1) for batch in batches]).cpu().double()  # (N, F)
        y = torch.cat([batch[1] for batch in batches]).cpu().double()            # (N, out)
        design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)         # (N, F + 1)
        solution = torch.linalg.lstsq(design, y).solution                       # (F + 1, out)
        self.weight.copy_(solution[:-1].T)
        self.bias.copy_(solution[-1])

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)
