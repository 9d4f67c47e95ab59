"""Data made on the spot: the sine grid to fit, the lecture's toy regression, the single sample."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from nnrun.data.synthetic import single_sample, toy_linreg
from nnrun.errors import DataError
from tests.helpers import LECTURE_W, LECTURE_X, make_config


def test_trig_grid_is_the_documents_grid():
    data = instantiate(make_config("data=trig", "data.A=2.0", "data.B=-0.5").data)
    (x, y), = data.train.epoch()
    assert x.shape == y.shape == (2000, 1) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.linspace(-math.pi, math.pi, 2000))
    assert torch.allclose(y, 2 * torch.cos(x) - 0.5 * torch.sin(x))
    assert data.val.tensors == data.train.tensors and data.test is None  # val = the same grid
    assert data.sizes == Sizes((1,), 1)
    assert len(data.train) == 1  # one full batch: a step per epoch
    assert make_config("data=trig").task._target_ == "nnrun.tasks.regression.CurveFit"


def test_toy_linreg_data():
    data = toy_linreg(LECTURE_X, LECTURE_W)
    (x, y), = data.train.epoch()
    assert x.dtype == torch.float32 and x.shape == (4, 2)
    assert y.flatten().tolist() == [42.0, 34.0, 26.0, 18.0]  # seed-002 L152
    assert data.sizes == Sizes((2,), 1)
    with pytest.raises(DataError, match="data.x"):
        toy_linreg([[1.0, 2.0], [3.0]], LECTURE_W)


def test_single_sample_data():
    data = single_sample([[0.5] * 5] * 5, label=0, num_classes=2)
    (x, y), = data.train.epoch()
    assert x.shape == (1, 5, 5) and y.tolist() == [0]
    assert data.sizes == Sizes((5, 5), 2)
    with pytest.raises(DataError, match="data.label"):
        single_sample([[0.5] * 5] * 5, label=2, num_classes=2)
