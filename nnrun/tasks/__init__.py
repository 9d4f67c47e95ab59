"""Task options (`task=...`): a task turns a batch into a loss (training) and into summable
statistics (evaluation). The trainer never looks inside a batch: the data option picks its task
in YAML (`conf/task/`), and the task knows how to call the model on that data's batches.

This module holds the interface (`Task`, and `Embedding` for the projector: `__all__`, what the
runner may use) and the few helpers every task may use (`check_reduction`, `with_gradient_of`,
`pyplot`); the tasks are the modules of this package (`regression`, `classification`,
`translation`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data
from nnrun.errors import ConfigError

__all__ = ["Embedding", "Task"]


class Task:
    """The interface: `loss` for a training step, `eval_stats` + `metrics` for evaluation."""

    metric_names: tuple[str, ...] = ("loss",)
    views_every: int | None = None  # steps between `views` during training; None: at the end

    def setup(self, data: Data) -> None:
        """Called once with the built data, before anything is written: check the task's
        settings against it (a ConfigError names the key) and keep what the task needs of it,
        such as its `vocabularies`. Nothing by default."""

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        """Statistics of one batch that add up over batches: sums (tensors on the device, so
        evaluation syncs once at the end) and counts (ints)."""
        raise NotImplementedError

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        """Metrics from the summed statistics of a whole split."""
        raise NotImplementedError

    def views(self, model: nn.Module, batches: Batches) -> dict[str, Any]:
        """What is worth a look in TensorBoard besides the metrics, by tag; none by default.

        Each value is a matplotlib figure, Markdown text (a str), an image (a (C, H, W) tensor,
        pixels in [0, 1]), an `Embedding`, or a scalar (a float, which also goes into the final
        metrics)."""
        return {}

    def generate(self, model: nn.Module, prompts: list[str],
                 vocabularies: dict[str, Sequence[str]], **options: Any) -> list[str]:
        """What a trained model makes of each prompt, as text (`nnrun-eval --generate`): a
        character model continues a prime, a translator translates a sentence. `vocabularies`
        are the run's own (from its checkpoint), so nothing is read from the corpus; `options`
        are the command's (`length`, `temperature`, `seed`). By default a task makes nothing."""
        raise ConfigError(f"--generate: task {type(self).__name__} makes no text from a prompt; "
                          "it works with character models (task=next_char) and translators "
                          "(task=translation)")


@dataclass
class Embedding:
    """Points for TensorBoard's embedding projector (PROJECTOR tab: PCA, t-SNE and UMAP).

    Args:
        vectors: (N, D), one point per row.
        labels: N labels to colour and search by, or None.
        images: (N, C, H, W) thumbnails with pixels in [0, 1], or None.
    """

    vectors: Tensor
    labels: list | None = None
    images: Tensor | None = None


REDUCTIONS = ("mean", "sum")


def check_reduction(reduction: str) -> str:
    """`task.reduction`, the training loss over a batch: `mean` or `sum`."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"task.reduction={reduction!r} must be mean or sum")
    return reduction


def with_gradient_of(value: Tensor, stepped: Tensor) -> Tensor:
    """`value` exactly (adding 0.0 rounds nothing) with the gradient of `stepped`: a loss whose
    reported number and whose gradient come from two formulas, as some documents' do."""
    return value.detach() + (stepped - stepped.detach())


def pyplot():  # -> the matplotlib.pyplot module, imported only when a figure is drawn
    """matplotlib's pyplot on the Agg backend: figures for TensorBoard, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
