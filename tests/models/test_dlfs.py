"""Deep Learning from Scratch's convolutional networks (seed-003, catalog/003b E5.1, E7.2): their
layers and parameter counts, and the book's conv weight gradient replayed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from nnrun.errors import ConfigError
from nnrun.models.dlfs import BookGradConv2d, ConvDenseNet
from nnrun.models.layers import Dropout
from nnrun.run import validate
from tests.helpers import check_forward_backward, make_config

PRESETS = ["ch5_conv_mnist", "ch7_mnist_convnet"]


def build(preset: str) -> ConvDenseNet:
    cfg = make_config(f"experiment=dlfs/{preset}")
    validate(cfg)
    return instantiate(cfg.model, in_shape=(1, 28, 28), out_features=10)


@pytest.mark.parametrize("preset", PRESETS)
def test_forward_backward_reaches_every_parameter(preset):
    torch.manual_seed(0)
    check_forward_backward(build(preset), torch.randn(4, 1, 28, 28), out_shape=(4, 10))


def test_ch5_parameter_count_and_layers():
    # L5146: "32 x 5 x 5 = 800" conv parameters (no bias); Dense 25,088 -> 10 with a bias.
    net = build("ch5_conv_mnist")
    conv, linear = net.net[0], net.net[-1]
    assert conv.weight.numel() == 800 and conv.bias is None
    assert (linear.in_features, linear.out_features) == (32 * 28 * 28, 10)
    assert sum(p.numel() for p in net.parameters()) == 800 + 250_890
    drop = [m for m in net.modules() if isinstance(m, Dropout)]
    assert len(drop) == 1 and drop[0].p == 0.2 and not drop[0].rescale  # keeps 0.8


def test_ch7_parameter_count():
    # catalog/003b E7.2: 416 + 3,208 + 200,736 + 330.
    assert sum(p.numel() for p in build("ch7_mnist_convnet").parameters()) == 204_690


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


def conv_1d(conv_grad: str, kernel: list[float]) -> torch.nn.Conv2d:
    """The first convolution of a ConvDenseNet, as nnrun builds it (same padding, stride 1, no
    bias), holding the book's 1-D kernel in the middle row of a 3×3 one: on a 1-pixel-high image
    it is the book's `conv_1d` with `_pad_1d(inp, 1)`."""
    net = ConvDenseNet((1, 1, 5), 2, channels=[1], kernel_size=3, conv_bias=False,
                       hidden_sizes=[], conv_grad=conv_grad)
    conv = net.net[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1] = torch.tensor(kernel)
    return conv


def row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1).requires_grad_()


@pytest.mark.parametrize("conv_grad", ["torch", "book"])
def test_conv_1d_sums_and_gradients(conv_grad):
    conv = conv_1d(conv_grad, [1.0, 1.0, 1.0])
    x = row([1, 2, 3, 4, 5])
    out = conv(x)
    assert out.flatten().tolist() == [3, 6, 9, 12, 9]  # L4553
    total = out.sum()
    assert total.item() == 39  # conv_1d_sum, L4591-4602
    total.backward()
    assert conv(row([1, 2, 3, 4, 6])).sum().item() == 41  # so dL/dt5 = 41 - 39 = 2
    assert x.grad.flatten().tolist() == [2, 3, 3, 3, 2]  # [REPO] _input_grad_1d; t5: 2
    assert conv.weight.grad[0, 0, 1].tolist() == [10, 15, 14]  # [REPO] _param_grad_1d
    assert conv_1d(conv_grad, [2.0, 1.0, 1.0])(row([1, 2, 3, 4, 5])).sum().item() == 49


def test_conv_batch_gradients_are_the_loop_versions():
    # [REPO] conv_1d_batch over [[0..6], [1..7]] with [1, 1, 1]: outputs summing to 133, input
    # gradients [2, 3, 3, 3, 3, 3, 2] per row, parameter gradient [36, 49, 48].
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1] = 1.0
    x = torch.stack([torch.arange(7.0), torch.arange(1.0, 8.0)]).view(2, 1, 1, 7)
    x.requires_grad_()
    out = conv(x)
    assert out.view(2, 7).tolist() == [[1, 3, 6, 9, 12, 15, 11], [3, 6, 9, 12, 15, 18, 13]]
    out.sum().backward()
    assert out.sum().item() == 133
    assert x.grad.view(2, 7).tolist() == [[2, 3, 3, 3, 3, 3, 2]] * 2
    assert conv.weight.grad[0, 0, 1].tolist() == [36, 49, 48]
