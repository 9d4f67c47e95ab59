"""Associative recall: overlaps and exact recalls of the states a memory settles in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnrun.errors import ConfigError
from nnrun.tasks.recall import AssociativeRecall


class Recalls(nn.Module):
    """A memory that settles every probe in the given states."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, probe: torch.Tensor) -> torch.Tensor:
        return self.states


def test_recall_metrics_from_overlaps():
    stored = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1]])
    probe = torch.tensor([[1.0, 1, 1, -1], [1, -1, -1, 1]])      # 1 and 2 bits flipped
    recalled = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, 1]])     # exact; one bit wrong
    task = AssociativeRecall()
    metrics = task.metrics(task.eval_stats(Recalls(recalled), (probe, stored)))
    assert metrics["overlap"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["loss"] == pytest.approx(1 / 8)               # the share of wrong bits
    assert metrics["recall"] == 0.5
    assert metrics["probe_overlap"] == pytest.approx((0.5 + 0.0) / 2)


def test_recall_has_no_gradient_training():
    with pytest.raises(ConfigError, match="no gradient training"):
        AssociativeRecall().loss(nn.Identity(), ())
