"""Deep Learning from Scratch, chapters 5 and 7 (seed-003, catalog/003b E5.1, E7.2): the book's
convolutional networks, their parameter counts, and their 1-epoch MNIST targets (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate

from nnrun.dlfs import BookGradConv2d, ConvDenseNet, KeepDropout, init_conv_
from nnrun.errors import ConfigError
from nnrun.run import run, validate

PRESETS = ["ch5_conv_mnist", "ch7_mnist_convnet"]


def build(preset: str) -> ConvDenseNet:
    cfg = make_config(f"experiment=dlfs/{preset}")
    validate(cfg)
    return instantiate(cfg.model, in_shape=(1, 28, 28), out_features=10)


@pytest.mark.parametrize("preset", PRESETS)
def test_forward_backward_reaches_every_parameter(preset):
    torch.manual_seed(0)
    net = build(preset)
    out = net(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ch5_parameter_count_and_layers():
    # L5146: "32 x 5 x 5 = 800" conv parameters (no bias); Dense 25,088 -> 10 with a bias.
    net = build("ch5_conv_mnist")
    conv, linear = net.net[0], net.net[-1]
    assert conv.weight.numel() == 800 and conv.bias is None
    assert (linear.in_features, linear.out_features) == (32 * 28 * 28, 10)
    assert sum(p.numel() for p in net.parameters()) == 800 + 250_890
    drop = [m for m in net.modules() if isinstance(m, KeepDropout)]
    assert len(drop) == 1 and drop[0].keep_prob == 0.8 and not drop[0].rescale


def test_ch7_parameter_count():
    # catalog/003b E7.2: 416 + 3,208 + 200,736 + 330.
    assert sum(p.numel() for p in build("ch7_mnist_convnet").parameters()) == 204_690


def test_conv_init_scales():
    torch.manual_seed(0)
    conv = init_conv_(torch.nn.Conv2d(1, 32, 5, bias=False), "dlfs_glorot")
    assert conv.weight.std().item() == pytest.approx(2 / 33, rel=0.1)  # channels, no sqrt
    conv = init_conv_(torch.nn.Conv2d(16, 8, 5), "standard_normal")
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.1)
    with pytest.raises(ConfigError):
        init_conv_(torch.nn.Conv2d(1, 2, 3), "he")


def test_same_padding_keeps_the_image_size_and_rejects_even_kernels():
    net = ConvDenseNet((3, 8, 6), 2, channels=[4], kernel_size=3, hidden_sizes=[])
    assert net.net[-1].in_features == 4 * 8 * 6
    with pytest.raises(ConfigError):
        ConvDenseNet((1, 28, 28), 10, kernel_size=4)


def book_param_grad(x: np.ndarray, output_grad: np.ndarray, k: int) -> np.ndarray:
    """The book's `_param_grad_matmul` (seed-003 L7380-7428), transcribed: patches
    [H*W, batch, C, k, k] reshaped to rows without a transpose. Returns [in, out, k, k]."""
    batch, channels, size, _ = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    patches = np.stack([pad[:, :, h:h + k, w:w + k] for h in range(size) for w in range(size)])
    patches_reshaped = patches.reshape(batch * size * size, -1)
    output_grad_reshaped = output_grad.transpose(0, 2, 3, 1).reshape(batch * size * size, -1)
    param_grad = patches_reshaped.T @ output_grad_reshaped
    return param_grad.reshape(channels, k, k, -1).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("batch", [1, 4])
def test_book_conv_grad_replays_the_books_im2col(batch):
    torch.manual_seed(0)
    book = BookGradConv2d(2, 3, 5, padding=2, bias=True).double()
    conv = torch.nn.Conv2d(2, 3, 5, padding=2).double()
    conv.load_state_dict(book.state_dict())
    x = torch.randn(batch, 2, 7, 7, dtype=torch.double)
    g = torch.randn(batch, 3, 7, 7, dtype=torch.double)
    inputs = [x.clone().requires_grad_() for _ in range(2)]
    for layer, inp in zip((book, conv), inputs):
        out = layer(inp)
        (out * g).sum().backward()
    assert torch.equal(book(x), conv(x))  # the forward pass is the correct one
    assert torch.allclose(inputs[0].grad, inputs[1].grad)  # so is the input gradient
    assert torch.allclose(book.bias.grad, conv.bias.grad)
    expected = book_param_grad(x.numpy(), g.numpy(), 5).transpose(1, 0, 2, 3)  # torch layout
    assert np.allclose(book.weight.grad.numpy(), expected)
    # Right for one image, scrambled for a batch (catalog/003b G7).
    assert torch.allclose(book.weight.grad, conv.weight.grad) == (batch == 1)


# ---- the 1-epoch MNIST targets (slow: 1000 batches of 60 through the convolutions) ----------


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_conv_mnist_targets(preset, tmp_path, data_root):
    cfg = make_config(f"experiment=dlfs/{preset}", f"data.root={data_root}",
                      "trainer.progress=false", "device=cpu")
    result = run(cfg, tmp_path / preset)
    assert result["steps"] == 1000
    for check in result["expected"]:
        assert check["verdict"] == "reproduced", check
