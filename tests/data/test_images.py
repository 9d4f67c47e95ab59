"""MNIST as tensors: the splits, the scalings, file order."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from tests.helpers import make_config


def test_mnist_builds_from_the_data_root(data_root):
    mnist = instantiate(make_config("data=mnist", f"data.root={data_root}").data)
    assert mnist.sizes == Sizes((1, 28, 28), 10)
    assert len(mnist.train.tensors[0]) == 55000 and len(mnist.val.tensors[0]) == 5000
    assert len(mnist.test.tensors[0]) == 10000


def test_mnist_scales_to_minus1_1(data_root):
    data = instantiate(make_config("experiment=dlfs/ch7_autoencoder",
                                   f"data.root={data_root}").data)
    x_train, x_test = data.train.tensors[0], data.test.tensors[0]
    assert (x_train.min(), x_train.max()) == (-1.0, 1.0)
    assert x_test.min() >= -1 and x_test.max() <= 1
    assert data.val is data.test  # val_size 0: the test set validates, as the book's fit did


def test_mnist_cnn_data_is_in_file_order_and_tested_every_epoch(data_root):
    cfg = make_config("experiment=kfu_pytorch/ch7_mnist_cnn", f"data.root={data_root}")
    data = instantiate(cfg.data)
    x, y = next(data.train.epoch(torch.Generator().manual_seed(1)))  # the trainer's call
    assert torch.equal(y, data.train.tensors[1][:128])  # no shuffling: the book's DataLoader
    assert len(data.train) == 469 and data.val is data.test and len(data.test) == 79
