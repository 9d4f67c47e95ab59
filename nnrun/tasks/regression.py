"""Tasks turn a batch into a loss (training) and into summable statistics (evaluation).

The trainer never looks inside a batch: the data option picks its task in YAML
(`conf/task/`), and the task knows how to call the model on that data's batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data
from nnrun.errors import ConfigError


def pyplot():  # -> the matplotlib.pyplot module, imported only when a figure is drawn
    """matplotlib's pyplot on the Agg backend: figures for TensorBoard, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def with_gradient_of(value: Tensor, stepped: Tensor) -> Tensor:
    """`value` exactly (adding 0.0 rounds nothing) with the gradient of `stepped`: a loss whose
    reported number and whose gradient come from two formulas, as some documents' do."""
    return value.detach() + (stepped - stepped.detach())


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"task.reduction={reduction!r} must be mean or sum")
    return reduction


@dataclass
class Embedding:
    """Points for TensorBoard's embedding projector (PROJECTOR tab: PCA, t-SNE and UMAP).

    Args:
        vectors: (N, D), one point per row.
        labels: N labels to colour and search by, or None.
        images: (N, C, H, W) thumbnails with pixels in [0, 1], or None.
    """

    vectors: Tensor
    labels: list | None = None
    images: Tensor | None = None


class Task:
    """The interface: `loss` for a training step, `eval_stats` + `metrics` for evaluation."""

    metric_names: tuple[str, ...] = ("loss",)
    views_every: int | None = None  # steps between `views` during training; None: at the end

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        """Statistics of one batch that add up over batches: sums (tensors on the device, so
        evaluation syncs once at the end) and counts (ints)."""
        raise NotImplementedError

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        """Metrics from the summed statistics of a whole split."""
        raise NotImplementedError

    def check(self, data: Data) -> None:
        """Check the task's settings against the data before training starts (a ConfigError
        names the key); nothing to check by default."""

    def views(self, model: nn.Module, batches: Batches) -> dict:
        """What is worth a look in TensorBoard besides the metrics, by tag; none by default.

        Each value is a matplotlib figure, Markdown text (a str), an image (a (C, H, W) tensor,
        pixels in [0, 1]), an `Embedding`, or a scalar (a float, which also goes into the final
        metrics)."""
        return {}


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
        self.reduction = _check_reduction(reduction)
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
        variance = yy / n - (y / n) ** 2
        r2 = 1 - mse / variance if variance > 0 else float("nan")
        return {"loss": mse, "mse": mse, "mae": ae / n, "rmse": math.sqrt(mse), "r2": r2}

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


class Classification(Task):
    """Class labels: cross-entropy loss; loss and accuracy on evaluation.

    Args:
        reduction: the training loss over a batch, `mean` or `sum`; evaluation uses means.
    """

    metric_names = ("loss", "acc")

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)

    def logits_and_targets(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        x, y = batch
        return model(x), y

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return F.cross_entropy(*self.logits_and_targets(model, batch), reduction=self.reduction)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        logits, y = self.logits_and_targets(model, batch)
        return {"n": len(y),
                "loss": F.cross_entropy(logits.float(), y, reduction="sum").double(),
                "correct": (logits.argmax(1) == y).sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n = float(stats["n"])
        return {"loss": float(stats["loss"]) / n, "acc": float(stats["correct"]) / n}


class NodeClassification(Classification):
    """Classifying a graph's nodes: the model sees the whole graph, a mask picks the split."""

    def logits_and_targets(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        x, edge_index, y, mask = batch
        return model(x, edge_index)[mask], y[mask]


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
