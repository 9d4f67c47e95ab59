"""Classification: the loss and accuracy from summed statistics, for rows and a graph's nodes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnrun.tasks.classification import Classification, NodeClassification


class Fixed(nn.Module):
    """Returns the logits it was given, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_metrics_add_up_over_batches_to_the_whole_splits():
    torch.manual_seed(0)
    logits, y = torch.randn(10, 4), torch.randint(0, 4, (10,))
    task = Classification()
    parts = [task.eval_stats(Fixed(logits[i:i + 3]), (None, y[i:i + 3])) for i in range(0, 10, 3)]
    totals = {k: sum(p[k] for p in parts) for k in parts[0]}
    metrics = task.metrics(totals)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert metrics["acc"] == int((logits.argmax(1) == y).sum()) / 10


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_training_loss_reduces_as_asked(reduction):
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    loss = Classification(reduction).loss(Fixed(logits), (None, y))
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y, reduction=reduction).item())


def test_node_classification_counts_only_the_masked_nodes():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([0, 0, 0, 1])
    mask = torch.tensor([True, False, True, True])   # the wrong node 1 is not in the split
    stats = NodeClassification().eval_stats(Fixed(logits), (None, None, y, mask))
    assert stats["n"] == 3 and int(stats["correct"]) == 3
