"""TensorBoard logging behind a small interface: log, log_dict, log_view (figures, text, images,
embeddings), log_hparams, close."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import scalar

from nnrun.tasks import Embedding


class TensorBoardLogger:
    """Scalars under namespaced tags (`train/loss`, `val/acc`, `lr`) in `log_dir`.

    Scalars are held back and handed to TensorBoard's writer in bursts, at most `every_s`
    seconds apart, one event per step: a record at a time between training steps costs far
    more (the writer thread wakes and reopens the event file for each record), which showed in
    the trainer benchmark.

    Args:
        log_dir: the run's `tb/` folder.
        purge_step: on resume, the step after the checkpoint's; events a killed run wrote at
            or after it are dropped, so curves do not double back (those at the checkpoint's
            own step were logged before it was saved, and stay).
        every_s: the longest a scalar waits before it is written.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None, every_s: float = 2.0) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.every_s = every_s
        self._pending: list[tuple[str, float, int, float]] = []
        self._written_at = time.time()

    def log(self, name: str, value: float, step: int) -> None:
        now = time.time()
        self._pending.append((name, value, step, now))
        if now - self._written_at > self.every_s:
            self.flush()

    def log_dict(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.log(name, value, step)

    def flush(self) -> None:
        """Hand the held-back scalars to the writer: one event per step, holding every scalar
        logged at that step, stamped with the time the last of them was logged."""
        by_step: dict[int, list[tuple[str, float, float]]] = {}
        for name, value, step, walltime in self._pending:
            by_step.setdefault(step, []).append((name, value, walltime))
        for step, items in by_step.items():
            values = [v for name, value, _ in items for v in scalar(name, value).value]
            self.writer.file_writer.add_summary(Summary(value=values), step, items[-1][2])
        self._pending.clear()
        self._written_at = time.time()

    def log_view(self, name: str, view: Any, step: int) -> None:
        """One of a task's views (`Task.views`) under `name`: a float is a scalar, a str
        Markdown text (TEXT tab), a tensor a (C, H, W) image in [0, 1] (IMAGES tab), an
        `Embedding` points for the PROJECTOR tab, anything else a matplotlib figure."""
        if isinstance(view, float):
            self.log(name, view, step)
            return
        self.flush()
        if isinstance(view, str):
            self.writer.add_text(name, view, step)
        elif isinstance(view, Tensor):
            self.writer.add_image(name, view, step)
        elif isinstance(view, Embedding):
            self.writer.add_embedding(view.vectors, metadata=view.labels, label_img=view.images,
                                      global_step=step, tag=name.replace("/", "_"))
        else:
            self.writer.add_figure(name, view, step, close=True)

    def log_hparams(self, params: dict[str, Any], status: str = "completed") -> None:
        """One HPARAMS entry for this run: its hyperparameters, and how it ended (`status` of
        its result: completed, failed, or interrupted, which TensorBoard knows as unknown).

        Written into this run's own event file, so the HPARAMS tab lists one row per run and
        reads its final metrics from the scalars logged under their tags. No experiment summary
        (the list of columns) is written: TensorBoard would take the first run's as every run's,
        hiding the keys of runs with other overrides; without one it gathers the columns, and
        each one's type, from every run's values.

        A bool, float or str is written as it is, anything else as text (None, a list, an int).
        """
        self.flush()
        start = plugin_data_pb2.SessionStartInfo()
        for name, value in params.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, float):
                start.hparams[name].number_value = value
            else:  # an int too: the HPARAMS tab prints every number with toPrecision(5)
                # (8 as "8.0000") and has no integer type; as text it reads "8"
                start.hparams[name].string_value = str(value)
        ended = {"completed": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE}
        end = plugin_data_pb2.SessionEndInfo(status=ended.get(status, api_pb2.STATUS_UNKNOWN))
        for tag, data in ((metadata.SESSION_START_INFO_TAG, {"session_start_info": start}),
                          (metadata.SESSION_END_INFO_TAG, {"session_end_info": end})):
            info = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**data))
            self.writer.file_writer.add_summary(
                Summary(value=[Summary.Value(tag=tag, metadata=info)]))
        self.writer.flush()

    def close(self) -> None:
        self.flush()
        self.writer.close()


class NoLogger:
    """What ranks other than 0 of a data-parallel run log to: nothing. Rank 0 writes the
    run's events; the others' metrics are the same numbers (`nnrun.parallel`)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
