"""Windowed series: the noisy sine, the textbook's sine series, and the CSV series with min-max
scaling and a chronological split."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from nnrun.data.series import MinMaxScaler, csv_series, read_series, sine_grid, sliding_windows
from nnrun.errors import DataError
from tests.helpers import make_config

AIRLINE, SHAMPOO = "timeseries/airline-passengers.csv", "timeseries/shampoo.csv"


def test_sine_data_builds_windows():
    cfg = make_config("data.n_points=100", "data.window=10", "data.val_fraction=0.2")
    data = instantiate(cfg.data)
    x, y = next(data.train.epoch())
    assert x.shape[1:] == (10, 1) and y.shape[1:] == (1,)
    assert data.sizes == Sizes((10, 1), 1)
    # windows are chronological: the val split starts where train ends
    n_train = sum(len(b[0]) for b in data.train.epoch())
    n_val = sum(len(b[0]) for b in data.val.epoch())
    assert (n_train, n_val) == (72, 18)


def test_sine_grid_windowing():
    series = torch.sin(torch.linspace(0, 100, 2000))  # noise 0: the series itself
    book = sine_grid(noise=0.0, windowing="book")
    (x, y), = book.train.epoch()  # one batch of 20 windows, in order without a generator
    assert x.shape == (20, 100, 1) and y.shape == (20, 1)
    for i in range(20):
        # the book's target skips a step: data[index + sequenceLength + 1]
        assert torch.equal(x[i, :, 0], series[i:i + 100]) and y[i, 0] == series[i + 101]

    sliding = sine_grid(noise=0.0, batch_size=2000)
    (x, y), = sliding.train.epoch()
    assert x.shape == (1900, 100, 1)
    assert torch.equal(x[5, :, 0], series[5:105]) and y[5, 0] == series[105]
    assert sliding.sizes == Sizes((100, 1), 1)
    # train and test are two noise draws on one grid
    noisy = sine_grid(noise=0.1, windowing="book")
    (x, _), = noisy.train.epoch()
    (x_test, _), = noisy.test.epoch()
    assert not torch.equal(x, x_test)
    assert (x - x_test).std() == pytest.approx(0.1 * math.sqrt(2), rel=0.2)
    with pytest.raises(DataError, match="data.windowing"):
        sine_grid(windowing="nope")


def test_read_series_parses_the_quoted_crlf_csvs(data_root):
    airline = read_series(str(data_root / AIRLINE))
    assert len(airline) == 144 and airline[0] == 112 and airline[-1] == 432
    assert airline.sum() == 40363 and airline.min() == 104 and airline.max() == 622
    shampoo = read_series(str(data_root / SHAMPOO))
    assert len(shampoo) == 36 and shampoo[0] == 266.0 and shampoo[-1] == 646.9
    assert shampoo.sum().item() == pytest.approx(11253.6)


def test_min_max_scaler_maps_to_the_unit_interval_and_back():
    values = torch.tensor([112.0, 104.0, 622.0, 300.0], dtype=torch.float64)
    scaler = MinMaxScaler.fit(values)
    scaled = scaler.transform(values)
    assert scaled.min() == 0 and scaled.max() == 1
    torch.testing.assert_close(scaler.inverse(scaled), values)
    assert MinMaxScaler.fit(torch.ones(3)).span == 1.0  # a constant series, as scikit-learn


def test_sliding_windows_and_the_books_missing_window():
    series = torch.arange(10.0)
    x, y = sliding_windows(series, 4)
    assert x.shape == (6, 4) and torch.equal(x[0], series[:4]) and y[0] == 4 and y[-1] == 9
    x, y = sliding_windows(series, 4, drop_last_window=True)  # range(len(data) - 4 - 1)
    assert x.shape == (5, 4) and y[-1] == 8


@pytest.mark.parametrize("file,book,n_windows,n_train", [
    (AIRLINE, True, 139, 93), (AIRLINE, False, 140, 93),
    (SHAMPOO, True, 31, 20), (SHAMPOO, False, 32, 21)])
def test_series_split_sizes(data_root, file, book, n_windows, n_train):
    data = csv_series(file, root=str(data_root), window=4, train_fraction=0.67,
                      scaler_fit="all" if book else "train", drop_last_window=book)
    x, y, lo, span, test_mask = data.test.tensors
    assert x.shape == (n_windows, 4, 1) and y.shape == (n_windows, 1)
    assert int((~test_mask).sum()) == n_train and test_mask[n_train:].all()  # chronological
    (train_x, train_y, *_), = data.train.epoch()  # one full batch
    assert len(data.train) == 1 and torch.equal(train_x, x[:n_train])
    assert data.val is data.test and data.sizes == Sizes((4, 1), 1)
    series = read_series(str(data_root / file))
    # scaled back, window i is values i..i+3 and its target value i+4
    torch.testing.assert_close((x[:, :, 0] * span + lo), series.unfold(0, 4, 1)[:n_windows])
    torch.testing.assert_close((y * span + lo)[:, 0], series[4:4 + n_windows])


def test_scaler_fit_on_the_training_part_or_on_all(data_root):
    series = read_series(str(data_root / AIRLINE))
    book = csv_series(AIRLINE, root=str(data_root), scaler_fit="all", drop_last_window=True)
    *_, lo, span, _ = book.test.tensors
    assert (lo[0].item(), span[0].item()) == (104.0, 518.0)  # min and range of all 144 values
    own = csv_series(AIRLINE, root=str(data_root))
    x, y, lo, span, mask = own.test.tensors
    seen = series[:93 + 4]  # what the 93 training windows see
    assert (lo[0].item(), span[0].item()) == (seen.min().item(), (seen.max() - seen.min()).item())
    assert y[~mask].max() == 1 and y[mask].max() > 1  # the test part rises above the training part


def test_series_options_are_checked(data_root):
    with pytest.raises(DataError, match="data.scaler_fit"):
        csv_series(AIRLINE, root=str(data_root), scaler_fit="test")
    with pytest.raises(DataError, match="data.train_fraction"):
        csv_series(SHAMPOO, root=str(data_root), train_fraction=0.01)
    with pytest.raises(DataError, match="data.root"):
        csv_series("timeseries/missing.csv", root=str(data_root))
