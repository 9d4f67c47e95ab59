"""Deep Learning from Scratch's scalar autodiff (chapter 6): the book's examples, and its double
count of a reused intermediate kept as an option."""

from __future__ import annotations

import torch

from nnrun.optim.autodiff import Number


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
