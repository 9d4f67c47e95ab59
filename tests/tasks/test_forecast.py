"""Forecasting a scaled series: errors in the series' own units."""

from __future__ import annotations

import pytest
import torch

from nnrun.tasks.forecast import Forecast


def test_forecast_metrics_are_in_original_units():
    x = torch.zeros(4, 3, 1)
    y = torch.tensor([[0.0], [0.5], [1.0], [0.25]])
    lo, span = torch.full((4, 1), 100.0, dtype=torch.float64), torch.full((4, 1), 500.0,
                                                                          dtype=torch.float64)
    mask = torch.tensor([False, True, True, True])

    class Off(torch.nn.Module):  # predicts the target plus 0.1 (scaled): 50 in original units
        def forward(self, x):
            return y[mask] + 0.1

    task = Forecast()
    metrics = task.metrics(task.eval_stats(Off(), (x, y, lo, span, mask)))
    assert metrics["loss"] == pytest.approx(0.01)
    assert metrics["rmse"] == pytest.approx(50.0) and metrics["mae"] == pytest.approx(50.0)
