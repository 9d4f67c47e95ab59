"""Optimizer and schedule options (`optimizer=...`, `schedule=...`): torch.optim's optimizers
(named by `_target_` in YAML), the documents' hand-written ones (`optimizers`), and
learning-rate schedules (`schedules`). This module holds the interface the trainer steps:
`Schedule`.
"""

from __future__ import annotations

from typing import Any, Literal

from torch.optim import lr_scheduler

__all__ = ["Schedule"]


class Schedule:
    """A torch scheduler that steps after every optimizer step, every epoch, or every evaluation.

    Args:
        scheduler: the torch scheduler.
        interval: "step", "epoch", or "eval" (then it steps on the metric named `monitor`).
        monitor: the metric a plateau schedule watches, e.g. "val/loss".
        spans_run: its shape is fitted to the run's planned length in steps (cosine,
            one-cycle), so a resume may not change that length.
    """

    def __init__(self, scheduler: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau,
                 interval: Literal["step", "epoch", "eval"], monitor: str | None = None,
                 spans_run: bool = False) -> None:
        self.scheduler, self.interval, self.monitor = scheduler, interval, monitor
        self.spans_run = spans_run

    def after_step(self) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.interval == "epoch":
            self.scheduler.step()

    def after_eval(self, metrics: dict[str, float]) -> None:
        if self.interval == "eval":
            self.scheduler.step(metrics[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
