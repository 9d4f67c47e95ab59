"""Every model does forward and backward: output shape, finite values, a gradient everywhere."""

from __future__ import annotations

import pytest
import torch

from nnrun import models
from nnrun.errors import ConfigError


def check_forward_backward(net: torch.nn.Module, *inputs: torch.Tensor, out_shape: tuple) -> None:
    out = net(*inputs)
    assert out.shape == out_shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("cls", [models.LSTMNet, models.GRUNet, models.RNNNet])
def test_recurrent_nets(cls):
    torch.manual_seed(0)
    net = cls(in_shape=(12, 3), out_features=2, hidden_size=8, num_layers=2, dropout=0.1)
    check_forward_backward(net, torch.randn(5, 12, 3), out_shape=(5, 2))


@pytest.mark.parametrize("activation", ["ReLU", "Tanh", "Sigmoid"])
def test_mlp(activation):
    torch.manual_seed(0)
    net = models.MLP(in_shape=(1, 28, 28), out_features=10, hidden_sizes=[32, 16],
                     activation=activation, dropout=0.1)
    check_forward_backward(net, torch.randn(4, 1, 28, 28), out_shape=(4, 10))
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [32, 16, 10]


def test_mlp_rejects_an_unknown_activation():
    with pytest.raises(ConfigError, match="model.activation"):
        models.MLP(in_shape=(4,), out_features=2, activation="Relu")


def test_cnn():
    torch.manual_seed(0)
    net = models.CNN(in_shape=(1, 28, 28), out_features=10, channels=[4, 8], hidden_size=16)
    check_forward_backward(net, torch.randn(3, 1, 28, 28), out_shape=(3, 10))


def test_gcn():
    torch.manual_seed(0)
    net = models.GCN(in_shape=(6,), out_features=3, hidden_sizes=[5], dropout=0.0)
    x = torch.randn(4, 6)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    check_forward_backward(net, x, edge_index, out_shape=(4, 3))
