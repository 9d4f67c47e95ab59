"""Series cut into windows, each predicting what comes next: a noisy sine wave (the default job),
the textbook's sine series, and univariate series from CSV files with min-max scaling and a
chronological split.

`csv_series` is how the RNN lab manual's LSTM listing (seed-000 L1755-1954) forecasts the monthly
airline passengers. Its two quirks, a scaler fit on the whole series and a window left out at
the end, are named options, off by default; the `forecast` task reports its errors in the
series' own units.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nnrun.data import Data, Sizes, data_root
from nnrun.data.batches import FullBatch, TensorBatches
from nnrun.errors import DataError


def sine(n_points: int = 1000, period: float = 50.0, noise: float = 0.1, window: int = 20,
         val_fraction: float = 0.2, batch_size: int = 32, seed: int = 0) -> Data:
    """A noisy sine wave cut into sliding windows; predict the point after each window.

    The split is chronological: the last `val_fraction` of windows validate.
    """
    if window >= n_points:
        raise DataError(f"data.window={window} must be smaller than data.n_points={n_points}")
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_points, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / period) + noise * torch.randn(n_points, generator=g)
    windows = series.unfold(0, window + 1, 1)           # (N, window + 1)
    x = windows[:, :window].unsqueeze(-1).contiguous()  # (N, window, 1)
    y = windows[:, window:].contiguous()                # (N, 1)
    n_train = round(len(x) * (1 - val_fraction))
    if not 0 < n_train < len(x):
        raise DataError(f"data.val_fraction={val_fraction} leaves no train or no val windows")
    return Data(
        train=TensorBatches(x[:n_train], y[:n_train], batch_size=batch_size),
        val=TensorBatches(x[n_train:], y[n_train:], batch_size=batch_size, shuffle=False),
        sizes=Sizes((window, 1), 1),
    )


def sine_grid(n_points: int = 2000, t_end: float = 100.0, noise: float = 0.1,
              window: int = 100, windowing: str = "sliding", batch_size: int = 20,
              seed: int = 0) -> Data:
    """sin(t) on `n_points` evenly spaced t in [0, t_end], drawn twice with independent
    Gaussian noise: the first draw trains, the second validates and tests (the textbook's
    chapter 6 series, seed-001 L1408-1419).

    Args:
        window: inputs per window.
        windowing: `sliding`: every window of the series, the target the point right after
            it. `book`: the textbook's `DatasetSin` (seed-001 L1441-1455): only the first
            n_points // window windows, each with the point two steps after it as the target
            (`data[i + window + 1]`).
    """
    if windowing not in ("sliding", "book"):
        raise DataError(f"data.windowing={windowing!r} must be sliding or book")
    if window + 2 > n_points:
        raise DataError(f"data.window={window} must be at most data.n_points - 2 = "
                        f"{n_points - 2}")
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, t_end, n_points)
    draws = [torch.sin(t) + noise * torch.randn(n_points, generator=g) for _ in range(2)]

    def windows(series: Tensor) -> tuple[Tensor, Tensor]:
        if windowing == "book":
            starts = torch.arange(n_points // window)
            x = series[starts.unsqueeze(1) + torch.arange(window)]  # (n // window, window)
            y = series[starts + window + 1]
        else:
            x = series.unfold(0, window + 1, 1)  # (N - window, window + 1)
            x, y = x[:, :window], x[:, window]
        return x.unsqueeze(-1).contiguous(), y.unsqueeze(-1).contiguous()  # (B, T, 1), (B, 1)

    (x, y), (x_test, y_test) = windows(draws[0]), windows(draws[1])
    test = TensorBatches(x_test, y_test, batch_size=batch_size, shuffle=False)
    return Data(train=TensorBatches(x, y, batch_size=batch_size), val=test, test=test,
                sizes=Sizes((window, 1), 1))



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
    return Data(train=train, val=test, test=test, sizes=Sizes((window, 1), 1))
