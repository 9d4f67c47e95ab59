"""Tasks turn a batch into a loss (training) and into summable statistics (evaluation).

The trainer never looks inside a batch: the data option picks its task in YAML
(`conf/task/`), and the task knows how to call the model on that data's batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.errors import ConfigError


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"task.reduction={reduction!r} must be mean or sum")
    return reduction


class Task:
    """The interface: `loss` for a training step, `eval_stats` + `metrics` for evaluation."""

    metric_names: tuple[str, ...] = ("loss",)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        """Statistics of one batch that add up over batches: sums (tensors on the device, so
        evaluation syncs once at the end) and counts (ints)."""
        raise NotImplementedError

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        """Metrics from the summed statistics of a whole split."""
        raise NotImplementedError

    def figures(self, model: nn.Module, batches: Batches) -> dict:
        """Matplotlib figures worth a look in TensorBoard, by tag; none by default."""
        return {}


class Regression(Task):
    """Real-valued targets: squared-error loss; MSE, MAE, RMSE and R² on evaluation.

    Args:
        reduction: how the training loss adds up over a batch: `mean`, or `sum` (the summed
            squared error several documents train on). Evaluation metrics are per-sample means.
    """

    metric_names = ("loss", "mse", "mae", "rmse", "r2")

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.mse_loss(model(x), y, reduction=self.reduction)

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
    def figures(self, model: nn.Module, batches: Batches) -> dict:
        """Prediction against truth over the split, in order: a forecast plot for series."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        model.eval()
        pairs = [(model(x)[:, 0], y[:, 0]) for x, y in batches.epoch()]
        pred = torch.cat([p for p, _ in pairs]).float().cpu()
        true = torch.cat([t for _, t in pairs]).float().cpu()
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(true.numpy(), label="truth", lw=1)
        ax.plot(pred.numpy(), label="prediction", lw=1)
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
