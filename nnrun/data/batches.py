"""Datasets as batch sources the trainer iterates over.

Data that fits in memory (sine, MNIST, Cora) lives as tensors on the training device and is
batched by indexing with a seeded permutation: no per-sample Python in the loop.
`LoaderBatches` wraps a `torch.utils.data.DataLoader` for data that does not fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from nnrun.errors import ConfigError, DataError

Batch = tuple[Tensor, ...]


class Batches(Protocol):
    """What the trainer needs of a split: its length and one pass over it."""

    def __len__(self) -> int: ...

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        """Yield one pass of batches, shuffled by `generator` if given, less the first `skip`."""
        ...

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> Batches: ...


def _move(t: Tensor, device: torch.device, moved: dict[int, Tensor]) -> Tensor:
    """Move `t` once: splits that share a tensor (a graph's features) keep sharing it."""
    if id(t) not in moved:
        moved[id(t)] = t.to(device)
    return moved[id(t)]


class TensorBatches:
    """Mini-batches over tensors that share their first dimension.

    Args:
        *tensors: inputs, targets, ...; row i of each belongs to sample i.
        batch_size: samples per batch; the last batch may be smaller unless `drop_last`.
        shuffle: draw a new order each epoch from the generator the trainer passes in.
        drop_last: leave out the last, smaller batch.
    """

    def __init__(self, *tensors: Tensor, batch_size: int, shuffle: bool = True,
                 drop_last: bool = False) -> None:
        assert tensors and all(len(t) == len(tensors[0]) for t in tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        n, bs = len(self.tensors[0]), self.batch_size
        order = None
        if self.shuffle and generator is not None:
            order = torch.randperm(n, generator=generator).to(self.tensors[0].device)
        for i in range(skip, len(self)):
            if order is None:
                yield tuple(t[i * bs:(i + 1) * bs] for t in self.tensors)
            else:
                idx = order[i * bs:(i + 1) * bs]
                yield tuple(t[idx] for t in self.tensors)

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> TensorBatches:
        tensors = (_move(t, device, moved) for t in self.tensors)
        return TensorBatches(*tensors, batch_size=self.batch_size, shuffle=self.shuffle,
                             drop_last=self.drop_last)


class FullBatch:
    """A single batch holding the whole split, e.g. a graph with the mask of its split."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return 1

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        if skip == 0:
            yield self.tensors

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> FullBatch:
        return FullBatch(*(_move(t, device, moved) for t in self.tensors))


class LoaderBatches:
    """A DataLoader, for data that does not fit in memory; batches move to the device as they come.

    Each epoch's order is one permutation drawn from the trainer's generator, exactly as in
    `TensorBatches`, so shuffling stays seeded and a resumed run sees the same batches.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool = True,
                 num_workers: int = 0, device: torch.device | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.num_workers, self.device = num_workers, device

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        n = len(self.dataset)
        shuffled = self.shuffle and generator is not None
        order = torch.randperm(n, generator=generator) if shuffled else torch.arange(n)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
            sampler=order[skip * self.batch_size:].tolist(),
            pin_memory=self.device is not None and self.device.type == "cuda")
        for batch in loader:
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> LoaderBatches:
        return LoaderBatches(self.dataset, self.batch_size, self.shuffle, self.num_workers, device)


@dataclass
class Data:
    """The splits of a dataset and the sizes a model needs from it.

    `dims` goes to the model's constructor at the call site: `in_shape` (one sample's shape)
    and `out_features` (targets per sample, or classes).
    """

    train: Batches
    val: Batches
    test: Batches | None = None
    dims: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> Data:
        """The splits on `device`; a split that validates and tests stays one object, so the
        trainer can tell it evaluated it already."""
        moved: dict[int, Tensor] = {}
        val = self.val.to(device, moved)
        test = self.test
        if test is self.val:
            test = val
        elif test is not None:
            test = test.to(device, moved)
        return Data(self.train.to(device, moved), val, test, self.dims)


def data_root(root: str | None) -> Path:
    """`data.root` if set, else a per-user cache directory."""
    if root:
        return Path(root).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "nnrun"


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
        dims={"in_shape": (window, 1), "out_features": 1},
    )


def _missing(name: str, root: Path, where: str, download: bool, err: Exception) -> DataError:
    tried = "a download failed (offline?)" if download else "data.download=false"
    return DataError(
        f"data.root={root} holds no {name} ({tried}: {str(err).splitlines()[0][:120]}); put the "
        f"files in {root / where} or run online with data.download=true to fetch them")


MNIST_SCALES = ("standard", "unit", "minus1_1")


def mnist(root: str | None = None, batch_size: int = 64, val_size: int = 5000,
          scale: str = "standard", download: bool = True, seed: int = 0,
          shuffle: bool = True) -> Data:
    """MNIST as (N, 1, 28, 28) float tensors from torchvision's files under `root/MNIST/raw`.

    `scale` maps the 0-255 pixels: `standard` to (x/255 - 0.1307) / 0.3081 (the training set's
    mean and std), `unit` to [0, 1], `minus1_1` to [-1, 1] (the training set's min and max,
    0 and 255, mapped to -1 and 1, to match a tanh output; Deep Learning from Scratch L7073).
    `val_size` images are held out of the training set (a seeded split); with `val_size=0`
    the test set validates, as many textbooks do. `shuffle=false` trains on the images in
    file order every epoch.
    """
    from torchvision.datasets import MNIST

    if scale not in MNIST_SCALES:
        raise ConfigError(f"data.scale={scale!r} must be one of {', '.join(MNIST_SCALES)}")
    path = data_root(root)
    try:
        train, test = (MNIST(str(path), train=t, download=download) for t in (True, False))
    except (RuntimeError, OSError, ValueError) as err:
        raise _missing("MNIST", path, "MNIST/raw", download, err) from None

    def images(ds: MNIST) -> Tensor:
        x = ds.data.unsqueeze(1).float().div_(255)      # (N, 1, 28, 28)
        if scale == "standard":
            return x.sub_(0.1307).div_(0.3081)
        return x.mul_(2).sub_(1) if scale == "minus1_1" else x

    x, y = images(train), train.targets
    x_test, y_test = images(test), test.targets
    if not 0 <= val_size < len(x):
        raise DataError(f"data.val_size={val_size} must be in [0, {len(x)})")
    test_split = TensorBatches(x_test, y_test, batch_size=batch_size, shuffle=False)
    if val_size:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        tr, va = order[val_size:], order[:val_size]
        val = TensorBatches(x[va], y[va], batch_size=batch_size, shuffle=False)
        x, y = x[tr], y[tr]
    else:
        val = test_split
    return Data(train=TensorBatches(x, y, batch_size=batch_size, shuffle=shuffle), val=val,
                test=test_split, dims={"in_shape": (1, 28, 28), "out_features": 10})


def cora(root: str | None = None, normalize_features: bool = True, download: bool = True) -> Data:
    """Cora through PyTorch Geometric's Planetoid (`root/Cora/raw`): one graph, split by masks.

    Every split is the whole graph plus its mask; train, val and test share one copy of it.
    """
    from torch_geometric.datasets import Planetoid

    path = data_root(root)
    raw = path / "Cora" / "raw"
    if not download and not raw.is_dir():
        raise _missing("Cora", path, "Cora/raw", download, FileNotFoundError(str(raw)))
    try:
        graph = Planetoid(str(path), "Cora")[0]
    except Exception as err:  # PyG raises URLError, OSError, or its own errors offline
        raise _missing("Cora", path, "Cora/raw", download, err) from None
    x = graph.x
    if normalize_features:
        x = x / x.sum(1, keepdim=True).clamp(min=1)
    train, val, test = (FullBatch(x, graph.edge_index, graph.y, mask)
                        for mask in (graph.train_mask, graph.val_mask, graph.test_mask))
    return Data(train=train, val=val, test=test,
                dims={"in_shape": (x.shape[1],), "out_features": int(graph.y.max()) + 1})


def trig_grid(n_points: int = 2000, A: float = 0.0, B: float = 1.0) -> Data:
    """y = A cos x + B sin x on `n_points` evenly spaced x from -pi to pi, as (N, 1) tensors:
    the curve the RNN lab manual fits polynomials to (sin x, seed-000 L500-502; A cos x +
    B sin x in its assignment 6.1, L1720-1726). A and B keep the document's names.

    One full batch trains. There is nothing to hold out (the document fits the curve itself),
    so validation evaluates the same grid: `val/mse` is the fit's error after the last step.
    """
    if n_points < 2:
        raise DataError(f"data.n_points={n_points} must be >= 2, e.g. data.n_points=2000")
    x = torch.linspace(-math.pi, math.pi, n_points)
    y = A * torch.cos(x) + B * torch.sin(x)
    grid = FullBatch(x.unsqueeze(1), y.unsqueeze(1))  # (N, 1), (N, 1)
    return Data(train=grid, val=grid, dims={"in_shape": (1,), "out_features": 1})


def random_regression(n_samples: int = 64, in_features: int = 1000, out_features: int = 10,
                      seed: int = 0) -> Data:
    """Standard-normal inputs and targets with no relation between them (PyTorch's "Learning
    PyTorch with Examples" tensors), one full batch; validation evaluates the same samples:
    a network can only memorise them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, in_features, generator=g)
    y = torch.randn(n_samples, out_features, generator=g)
    batch = FullBatch(x, y)
    return Data(train=batch, val=batch, dims={"in_shape": (in_features,),
                                              "out_features": out_features})


def shuffle_split(n: int, test_size: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices exactly as scikit-learn's `train_test_split(test_size=...,
    random_state=...)` draws them (its ShuffleSplit): one permutation from numpy's
    `RandomState(random_state)`, the first ceil(test_size * n) indices test, the rest train."""
    if not 0 < test_size < 1:
        raise DataError(f"data.test_size={test_size} must be a fraction in (0, 1), e.g. 0.2")
    n_test = math.ceil(test_size * n)
    if n_test >= n:
        raise DataError(f"data.test_size={test_size} leaves no training rows out of {n}")
    permutation = np.random.RandomState(random_state).permutation(n)
    return permutation[n_test:], permutation[:n_test]


def boston(root: str | None = None, test_size: float = 0.2, random_state: int = 0,
           scale: str = "train", batch_size: int | None = None) -> Data:
    """Boston housing (506 rows, 13 features, target MEDV in $1000s) from scikit-learn's old
    CSV, `root/boston/boston_house_prices.csv`, split like scikit-learn's `train_test_split`.

    Args:
        test_size, random_state: the split (`shuffle_split`); the test rows also validate.
        scale: standardise the features (mean 0, population std 1) with statistics of the
            `train` rows, of `all` rows (the textbooks' leak of test statistics into
            training), or `none`. The target is never scaled.
        batch_size: rows per step; null = the whole training set in one batch.
    """
    path = data_root(root) / "boston" / "boston_house_prices.csv"
    if not path.is_file():
        raise DataError(f"data.root={data_root(root)} holds no boston/boston_house_prices.csv; "
                        "put scikit-learn's boston_house_prices.csv there")
    table = np.loadtxt(path, delimiter=",", skiprows=2, dtype=np.float64)  # (506, 14)
    features, target = table[:, :-1], table[:, -1:]
    train, test = shuffle_split(len(table), test_size, random_state)
    if scale not in ("train", "all", "none"):
        raise DataError(f"data.scale={scale!r} must be train, all or none")
    if scale != "none":
        fit = features[train] if scale == "train" else features
        features = (features - fit.mean(0)) / fit.std(0)  # population std, as StandardScaler
    x = torch.tensor(features, dtype=torch.float32)
    y = torch.tensor(target, dtype=torch.float32)
    test_split = TensorBatches(x[test], y[test], batch_size=len(test), shuffle=False)
    return Data(train=TensorBatches(x[train], y[train], batch_size=batch_size or len(train)),
                val=test_split, test=test_split,
                dims={"in_shape": (x.shape[1],), "out_features": 1})


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
                dims={"in_shape": (window, 1), "out_features": 1})


def toy_linreg(x: Sequence[Sequence[float]], weights: Sequence[float]) -> Data:
    """Noise-free linear targets y = x · weights for a given design matrix: the lecture's toy
    regression (seed-002 L108-152; `conf/data/toy_linreg.yaml` holds its variant 2, 4 samples
    whose 2nd feature is much larger than the 1st; variant 1 is x=[[1,0],[2,0],[3,0],[4,0]],
    weights=[2,0]).

    float32, as the lecture. One full batch trains; there is nothing to hold out, so validation
    evaluates the same samples after the last step.
    """
    if not x or len(weights) == 0 or any(len(row) != len(weights) for row in x):
        raise DataError(f"data.x must be a non-empty list of rows of {len(weights)} numbers, one "
                        f"per entry of data.weights={list(weights)}; got data.x={list(x)}")
    features = torch.tensor([[float(v) for v in row] for row in x])  # (N, F)
    targets = features @ torch.tensor([float(v) for v in weights])   # (N,)
    batch = FullBatch(features, targets.unsqueeze(1))                # (N, F), (N, 1)
    return Data(train=batch, val=batch, dims={"in_shape": (len(weights),), "out_features": 1})


def single_sample(image: Sequence[Sequence[float]], label: int, num_classes: int) -> Data:
    """One image and its class, to overfit: the candle article's 5x5 "dog image" with the
    one-hot target [1, 0] (seed-004 L67), i.e. class 0 of 2, in `conf/data/single_sample.yaml`.

    The one sample is the one batch that trains and validates.
    """
    if not 0 <= label < num_classes:
        raise DataError(f"data.label={label} must be in [0, data.num_classes={num_classes})")
    x = torch.tensor([[float(v) for v in row] for row in image]).unsqueeze(0)  # (1, H, W)
    batch = FullBatch(x, torch.tensor([label]))
    return Data(train=batch, val=batch,
                dims={"in_shape": tuple(x.shape[1:]), "out_features": num_classes})
