"""Class labels: cross-entropy, accuracy; images and tabular rows, a graph's nodes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Data
from nnrun.errors import ConfigError
from nnrun.tasks import Task, check_reduction


class Classification(Task):
    """Class labels: cross-entropy loss; loss and accuracy on evaluation.

    Subclasses say how a batch becomes logits and targets (`logits_and_targets`) and, where a
    document's loss differs, what the loss is (`loss_value`); the statistics stay the same.

    Args:
        reduction: the training loss over a batch, `mean` or `sum`; evaluation uses means.
    """

    metric_names = ("loss", "acc")

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_reduction(reduction)

    def setup(self, data: Data) -> None:
        """Refuse data whose targets are not class labels (a regression series, say)."""
        batch = next(iter(data.val.epoch()), None)
        if batch is not None and self.targets(batch).is_floating_point():
            raise ConfigError("task=classification needs class labels (one whole number per "
                              "sample); this data gives real-valued targets: use "
                              "task=regression, or data=mnist")

    def targets(self, batch: Batch) -> Tensor:
        """A batch's class labels."""
        return batch[1]

    def logits_and_targets(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """(N, classes) logits and (N,) class indices."""
        x, y = batch
        return model(x), y

    def loss_value(self, logits: Tensor, y: Tensor, reduction: str) -> Tensor:
        """The loss of logits against targets, summed or averaged over them."""
        return F.cross_entropy(logits, y, reduction=reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.loss_value(*self.logits_and_targets(model, batch), self.reduction)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        logits, y = self.logits_and_targets(model, batch)
        return {"n": len(y), "loss": self.loss_value(logits.float(), y, "sum").double(),
                "correct": (logits.argmax(1) == y).sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n = float(stats["n"])
        return {"loss": float(stats["loss"]) / n, "acc": float(stats["correct"]) / n}


class NodeClassification(Classification):
    """Classifying a graph's nodes: the model sees the whole graph, a mask picks the split."""

    def logits_and_targets(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        x, edge_index, y, mask = batch
        if getattr(model, "reads_graph", False):
            return model(x, edge_index)[mask], y[mask]
        return model(x)[mask], y[mask]  # a baseline that sees each node's features alone

    def targets(self, batch: Batch) -> Tensor:
        return batch[2]
