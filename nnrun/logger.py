"""TensorBoard logging behind a small interface: log, log_dict, log_figure, log_hparams, close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams


class TensorBoardLogger:
    """Scalars under namespaced tags (`train/loss`, `val/acc`, `lr`) in `log_dir`.

    Args:
        log_dir: the run's `tb/` folder.
        purge_step: on resume, the step after the checkpoint's; events a killed run wrote at
            or after it are dropped, so curves do not double back (those at the checkpoint's
            own step were logged before it was saved, and stay).
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, value, step)

    def log_dict(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        self.writer.add_figure(name, figure, step, close=True)

    def log_hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """One HPARAMS entry for this run: its hyperparameters and final metrics.

        Written into this run's own event file, so the HPARAMS tab lists one row per run and
        reads the metric values from the scalars logged under the same tags.
        """
        experiment, start, end = hparams(params, metrics)
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
