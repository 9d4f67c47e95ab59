"""Deep Learning from Scratch's losses (seed-003, catalog/003a) as options of the standard
classification and regression tasks, each defaulting to the standard loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch
from nnrun.errors import ConfigError
from nnrun.tasks import with_gradient_of
from nnrun.tasks.classification import Classification
from nnrun.tasks.regression import Regression


def book_softmax_cross_entropy(logits: Tensor, target: Tensor, eps: float = 1e-9,
                               reduction: str = "mean") -> Tensor:
    """The value of the book's `SoftmaxCrossEntropy` (L3563-3587, repo; catalog/003a G19, G20):
    p = clip(softmax(logits), eps, 1 - eps), then Σ_classes [-y log p - (1 - y) log(1 - p)]
    per sample (a binary cross-entropy summed over the classes, not categorical
    cross-entropy), averaged (`mean`) or summed (`sum`) over the batch. `target` holds class
    indices. Computed in float64, as the book's numpy: in float32 1 - 1e-9 rounds to 1 and a
    saturated softmax would give log(0)."""
    p = logits.double().softmax(1).clamp(eps, 1 - eps)
    y = F.one_hot(target, logits.shape[1]).to(p)
    per_sample = -(y * p.log() + (1 - y) * (1 - p).log()).sum(1)
    value = per_sample.mean() if reduction == "mean" else per_sample.sum()
    return value.to(logits.dtype)


def per_observation_mse(output: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error against the one-hot target summed over the classes, per sample (the book's
    `MeanSquaredError` on MNIST, L2934-2960, G21: 10x nn.MSELoss's mean)."""
    y = F.one_hot(target, output.shape[1]).to(output)
    per_sample = (output - y).square().sum(1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


class BookClassification(Classification):
    """Classification with a choice of loss; accuracy as usual.

    Args:
        loss: `cross_entropy` (standard). `book_softmax_ce`: the book's softmax cross-entropy
            value (`book_softmax_cross_entropy`; logged, and what early stopping compares)
            with the ordinary cross-entropy gradient (softmax - y) / N that the book steps
            along (L3541-3551). `mse_per_obs`: `per_observation_mse` of the model's outputs
            (chapter 4's sigmoid outputs) against one-hot targets.
    """

    LOSSES = ("cross_entropy", "book_softmax_ce", "mse_per_obs")

    def __init__(self, loss: str = "cross_entropy") -> None:
        super().__init__("mean")
        if loss not in self.LOSSES:
            raise ConfigError(f"task.loss={loss!r} must be one of {', '.join(self.LOSSES)}")
        self.loss_name = loss

    def loss_value(self, output: Tensor, y: Tensor, reduction: str) -> Tensor:
        if output.dtype in (torch.float16, torch.bfloat16):  # under autocast
            output = output.float()
        if self.loss_name == "book_softmax_ce":
            return book_softmax_cross_entropy(output, y, reduction=reduction)
        if self.loss_name == "mse_per_obs":
            return per_observation_mse(output, y, reduction=reduction)
        return F.cross_entropy(output, y, reduction=reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        output, y = self.logits_and_targets(model, batch)
        value = self.loss_value(output, y, self.reduction)
        if self.loss_name != "book_softmax_ce":
            return value
        return with_gradient_of(value, F.cross_entropy(output, y))  # book: (softmax - y) / N


class BookRegression(Regression):
    """Regression with the chapter-2 losses as well.

    Args:
        loss: `mse` (the mean, standard), `sse` (Σ(y - P)², the gradient -2(y - P) summed over
            the batch of the book's linear regression, L1843-1878) or `half_sse` (½Σ(y - P)²,
            the gradient -(y - P) summed of its network, Table 2.1, L2200-2212).
        figure: as `Regression`'s.
    """

    LOSSES = ("mse", "sse", "half_sse")

    def __init__(self, loss: str = "mse", figure: str = "scatter") -> None:
        if loss not in self.LOSSES:
            raise ConfigError(f"task.loss={loss!r} must be one of {', '.join(self.LOSSES)}")
        super().__init__("mean" if loss == "mse" else "sum", figure=figure)
        self.half = loss == "half_sse"

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        loss = super().loss(model, batch)
        return loss / 2 if self.half else loss
