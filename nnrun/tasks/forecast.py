"""Forecasting a min-max scaled series (`data=airline`, `data=shampoo`): regression whose errors
are reported in the series' own units, with the forecast drawn over the whole series."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.tasks import Task, check_reduction, pyplot
from nnrun.tasks.regression import r_squared


class Forecast(Task):
    """Regression on a scaled series; errors are reported in the series' own units.

    Batches are `(x, y, lo, span, mask)`: windows and next values in scaled units, the scaler's
    minimum and range per sample (to map values back: `v * span + lo`), and the samples this
    split counts. Metrics: `loss`, the MSE in scaled units that training minimises; `rmse`,
    `mae` and `r2` in original units.

    Args:
        reduction: the training loss over a batch, `mean` or `sum`; evaluation uses means.
    """

    metric_names = ("loss", "rmse", "mae", "r2")

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_reduction(reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y, _, _, mask = batch
        return F.mse_loss(model(x[mask]), y[mask], reduction=self.reduction)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        x, y, lo, span, mask = batch
        pred = model(x[mask]).double()
        y, lo, span = y[mask].double(), lo[mask].double(), span[mask].double()
        err = pred - y
        err_units, y_units = err * span, y * span + lo
        return {"n": y.numel(), "se": err.square().sum(), "se_units": err_units.square().sum(),
                "ae_units": err_units.abs().sum(), "y": y_units.sum(),
                "yy": y_units.square().sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n, se, se_units, ae_units, y, yy = (
            float(stats[k]) for k in ("n", "se", "se_units", "ae_units", "y", "yy"))
        return {"loss": se / n, "rmse": math.sqrt(se_units / n), "mae": ae_units / n,
                "r2": r_squared(n, se_units, y, yy)}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """The forecast over every window of the split, in original units, with a dashed line
        where the split's own part begins (the manual's Fig. 5, seed-000 L1935-1954)."""
        plt = pyplot()
        model.eval()
        parts = [(model(x) * span + lo, y * span + lo, mask)
                 for x, y, lo, span, mask in batches.epoch()]
        pred, true, mask = (torch.cat(t).float().cpu() for t in zip(*parts))
        fig, ax = plt.subplots(figsize=(8, 3))
        if mask.any() and not mask.all():
            ax.axvline(int(mask.int().argmax()), c="r", ls="--", label="train | test")
        ax.plot(true[:, 0].numpy(), label="truth", lw=1)
        ax.plot(pred[:, 0].numpy(), label="prediction", lw=1)
        ax.set_xlabel("window (in time order)")
        ax.set_title("Time-Series Prediction")
        ax.legend()
        fig.tight_layout()
        return {"val/forecast": fig}
