"""Univariate series from CSV files: min-max scaling, sliding windows, a chronological split,
and a forecasting task that reports its errors in the series' own units.

This is how the RNN lab manual's LSTM listing (seed-000 L1755-1954) forecasts the monthly
airline passengers. Its two quirks, a scaler fit on the whole series and a window left out at
the end, are named options of `csv_series`, off by default.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data, FullBatch, TensorBatches, data_root
from nnrun.errors import DataError
from nnrun.tasks import Task, _check_reduction, pyplot


def read_series(path: str, column: int = 1) -> Tensor:
    """One numeric column of a CSV file with a header row (quoted or not, CRLF or LF endings).

    Returns:
        The values in file order, float64, shape (N,).
    """
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); set data.root to the folder "
                        "that holds timeseries/ (e.g. NNRUN_DATA_ROOT) or data.file to the "
                        "CSV") from None
    try:
        return torch.tensor([float(row[column]) for row in rows[1:]], dtype=torch.float64)
    except (IndexError, ValueError) as err:
        raise DataError(f"{path}: column {column} is not numeric in every row after the header "
                        f"({err}); set data.column to the column of values") from None


@dataclass(frozen=True)
class MinMaxScaler:
    """Maps [lo, lo + span] onto [0, 1], as scikit-learn's MinMaxScaler with its default range
    (a constant series gets span 1, as there)."""

    lo: float
    span: float

    @classmethod
    def fit(cls, values: Tensor) -> MinMaxScaler:
        lo, hi = float(values.min()), float(values.max())
        return cls(lo, hi - lo if hi > lo else 1.0)

    def transform(self, values: Tensor) -> Tensor:
        return (values - self.lo) / self.span

    def inverse(self, values: Tensor) -> Tensor:
        return values * self.span + self.lo


def sliding_windows(series: Tensor, window: int, drop_last_window: bool = False
                    ) -> tuple[Tensor, Tensor]:
    """Every run of `window` consecutive values, and the value that follows it.

    Args:
        series: shape (N,).
        window: inputs per sample.
        drop_last_window: leave out the last window, as the manual's
            `range(len(data) - seq_length - 1)` does (seed-000 L1794).

    Returns:
        x of shape (N - window, window) and y of shape (N - window,), one fewer of each with
        `drop_last_window`.
    """
    windows = series.unfold(0, window + 1, 1)  # (N - window, window + 1)
    if drop_last_window:
        windows = windows[:-1]
    return windows[:, :window], windows[:, window]


def csv_series(file: str, root: str | None = None, column: int = 1, window: int = 4,
               train_fraction: float = 0.67, scaler_fit: str = "train",
               drop_last_window: bool = False, batch_size: int | None = None) -> Data:
    """A series from `root/file`, min-max scaled and cut into windows; the split is chronological.

    The first `int(windows * train_fraction)` windows train; the rest test, and validate too
    (the manual has no validation split). The evaluation splits hold every window with a mask
    of their own part, so the forecast figure shows the whole series and the boundary.
    Batches are `(x, y, lo, span, mask)`, as `Forecast` reads them.

    Args:
        file: the CSV, relative to `root`.
        root: the data root (`data.root`); null = the per-user cache directory.
        column: the column of values (0-based; the first row is the header).
        window: values per input window; the target is the value after it.
        train_fraction: the share of windows, in time order, that train.
        scaler_fit: `train` fits the scaler on the values the training windows see; `all`
            fits it on the whole series, test included, as the manual does (L1810-1812).
        drop_last_window: leave out the last window, as the manual does (L1794).
        batch_size: training windows per step; null = all of them (full batch).
    """
    if scaler_fit not in ("train", "all"):
        raise DataError(f"data.scaler_fit={scaler_fit!r} must be train or all")
    if batch_size is not None and batch_size <= 0:
        raise DataError(f"data.batch_size={batch_size} must be > 0, or null for a full batch")
    series = read_series(str(data_root(root) / file), column)
    n_windows = len(series) - window - int(drop_last_window)
    if window < 1 or n_windows < 2:
        raise DataError(f"data.window={window} leaves {max(n_windows, 0)} windows in {file} "
                        f"({len(series)} values); use a window of 1 to {len(series) - 3}")
    n_train = int(n_windows * train_fraction)  # truncated, as the manual's int(len(y) * 0.67)
    if not 0 < n_train < n_windows:
        raise DataError(f"data.train_fraction={train_fraction} leaves no training or no test "
                        f"windows of {n_windows}")
    seen = series if scaler_fit == "all" else series[:n_train + window]
    scaler = MinMaxScaler.fit(seen)
    x, y = sliding_windows(scaler.transform(series).float(), window, drop_last_window)
    x, y = x.unsqueeze(-1).contiguous(), y.unsqueeze(-1).contiguous()  # (N, T, 1), (N, 1)
    lo = torch.full_like(y, scaler.lo, dtype=torch.float64)  # exact, to map values back
    span = torch.full_like(y, scaler.span, dtype=torch.float64)
    test_mask = torch.arange(n_windows) >= n_train
    train = TensorBatches(x[:n_train], y[:n_train], lo[:n_train], span[:n_train],
                          torch.ones(n_train, dtype=torch.bool),
                          batch_size=batch_size or n_train)
    test = FullBatch(x, y, lo, span, test_mask)
    return Data(train=train, val=test, test=test,
                dims={"in_shape": (window, 1), "out_features": 1})


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
        self.reduction = _check_reduction(reduction)

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
        variance = yy / n - (y / n) ** 2
        r2 = 1 - se_units / n / variance if variance > 0 else float("nan")
        return {"loss": se / n, "rmse": math.sqrt(se_units / n), "mae": ae_units / n, "r2": r2}

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
