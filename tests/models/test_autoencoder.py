"""Deep Learning from Scratch's convolutional autoencoder (seed-003 L6930-7153,
catalog/003b E7.4)."""

from __future__ import annotations

import pytest
import torch

from nnrun.data import Sizes
from nnrun.errors import ConfigError
from nnrun.models.autoencoder import ConvAutoencoder
from tests.helpers import build_model, check_forward_backward


def build() -> ConvAutoencoder:
    """The preset's autoencoder for MNIST, which takes only the data's `in_shape`."""
    return build_model(Sizes((1, 28, 28), 10), "experiment=dlfs/ch7_autoencoder")


def test_parameter_count_and_shapes():
    # catalog/003b E7.4 with k=5: 364 + 2,457 + 153,692 + 159,152 + 2,464 + 351.
    net = build()
    assert sum(p.numel() for p in net.parameters()) == 318_480
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    code = net.encoder(x)
    assert code.shape == (3, 28) and code.abs().max() < 1
    out = net(x)
    assert out.shape == x.shape and out.abs().max() < 1  # tanh output, like the [-1, 1] pixels
    assert torch.equal(out, net.decoder(code))


def test_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    net = build()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    check_forward_backward(net, x, out_shape=x.shape)


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="C, H, W"):
        ConvAutoencoder((13,))
    with pytest.raises(ConfigError, match="odd"):
        ConvAutoencoder((1, 28, 28), kernel_size=4)
