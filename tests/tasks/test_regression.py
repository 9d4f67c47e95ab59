"""Regression: the summed-gradient option and the prediction figures."""

from __future__ import annotations

import pytest
import torch

from nnrun.data.synthetic import toy_linreg
from nnrun.errors import ConfigError
from nnrun.models.mlp import LinearRegression
from nnrun.tasks.regression import Regression


def test_summed_gradient_is_n_times_the_mean_and_reports_the_mean():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = 3 * x
    grads, values = {}, {}
    for grad_reduction in (None, "sum"):
        model = LinearRegression(in_shape=(1,), out_features=1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        loss = Regression(grad_reduction=grad_reduction).loss(model, (x, y))
        loss.backward()
        grads[grad_reduction], values[grad_reduction] = model.weight.grad.item(), loss.item()
    mse = ((0.5 * x - y) ** 2).mean().item()
    assert values[None] == values["sum"] == mse  # the reported loss is the mean either way
    assert grads[None] == pytest.approx(2 * (x * (0.5 * x - y)).mean().item())  # true gradient
    assert grads["sum"] == pytest.approx(4 * grads[None])                     # the book's
    with pytest.raises(ConfigError, match="task.grad_reduction"):
        Regression(grad_reduction="max")


def test_regression_scatter_figure():
    data = toy_linreg(x=[[1.0], [2.0], [3.0]], weights=[2.0])
    model = LinearRegression(in_shape=(1,), out_features=1)
    figures = Regression(figure="scatter").views(model, data.val)
    assert list(figures) == ["val/scatter"]
    assert list(Regression().views(model, data.val)) == ["val/forecast"]
    with pytest.raises(ConfigError, match="task.figure"):
        Regression(figure="pie")
