"""Deep Learning from Scratch's scalar automatic differentiation (ch. 6 opening, seed-003
L5286-5461; catalog/003b §3.1): numbers that remember how they were made from `+` and `*`, and
`backward` that sends the gradient back to every number they came from.

For reading alongside the book and checking it against torch.autograd, not for training.
`backward` visits the graph in reverse topological order, so a number used twice gets the sum of
both uses' gradients once. The book's version forwards each node's *accumulated* gradient on
every visit, which counts a reused intermediate twice (catalog/003b G9: for y = 3x, z = y * y at
x = 2 it gives 54, not 36); `book_accumulation=True` keeps that behaviour to show it.
"""

from __future__ import annotations


class Number:
    """A float and its gradient, with the numbers and operation it was made from.

    >>> a = Number(3); d = (a * 4 + 3) * (a + 2); d.backward(); (d.value, a.grad)
    (75.0, 35.0)
    """

    def __init__(self, value: float, parents: tuple[tuple[Number, float], ...] = ()) -> None:
        self.value = float(value)
        self.grad = 0.0
        self.parents = parents  # (parent, ∂self/∂parent) pairs

    def __add__(self, other: Number | float) -> Number:
        other = other if isinstance(other, Number) else Number(other)
        return Number(self.value + other.value, ((self, 1.0), (other, 1.0)))

    def __mul__(self, other: Number | float) -> Number:
        other = other if isinstance(other, Number) else Number(other)
        return Number(self.value * other.value, ((self, other.value), (other, self.value)))

    __radd__ = __add__
    __rmul__ = __mul__

    def backward(self, book_accumulation: bool = False) -> None:
        """d(self)/d(n) into `n.grad` for every number `n` this one was made from (added to
        what is there, as the book's does)."""
        if book_accumulation:
            self._book_backward(1.0)
            return
        order: list[Number] = []
        seen: set[int] = set()

        def visit(node: Number) -> None:  # post-order: a node after everything it came from
            if id(node) not in seen:
                seen.add(id(node))
                for parent, _ in node.parents:
                    visit(parent)
                order.append(node)

        visit(self)
        pending = {id(node): 0.0 for node in order}
        pending[id(self)] = 1.0
        for node in reversed(order):  # every use of a node is done before the node itself
            node.grad += pending[id(node)]
            for parent, local in node.parents:
                pending[id(parent)] += local * pending[id(node)]

    def _book_backward(self, incoming: float) -> None:
        """The book's recursion (L5339-5365): add the incoming gradient, then pass this node's
        whole accumulated gradient on, on every visit."""
        self.grad += incoming
        for parent, local in self.parents:
            parent._book_backward(local * self.grad)

    def __repr__(self) -> str:
        return f"Number({self.value}, grad={self.grad})"
