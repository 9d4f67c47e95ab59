"""Deep Learning from Scratch's checks that involve no training (catalog/003b §2 U): the
convolution sums of chapter 5 through nnrun's conv layers, and the autodiff values of chapter 6
through `nnrun.autodiff` and torch."""

from __future__ import annotations

import pytest
import torch

from nnrun.autodiff import Number
from nnrun.dlfs import ConvDenseNet


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
    # L4665-4687: 49 - 39 = 10 = dL/dw1 = t1 + t2 + t3 + t4.


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


def test_autodiff_of_the_chapter_6_examples():
    a = Number(3)
    b = a * 4
    c = b + 5
    c.backward()
    assert (a.grad, b.grad) == (4, 1)  # L5367-5400

    a = Number(3)
    d = (a * 4 + 3) * (a + 2)  # L5409-5419
    assert d.value == 75  # L5424
    forward = lambda v: (v * 4 + 3) * (v + 2)  # noqa: E731
    assert round((forward(3.01) - forward(2.99)) / 0.02, 3) == 35.0  # L5435-5445
    d.backward()
    assert a.grad == 35  # L5451-5461: 8a + 11


def test_torch_gives_the_same_35s():
    a = torch.tensor([[3.0, 3.0], [3.0, 3.0]], requires_grad=True)  # L6215-6241
    ((a * 4 + 3) * (a + 2)).sum().backward()
    assert a.grad.tolist() == [[35.0, 35.0], [35.0, 35.0]]


def test_a_reused_intermediate_counts_once_unless_the_books_accumulation_is_asked_for():
    # catalog/003b G9: x = 2, y = 3x, z = y * y: dz/dx = 18x = 36; the book's backward gives 54.
    for book, expected in ((False, 36), (True, 54)):
        x = Number(2)
        y = x * 3
        (y * y).backward(book_accumulation=book)
        assert x.grad == expected
    t = torch.tensor(2.0, requires_grad=True)
    y = t * 3
    (y * y).backward()
    assert t.grad.item() == 36
