"""Deep Learning from Scratch's losses as options of classification and regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnrun.errors import ConfigError
from nnrun.tasks.dlfs import (
    BookClassification,
    BookRegression,
    book_softmax_cross_entropy,
    per_observation_mse,
)


def test_book_softmax_cross_entropy_value_and_gradient():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10, dtype=torch.float64), torch.randint(0, 10, (6,))
    p = np.clip(torch.softmax(logits, 1).numpy(), 1e-9, 1 - 1e-9)
    onehot = np.eye(10)[y.numpy()]
    book = np.sum(-onehot * np.log(p) - (1 - onehot) * np.log(1 - p)) / 6  # the repo's formula
    assert book_softmax_cross_entropy(logits, y).item() == pytest.approx(book, rel=1e-12)
    assert book > F.cross_entropy(logits, y).item()  # it adds -Σ log(1 - p_j) over wrong classes

    task = BookClassification("book_softmax_ce")
    logits.requires_grad_(True)
    loss = task.loss(lambda x: x, (logits, y))
    assert loss.item() == pytest.approx(book, rel=1e-12)  # the book's value is what is logged
    loss.backward()
    expected_grad = (torch.softmax(logits.detach(), 1) - torch.tensor(onehot)) / 6  # (p - y) / N
    torch.testing.assert_close(logits.grad, expected_grad)


def test_per_observation_mse_sums_over_outputs():
    out, y = torch.full((4, 10), 0.5), torch.tensor([0, 1, 2, 3])
    # each row: 0.25 for the true class, 9 x 0.25 for the others -> 2.5 per observation
    assert per_observation_mse(out, y).item() == pytest.approx(2.5)
    assert per_observation_mse(out, y).item() == pytest.approx(
        10 * F.mse_loss(out, F.one_hot(y, 10).float()).item())  # G21: 10x nn.MSELoss


def test_classification_eval_statistics_use_the_chosen_loss():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    for name, fn in [("cross_entropy", F.cross_entropy),
                     ("book_softmax_ce", book_softmax_cross_entropy),
                     ("mse_per_obs", per_observation_mse)]:
        task = BookClassification(name)
        metrics = task.metrics(task.eval_stats(lambda x: x, (logits, y)))
        assert metrics["loss"] == pytest.approx(fn(logits, y).item(), rel=1e-6)
        assert metrics["acc"] == (logits.argmax(1) == y).float().mean().item()
    with pytest.raises(ConfigError, match="task.loss"):
        BookClassification("hinge")


@pytest.mark.parametrize("loss,scale", [("mse", 1 / 5), ("sse", 1.0), ("half_sse", 0.5)])
def test_chapter2_squared_errors(loss, scale):
    # sse: the gradient -2(y - P) summed (L1843-1878); half_sse: -(y - P) summed (Table 2.1).
    pred = torch.tensor([[1.0], [2.0], [0.0], [4.0], [1.0]], requires_grad=True)
    y = torch.tensor([[0.0], [2.0], [1.0], [1.0], [3.0]])
    value = BookRegression(loss).loss(lambda x: x, (pred, y))
    value.backward()
    assert value.item() == pytest.approx(scale * (pred - y).square().sum().item())
    torch.testing.assert_close(pred.grad, scale * -2 * (y - pred.detach()))
