"""Convolutional classifiers: the small CNN, the PyTorch example's CNN and the candle article's
SimpleConvNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from nnrun.errors import ConfigError
from nnrun.models.conv import CNN, ExampleCNN, SimpleConvNet
from tests.helpers import check_forward_backward, make_config


def test_cnn():
    torch.manual_seed(0)
    net = CNN(in_shape=(1, 28, 28), out_features=10, channels=[4, 8], hidden_size=16)
    check_forward_backward(net, torch.randn(3, 1, 28, 28), out_shape=(3, 10))


def test_example_cnn_has_the_books_parameter_count():
    net = instantiate(make_config("model=example_cnn").model, in_shape=(1, 28, 28),
                      out_features=10)
    assert sum(p.numel() for p in net.parameters()) == 1_199_882  # catalog/001 gotcha 46
    with pytest.raises(ConfigError, match="model.channels"):
        ExampleCNN(in_shape=(1, 28, 28), out_features=10, channels=(32, 64, 128))


def test_simple_convnet_forward_backward():
    model = SimpleConvNet((1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 34_890  # catalog/004 X10
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_simple_convnet_options():
    frozen = SimpleConvNet((1, 28, 28), 10, init="torch", freeze_convs=True)
    F.cross_entropy(frozen(torch.rand(2, 1, 28, 28)), torch.tensor([0, 1])).backward()
    convs = [m for m in frozen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and all(p.grad is None for c in convs for p in c.parameters())
    assert all(p.grad is not None for p in frozen.head.parameters())
    with pytest.raises(ConfigError, match="model.init"):
        SimpleConvNet((1, 28, 28), 10, init="glorot")
    with pytest.raises(ConfigError, match="model.channels"):
        SimpleConvNet((1, 16, 16), 10)
