"""Boston housing: the rows, the scalings and scikit-learn's split, rebuilt on numpy."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from nnrun.data import Sizes
from nnrun.data.tables import boston, shuffle_split
from nnrun.errors import DataError


def boston_table(data_root) -> np.ndarray:
    with open(data_root / "boston" / "boston_house_prices.csv", newline="") as f:
        rows = list(csv.reader(f))[2:]  # line 1 "506,13,...", line 2 the header
    return np.array(rows, dtype=np.float64)


def test_split_is_scikit_learns_train_test_split():
    # scikit-learn's ShuffleSplit: n_test = ceil(test_size * n), n_train = n - n_test, and one
    # RandomState(random_state).permutation(n): test first, then train
    for test_size, random_state, n_test in [(0.2, 99, 102), (0.3, 80718, 152)]:
        train, test = shuffle_split(506, test_size, random_state)
        permutation = np.random.RandomState(random_state).permutation(506)
        assert len(test) == n_test == math.ceil(test_size * 506)
        assert test.tolist() == permutation[:n_test].tolist()
        assert train.tolist() == permutation[n_test:].tolist()
    with pytest.raises(DataError, match="data.test_size"):
        shuffle_split(506, 1.5, 0)


def test_boston_rows_scaling_and_split(data_root):
    table = boston_table(data_root)
    assert table.shape == (506, 14)
    data = boston(str(data_root), test_size=0.2, random_state=99, scale="all")
    train, test = shuffle_split(506, 0.2, 99)
    features = (table[:, :13] - table[:, :13].mean(0)) / table[:, :13].std(0)  # StandardScaler
    (x, y), = data.train.epoch()  # one full batch, in the split's order without a generator
    assert x.shape == (404, 13) and y.shape == (404, 1)
    assert torch.allclose(x.double(), torch.tensor(features[train]), atol=1e-6)
    assert y[:, 0].tolist() == pytest.approx(table[train, 13].tolist())
    (x_test, y_test), = data.test.epoch()
    assert x_test.shape == (102, 13) and data.val is data.test
    assert torch.allclose(x_test.double(), torch.tensor(features[test]), atol=1e-6)
    assert y_test[:, 0].tolist() == pytest.approx(table[test, 13].tolist())
    assert data.sizes == Sizes((13,), 1)
    # train-only statistics (the default): the training rows are exactly standardised
    own = boston(str(data_root), test_size=0.2, random_state=99)
    (x, _), = own.train.epoch()
    assert x.double().mean(0).abs().max() < 1e-5
    assert (x.double().std(0, correction=0) - 1).abs().max() < 1e-5
    # the DLFS book's split (0.3, 80718) prints the test targets' mean, 22.0776 (catalog/003a)
    dlfs = boston(str(data_root), test_size=0.3, random_state=80718, batch_size=23)
    (_, y_test), = dlfs.test.epoch()
    assert f"{y_test.double().mean().item():.4f}" == "22.0776"
    assert len(dlfs.train) == math.ceil(354 / 23)


def test_boston_split_is_the_books(data_root):

    data = boston(str(data_root), test_size=0.3, random_state=80718, scale="all")
    _, y_test = next(iter(data.test.epoch()))
    assert len(y_test) == 152 and len(data.train) == 1  # 354 rows, one full batch
    assert round(y_test.double().mean().item(), 4) == 22.0776  # L2008
