"""The discrete Hopfield network as an associative memory, after the RNN lab manual's section 1
(seed-000 L56-235): Hebbian storage, recall from noisy probes, capacity M ≈ N / (2 ln N).

Nothing here is learned by gradient, and the shared trainer runs it unchanged: the data hands
its patterns to the model through `Data.dims`, the model stores them by the Hebbian rule when
it is built, and the training split is empty, so the trainer takes no optimizer step whatever
`trainer.epochs` says. Evaluation is recall: probes with a share of flipped bits go in, and the
task measures how close the states the network settles in are to the stored patterns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data, FullBatch, TensorBatches
from nnrun.errors import ConfigError, DataError
from nnrun.tasks import Task, pyplot


def capacity(n_neurons: int) -> float:
    """The number of patterns N neurons store and recall, by the manual's estimate N / (2 ln N)
    (seed-000 L201-204)."""
    return n_neurons / (2 * math.log(n_neurons))


def _sign(field: Tensor, state: Tensor) -> Tensor:
    """+1 where the field is positive, -1 where negative; a zero field keeps the state."""
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, state))


class HopfieldNetwork(nn.Module):
    """N binary (±1) neurons, fully connected by symmetric weights with a zero diagonal.

    The weights come from the Hebbian rule `W = (1/N) Σ_μ ξ^μ ξ^μᵀ` over the stored patterns
    ξ^μ; they are a parameter that no gradient touches. Recall runs the discrete dynamics
    `s_i ← sign(Σ_j w_ij s_j)` from a probe until no neuron changes or `max_sweeps` passes.
    Asynchronous updates (one neuron at a time, in a fresh random order each sweep) never raise
    the energy `E(s) = -½ sᵀ W s`, so they settle in a fixed point; synchronous updates (all
    neurons at once) may end in a two-state cycle.

    Args:
        in_shape: (N,), the number of neurons.
        patterns: (M, N) ±1 patterns to store.
        update: `async` or `sync`.
        max_sweeps: the most passes over the neurons a recall takes.
    """

    def __init__(self, in_shape: Sequence[int], patterns: Tensor, update: str = "async",
                 max_sweeps: int = 50) -> None:
        super().__init__()
        if update not in ("async", "sync"):
            raise ConfigError(f"model.update={update!r} must be async or sync")
        if max_sweeps < 1:
            raise ConfigError(f"model.max_sweeps={max_sweeps} must be >= 1")
        n = in_shape[0]
        self.synchronous, self.max_sweeps = update == "sync", max_sweeps
        self.weight = nn.Parameter(torch.zeros(n, n), requires_grad=False)
        self.store(patterns)

    @torch.no_grad()
    def store(self, patterns: Tensor) -> None:
        """Replace the memory with `patterns` (M, N) by the Hebbian outer-product rule."""
        p = patterns.to(self.weight)
        if p.dim() != 2 or p.shape[1] != len(self.weight) or not bool((p.abs() == 1).all()):
            raise ConfigError(f"a Hopfield network of {len(self.weight)} neurons stores (M, "
                              f"{len(self.weight)}) patterns of ±1; got shape {tuple(p.shape)}")
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


def binary_patterns(n_neurons: int = 100, n_patterns: int = 10, noise: float = 0.1,
                    probes_per_pattern: int = 10, seed: int = 0) -> Data:
    """Random ±1 patterns to store, and noisy copies of them to recall from.

    Each probe is a stored pattern with exactly `round(noise * n_neurons)` bits flipped, at
    random; validation and test draw their probes independently. Batches are
    `(probe, stored pattern)`. There is nothing to train by gradient: the training split is
    empty, and `dims["patterns"]` hands the patterns to the model, which stores them.

    Args:
        n_neurons: N, the length of a pattern.
        n_patterns: M, the patterns to store; the capacity is about N / (2 ln N).
        noise: the share of bits each probe flips, in [0, 1].
        probes_per_pattern: probes drawn from each pattern, per split.
        seed: draws the patterns and the probes.
    """
    if n_neurons < 2 or n_patterns < 1 or probes_per_pattern < 1:
        raise DataError(f"data.n_neurons={n_neurons}, data.n_patterns={n_patterns} and "
                        f"data.probes_per_pattern={probes_per_pattern} must be >= 2, 1, 1")
    if not 0 <= noise <= 1:
        raise DataError(f"data.noise={noise} must be a share of bits in [0, 1]")
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (n_patterns, n_neurons), generator=g).float() * 2 - 1
    n_flips = round(noise * n_neurons)

    def probes() -> FullBatch:
        stored = patterns.repeat_interleave(probes_per_pattern, dim=0)  # (M * k, N)
        flips = torch.rand(stored.shape, generator=g).argsort(dim=1)[:, :n_flips]
        return FullBatch(stored.scatter(1, flips, -stored.gather(1, flips)), stored)

    return Data(train=TensorBatches(patterns[:0], patterns[:0], batch_size=1),  # no steps
                val=probes(), test=probes(),
                dims={"in_shape": (n_neurons,), "patterns": patterns})


class AssociativeRecall(Task):
    """Recall of stored patterns from noisy probes; batches are `(probe, stored pattern)`.

    Metrics: `loss`, the share of wrong bits after recall; `overlap`, the mean of
    m = ξ·s / N (1 = recalled, 0 = unrelated); `recall`, the share of probes recalled exactly;
    `probe_overlap`, the probes' own overlap, before recall.
    """

    metric_names = ("loss", "overlap", "recall", "probe_overlap")

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise ConfigError("task=associative_recall has no gradient training (a Hopfield network "
                          "stores its patterns when it is built); use it with "
                          "data=binary_patterns, whose training split is empty")

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        probe, stored = batch
        recalled = model(probe)
        n = stored.shape[1]
        return {"n": len(stored),
                "overlap": (recalled * stored).sum(1).double().div(n).sum(),
                "exact": (recalled == stored).all(1).sum(),
                "probe_overlap": (probe * stored).sum(1).double().div(n).sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n = float(stats["n"])
        overlap = float(stats["overlap"]) / n
        return {"loss": (1 - overlap) / 2, "overlap": overlap,  # m = 1 - 2 * (share wrong)
                "recall": float(stats["exact"]) / n,
                "probe_overlap": float(stats["probe_overlap"]) / n}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches, columns: int = 8) -> dict:
        """Stored, probe and recalled states for one probe of each of the first patterns."""
        plt = pyplot()
        probe, stored = next(iter(batches.epoch()))
        first = torch.ones(len(stored), dtype=torch.bool, device=stored.device)
        first[1:] = (stored[1:] != stored[:-1]).any(1)  # where a new pattern's probes begin
        probe, stored = probe[first][:columns], stored[first][:columns]
        rows = {"stored": stored, "probe": probe, "recalled": model(probe)}
        n = stored.shape[1]
        side = math.isqrt(n)
        shape = (side, side) if side * side == n else (1, n)
        fig, axes = plt.subplots(3, len(stored), figsize=(1.3 * len(stored), 4.2), squeeze=False)
        for r, (name, states) in enumerate(rows.items()):
            for c, state in enumerate(states.float().cpu()):
                ax = axes[r][c]
                ax.imshow(state.reshape(shape).numpy(), cmap="gray", vmin=-1, vmax=1,
                          aspect="auto" if shape[0] == 1 else "equal")
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(name)
        fig.tight_layout()
        return {"val/recall": fig}
