"""Associative recall (`model=hopfield data=binary_patterns`, the RNN lab manual's section 1):
how close the states a memory settles in from noisy probes are to the stored patterns."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.errors import ConfigError
from nnrun.tasks import Task, pyplot


class AssociativeRecall(Task):
    """Recall of stored patterns from noisy probes; batches are `(probe, stored pattern)`.

    Metrics: `loss`, the share of wrong bits after recall; `overlap`, the mean of
    m = ξ·s / N (1 = recalled, 0 = unrelated); `recall`, the share of probes recalled exactly;
    `probe_overlap`, the probes' own overlap, before recall.
    """

    metric_names = ("loss", "overlap", "recall", "probe_overlap")

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise ConfigError("task=associative_recall has no gradient training; use it with a "
                          "model fitted in closed form, such as model=hopfield, which stores "
                          "its patterns without an optimizer step")

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
