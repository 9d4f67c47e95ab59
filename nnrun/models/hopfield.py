"""The discrete Hopfield network as an associative memory, after the RNN lab manual's section 1
(seed-000 L56-235): Hebbian storage, recall from noisy probes, capacity M ≈ N / (2 ln N).

Nothing here is learned by gradient, and the shared trainer runs it unchanged: the network is a
`ClosedForm` model, which stores the patterns of its training split by the Hebbian rule in one
call (`fit`), so the trainer takes no optimizer step whatever `trainer.epochs` says. Evaluation
is recall (`task=associative_recall`): probes with a share of flipped bits go in, and the task
measures how close the states the network settles in are to the stored patterns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.data import Batches
from nnrun.errors import ConfigError
from nnrun.models import ClosedForm


def capacity(n_neurons: int) -> float:
    """The number of patterns N neurons store and recall, by the manual's estimate N / (2 ln N)
    (seed-000 L201-204)."""
    return n_neurons / (2 * math.log(n_neurons))


def _sign(field: Tensor, state: Tensor) -> Tensor:
    """+1 where the field is positive, -1 where negative; a zero field keeps the state."""
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, state))


class HopfieldNetwork(ClosedForm):
    """N binary (±1) neurons, fully connected by symmetric weights with a zero diagonal.

    The weights come from the Hebbian rule `W = (1/N) Σ_μ ξ^μ ξ^μᵀ` over the stored patterns
    ξ^μ; they are a parameter that no gradient touches. Recall runs the discrete dynamics
    `s_i ← sign(Σ_j w_ij s_j)` from a probe until no neuron changes or `max_sweeps` passes.
    Asynchronous updates (one neuron at a time, in a fresh random order each sweep) never raise
    the energy `E(s) = -½ sᵀ W s`, so they settle in a fixed point; synchronous updates (all
    neurons at once) may end in a two-state cycle.

    The memory starts empty; `fit` (or `store`) fills it.

    Args:
        in_shape: (N,), the number of neurons.
        update: `async` or `sync`.
        max_sweeps: the most passes over the neurons a recall takes.
    """

    reads = "patterns of +1 and -1: use data=binary_patterns"

    def __init__(self, in_shape: Sequence[int], update: str = "async",
                 max_sweeps: int = 50) -> None:
        super().__init__()
        if update not in ("async", "sync"):
            raise ConfigError(f"model.update={update!r} must be async or sync")
        if max_sweeps < 1:
            raise ConfigError(f"model.max_sweeps={max_sweeps} must be >= 1")
        n = in_shape[0]
        self.synchronous, self.max_sweeps = update == "sync", max_sweeps
        self.weight = nn.Parameter(torch.zeros(n, n), requires_grad=False)

    def fit(self, train: Batches) -> None:
        """Store the patterns of the training split: the second tensor of its batches
        (`(probe, stored pattern)`, as `data=binary_patterns` gives them)."""
        self.store(torch.cat([batch[1] for batch in train.epoch()]))

    @torch.no_grad()
    def store(self, patterns: Tensor) -> None:
        """Replace the memory with `patterns` (M, N) by the Hebbian outer-product rule."""
        p = patterns.to(self.weight)
        if p.dim() != 2 or p.shape[1] != len(self.weight) or not bool((p.abs() == 1).all()):
            raise ConfigError(f"model=hopfield: a network of {len(self.weight)} neurons stores (M, "
                              f"{len(self.weight)}) patterns of ±1; got shape {tuple(p.shape)}; "
                              "use data=binary_patterns")
        w = p.T @ p / len(self.weight)
        w.fill_diagonal_(0)
        self.weight.copy_(w)

    def energy(self, s: Tensor) -> Tensor:
        """`E(s) = -½ sᵀ W s` of each state in `s` (B, N); returns (B,)."""
        return -0.5 * ((s @ self.weight) * s).sum(-1)

    def update_(self, s: Tensor, i: int) -> Tensor:
        """Asynchronous update of neuron `i` in each state of `s` (B, N), in place; returns `s`."""
        s[:, i] = _sign(s @ self.weight[:, i], s[:, i])
        return s

    def sweep(self, s: Tensor) -> Tensor:
        """One pass: every neuron once in random order (async), or all at once (sync)."""
        if self.synchronous:
            return _sign(s @ self.weight, s)
        s = s.clone()
        for i in torch.randperm(len(self.weight)).tolist():
            self.update_(s, i)
        return s

    @torch.no_grad()
    def forward(self, s: Tensor) -> Tensor:
        """The states the probes `s` (B, N) settle in (or reach after `max_sweeps`)."""
        for _ in range(self.max_sweeps):
            settled = self.sweep(s)
            if torch.equal(settled, s):
                break
            s = settled
        return s
