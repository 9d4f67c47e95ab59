"""Deep Learning from Scratch (Weidman; seed-003, catalog/003b): the book's convolutional
networks, with the book's conv weight gradient as an option (`conv_grad=book`,
`BookGradConv2d`). Its Dense-layer networks are `nnrun.models.mlp.MLP` (`model=dense`), its
losses `nnrun.tasks.dlfs`, its optimizer and decays `nnrun.optim`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.errors import ConfigError
from nnrun.models.layers import Dropout, init_, make_activation
from nnrun.models.mlp import MLP


class _BookConvGrad(torch.autograd.Function):
    """A same-padded, stride-1 convolution whose weight gradient is the one the book's
    `_param_grad_matmul` computes (seed-003 L7380-7428; catalog/003b G7): its image patches come
    out as [positions, batch, ...] and are reshaped to rows without the transpose to
    [batch, positions, ...], so each output-gradient row (batch-major) meets the patch of
    another image and position. The sum is right for batch 1, scrambled for more. The forward
    pass and the input gradient are the correct ones."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        x, weight = ctx.saved_tensors
        k = weight.shape[-1]
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, padding=k // 2)
        batch, positions = x.shape[0], x.shape[2] * x.shape[3]
        patches = F.unfold(x, k, padding=k // 2)               # (B, C*k*k, H*W)
        rows = patches.permute(2, 0, 1).reshape(positions * batch, -1)  # [H*W, B] order
        grads = grad_out.permute(0, 2, 3, 1).reshape(batch * positions, -1)  # [B, H*W] order
        grad_w = (rows.T @ grads).T.reshape(weight.shape)      # (out, C*k*k) -> (out, C, k, k)
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


class BookGradConv2d(nn.Conv2d):
    """nn.Conv2d (stride 1, same padding) with the book's scrambled weight gradient
    (`_BookConvGrad`), for `ConvDenseNet(conv_grad="book")`."""

    def forward(self, x: Tensor) -> Tensor:
        return _BookConvGrad.apply(x, self.weight, self.bias)


CONV_GRADS = ("torch", "book")


def same_conv(c_in: int, c_out: int, kernel_size: int, bias: bool = True, init: str = "torch",
              grad: str = "torch") -> nn.Conv2d:
    """The book's ConvLayer convolution: stride 1, padded by kernel_size // 2 so H and W stay;
    initialised by `init_`; `grad="book"` gives it the book's weight gradient
    (`BookGradConv2d`)."""
    if kernel_size % 2 != 1:
        raise ConfigError(f"model.kernel_size={kernel_size} must be odd (same padding)")
    if grad not in CONV_GRADS:
        raise ConfigError(f"model.conv_grad={grad!r} must be torch (correct) or book")
    conv_class = BookGradConv2d if grad == "book" else nn.Conv2d
    conv = conv_class(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias)
    return init_(conv, init, key="model.conv_init")


class ConvDenseNet(nn.Module):
    """The book's convolutional networks (chapters 5 and 7): stride-1, same-padded convolutions
    (no pooling, so the maps stay at the input's size), each followed by the activation and
    dropout, then the layers of an `MLP`: flatten, Dense layers (Linear, activation, dropout)
    and a Linear output, all in one `net`.

    Chapter 5's (`experiments/dlfs/ch5_conv_mnist.yaml`): channels [32], no conv bias, the
    book's scrambled conv weight gradient (`conv_grad=book`), its conv "glorot", tanh, the
    book's dropout keeping 0.8, Dense(10) from N(0, 1). Chapter 7's MNIST_ConvNet
    (`ch7_mnist_convnet.yaml`): channels [16, 8], hidden [32], tanh, PyTorch's init and
    nn.Dropout(0.2).

    Args:
        in_shape, out_features: from the data, (C, H, W) and the number of classes.
        channels: output channels of each convolution.
        kernel_size: odd square kernel; padding kernel_size // 2 keeps H and W.
        conv_bias: whether the convolutions have a bias (the book's NumPy Conv2D has none).
        hidden_sizes: units of each hidden Dense layer after the flatten.
        activation: torch.nn activation after every convolution and hidden Dense layer.
        dropout, rescale_dropout: dropout after every activation, as `Dropout`.
        conv_init: the convolutions' init (`init_`).
        init: the Dense layers' init (`init_`).
        conv_grad: `torch` (the correct gradient) or `book`: the convolutions' weight gradient
            as the book's NumPy im2col computes it, without a transpose (`_BookConvGrad`).
    """

    reads = "images (batch, channels, height, width): use data=mnist"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (16, 8), kernel_size: int = 5, conv_bias: bool = True,
                 hidden_sizes: Sequence[int] = (32,), activation: str = "Tanh",
                 dropout: float = 0.0, rescale_dropout: bool = True,
                 conv_init: str = "torch", init: str = "torch", conv_grad: str = "torch") -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ConfigError(f"model=conv_dense needs (C, H, W) images; the data gives "
                              f"{in_shape}; use data=mnist")
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels], channels):
            layers += [same_conv(c_in, c_out, kernel_size, conv_bias, conv_init, conv_grad),
                       make_activation(activation)]
            if dropout:
                layers.append(Dropout(dropout, rescale_dropout))
        maps = (channels[-1] if channels else c, h, w)
        head = MLP(maps, out_features, hidden_sizes, activation, dropout, init=init,
                   rescale_dropout=rescale_dropout)
        self.net = nn.Sequential(*layers, *head.net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, out_features)
