"""Tables: Boston housing from scikit-learn's old CSV, split exactly as scikit-learn splits it."""

from __future__ import annotations

import math

import numpy as np
import torch

from nnrun.data import Data, Sizes, data_root
from nnrun.data.batches import TensorBatches
from nnrun.errors import DataError


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
                sizes=Sizes((x.shape[1],), 1))
