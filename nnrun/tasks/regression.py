"""Real-valued targets: regression (squared error; MSE, MAE, RMSE, R²) and curve fitting."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.errors import ConfigError
from nnrun.tasks import Task, check_reduction, pyplot, with_gradient_of


def r_squared(n: float, se: float, y: float, yy: float) -> float:
    """The coefficient of determination 1 - SSE / SST from summed statistics of `n` targets:
    `se` the squared errors, `y` and `yy` the targets and their squares; NaN for constant
    targets."""
    variance = yy / n - (y / n) ** 2
    return 1 - se / n / variance if variance > 0 else float("nan")


class Regression(Task):
    """Real-valued targets: squared-error loss; MSE, MAE, RMSE and R² on evaluation.

    Args:
        reduction: how the training loss adds up over a batch: `mean`, or `sum` (the summed
            squared error several documents train on). Evaluation metrics are per-sample means.
        grad_reduction: the reduction the gradient is taken of, where it differs from the
            reported loss's; null (the default) is the true gradient of the reported loss.
            `sum` with `reduction=mean` reports the mean squared error but steps along the
            gradient of the summed one (N times larger), as a hand-written gradient that
            forgets the 1/N does (seed-001 L592).
        figure: the plot of prediction against truth over the validation split: `forecast`
            (both in sample order, for series) or `scatter` (predicted against true).
    """

    metric_names = ("loss", "mse", "mae", "rmse", "r2")
    FIGURES = ("forecast", "scatter")

    def __init__(self, reduction: str = "mean", grad_reduction: str | None = None,
                 figure: str = "forecast") -> None:
        self.reduction = check_reduction(reduction)
        if grad_reduction not in (None, "mean", "sum"):
            raise ConfigError(f"task.grad_reduction={grad_reduction!r} must be null, mean or sum")
        self.grad_reduction = grad_reduction or reduction
        if figure not in self.FIGURES:
            raise ConfigError(f"task.figure={figure!r} must be one of {', '.join(self.FIGURES)}")
        self.figure = figure

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        pred = model(x)
        loss = F.mse_loss(pred, y, reduction=self.reduction)
        if self.grad_reduction == self.reduction:
            return loss
        return with_gradient_of(loss, F.mse_loss(pred, y, reduction=self.grad_reduction))

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        x, y = batch
        y = y.double()
        err = model(x).double() - y
        return {"n": y.numel(), "se": err.square().sum(),
                "ae": err.abs().sum(), "y": y.sum(), "yy": y.square().sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n, se, ae, y, yy = (float(stats[k]) for k in ("n", "se", "ae", "y", "yy"))
        mse = se / n
        return {"loss": mse, "mse": mse, "mae": ae / n, "rmse": math.sqrt(mse),
                "r2": r_squared(n, se, y, yy)}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """Prediction against truth over the split: `val/forecast`, both in sample order (for
        series), or `val/scatter`, predicted against true with the diagonal."""
        plt = pyplot()
        model.eval()
        pairs = [(model(x)[:, 0], y[:, 0]) for x, y in batches.epoch()]
        pred = torch.cat([p for p, _ in pairs]).float().cpu().numpy()
        true = torch.cat([t for _, t in pairs]).float().cpu().numpy()
        if self.figure == "scatter":
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.scatter(true, pred, s=8, c="tab:blue", label="val")
            lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
            ax.plot([lo, hi], [lo, hi], c="gray", lw=1, ls="--")
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
            ax.legend()
            fig.tight_layout()
            return {"val/scatter": fig}
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(true, label="truth", lw=1)
        ax.plot(pred, label="prediction", lw=1)
        ax.set_xlabel("sample (in order)")
        ax.legend()
        fig.tight_layout()
        return {"val/forecast": fig}


class CurveFit(Regression):
    """Fitting y = f(x) for scalar x: regression plus `sse`, the summed squared error over the
    split (the loss the RNN lab manual prints), and a figure of the fit against the target.

    Args:
        reduction: the training loss over a batch, `mean` or `sum` (the SSE).
    """

    metric_names = (*Regression.metric_names, "sse")

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        return {**super().metrics(stats), "sse": float(stats["se"])}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """The target and the model's fit against x, over the split: `val/fit`."""
        plt = pyplot()
        model.eval()
        triples = [(x[:, 0], y[:, 0], model(x)[:, 0]) for x, y in batches.epoch()]
        x, y, fit = (torch.cat(parts).float().cpu() for parts in zip(*triples))
        order = x.argsort()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x[order].numpy(), y[order].numpy(), label="target", lw=2)
        sse = float((fit.double() - y.double()).square().sum())
        ax.plot(x[order].numpy(), fit[order].numpy(), label=f"fit (SSE {sse:.5g})", lw=1.5,
                ls="--")
        ax.set_xlabel("x")
        ax.legend()
        fig.tight_layout()
        return {"val/fit": fig}
