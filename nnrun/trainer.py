"""The one training loop: every model, dataset and experiment runs through `Trainer.fit`.

What differs between kinds of task (images, windows, a graph with masks) lives in the task
object; what differs between runs lives in `TrainerConfig`. The loop itself stays inline.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnrun import checkpoint
from nnrun.console import EpochLines
from nnrun.data import Batches, Data
from nnrun.errors import ConfigError
from nnrun.logger import TensorBoardLogger
from nnrun.optim import Schedule
from nnrun.parallel import ALONE, Solo
from nnrun.tasks import Task


@dataclass
class TrainerConfig:
    """How long to train, when to evaluate and log, what to monitor. Defaults live in
    `conf/trainer/default.yaml`; the fields are documented there."""

    epochs: int = 20
    max_steps: int | None = None
    eval_every: int = 1
    eval_every_steps: int | None = None
    save_every: int = 1
    log_every: int = 50
    monitor: str = "val/loss"
    mode: str = "min"
    patience: int | None = None
    min_delta: float = 0.0
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    deterministic: bool = False
    bf16: bool = False
    compile: bool = False
    resume: str | None = None
    init_from: str | None = None
    progress: bool = True
    collective_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        positive = {"eval_every": self.eval_every, "save_every": self.save_every,
                    "log_every": self.log_every,
                    "max_steps": self.max_steps, "eval_every_steps": self.eval_every_steps,
                    "patience": self.patience,
                    "collective_timeout_s": self.collective_timeout_s}
        for key, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"trainer.{key}={value} must be positive (or null where allowed)")
        if self.epochs < 0:
            raise ConfigError(f"trainer.epochs={self.epochs} must be >= 0; pass e.g. "
                              "trainer.epochs=10")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"trainer.mode={self.mode!r} must be min or max")
        for key in ("clip_grad_norm", "clip_grad_value"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ConfigError(f"trainer.{key}={value} must be > 0 (or null for no "
                                  f"clipping), e.g. trainer.{key}=1.0")
        if self.min_delta < 0:
            raise ConfigError(f"trainer.min_delta={self.min_delta} must be >= 0")


def total_steps(cfg: TrainerConfig, model: nn.Module, batches_per_epoch: int) -> int:
    """Optimizer steps the run will take: all epochs, or `max_steps` if that comes first; none
    for a model with nothing to train (a model fitted in closed form), which is only
    evaluated."""
    if not any(p.requires_grad for p in model.parameters()):
        return 0
    steps = cfg.epochs * batches_per_epoch
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def sums_over_batch(task: Task) -> bool:
    """Whether the task's training gradient is that of a sum over the batch (`task.reduction=
    sum`, or regression's `task.grad_reduction=sum`) rather than of a mean."""
    return getattr(task, "grad_reduction", getattr(task, "reduction", "mean")) == "sum"


class NonFinite(Exception):
    """`what` (the training loss, a metric, the weights) became NaN or infinite at `step`."""

    def __init__(self, what: str, step: int) -> None:
        super().__init__(f"{what} became NaN or infinite at step {step}")
        self.step = step


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` when `bf16` (trainer.bf16), else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def evaluate_split(model: nn.Module, task: Task, batches: Batches, bf16: bool = False,
                   module: nn.Module | None = None, group: Solo = ALONE) -> dict[str, float]:
    """The task's metrics of `model` over one split, in order, with the model in eval mode
    (`module`: the module to switch, when `model` is a compiled wrapper of it) and, with
    `bf16`, under bfloat16 autocast as in training. The model is left in eval mode.

    In a data-parallel run (`group`) each rank evaluates its share of the batches and the
    task's summed statistics are added up over the ranks: every rank gets the whole split's
    metrics."""
    (module or model).eval()
    device = next((module or model).parameters()).device
    totals: dict[str, torch.Tensor | int] = {}
    with autocast(device, bf16), torch.no_grad():
        for batch in group.deal(batches.epoch()):
            for key, value in task.eval_stats(model, batch).items():
                totals[key] = totals[key] + value if key in totals else value
    return task.metrics(group.sum_stats(totals))


class Trainer:
    """Fits `model` on `data` for `task`, evaluating, logging and checkpointing as `cfg` says.

    Args:
        cfg: loop settings.
        model, task, data, optimizer, schedule: the built components, data on `device`.
        run_dir: the run directory; checkpoints go to `run_dir/checkpoints/`.
        seed: seeds the generator that draws the data order.
        config: the resolved run config (plain dict), stored in checkpoints.
        group: this process's place in a data-parallel run (`nnrun.parallel`), whose
            training split `data.train` is this rank's `Shard`; `Solo` for one process.
    """

    def __init__(self, cfg: TrainerConfig, model: nn.Module, task: Task, data: Data,
                 optimizer: torch.optim.Optimizer, schedule: Schedule, run_dir: Path,
                 device: torch.device, seed: int, config: dict[str, Any],
                 group: Solo = ALONE) -> None:
        self.cfg, self.model, self.task, self.data = cfg, model, task, data
        self.optimizer, self.schedule, self.device = optimizer, schedule, device
        self.group = group
        self.total_steps = total_steps(cfg, model, len(data.train))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ckpt_dir, self.config = run_dir / "checkpoints", config
        self.forward_model = torch.compile(model) if cfg.compile else model
        self.train_model = self.forward_model  # in DistributedDataParallel from `fit` on
        # Data-parallel: DistributedDataParallel averages the ranks' gradients. A summed loss
        # is scaled by the number of ranks, so that the average is the global batch's sum; a
        # mean is scaled on an uneven last batch only, by this rank's share of it
        # (`parallel.Shard.last_weight`), so that the average is the batch's mean.
        summed = group.size > 1 and sums_over_batch(task)
        self._scale_every = float(group.size) if summed else 1.0
        self._scale_last = 1.0 if summed else getattr(data.train, "last_weight", 1.0)
        self.data_rng = torch.Generator().manual_seed(seed)
        self.epoch = self.step = self.batch_in_epoch = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.stopped_early = False  # early stopping ended the run
        self.stop_signal: int | None = None  # set by a signal handler: stop at the next step
        self._stop_agreed = False  # data-parallel: some rank had a signal, as of the last flush
        self.lost_rank = False  # data-parallel: another rank went away (the error says which)
        self.metrics: dict[str, float] = {}
        self._eval_step = self._saved_step = self._marked_step = -1
        self._written: tuple[int, Path] | None = None  # the step and file of the last save
        self._epoch_order = self.data_rng.get_state()  # data-order state this epoch started from
        # Recent training losses, until they are logged. On the CPU each is read as it comes
        # (that waits for nothing: the CPU has computed it already), so a non-finite loss stops
        # the run before its update; on an accelerator they stay on the device until the flush,
        # one host sync per `log_every` steps. The buffer never needs more than an epoch: every
        # epoch end flushes it. Data-parallel ranks all keep the buffer, averaged over the
        # ranks at the flush, where they also agree whether to stop (on a signal or a
        # non-finite loss): a rank deciding alone, mid-buffer, would leave the others waiting.
        self._read_each_loss = device.type == "cpu" and group.size == 1
        self._flush_every = max(1, min(cfg.log_every, len(data.train)))
        self._losses = None if self._read_each_loss else torch.zeros(self._flush_every,
                                                                     device=device)
        self._host_losses: list[float] = []
        self._n_losses = 0

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self, logger: TensorBoardLogger, progress: EpochLines) -> dict[str, Any]:
        """Train until `epochs`, `max_steps` or early stopping; returns status and final metrics.

        The logger comes in here rather than at construction, so that `run` creates it (and
        writes into the run directory) only after a resume checkpoint has passed its checks.
        """
        self.logger, self.progress = logger, progress
        start, error, ended = time.perf_counter(), None, {}
        try:
            wrapped = self.group.wrap(self.model, self.device)
            if wrapped is not self.model:
                self.train_model = torch.compile(wrapped) if self.cfg.compile else wrapped
            while self.epoch < self.cfg.epochs and self.step < self.total_steps:
                if self._train_epoch():
                    break
            if not self.stopping and self._eval_step != self.step:
                self._validate()  # the run did not end on an evaluation
            if self._saved_step != self.step:
                self._save("last.pt")
            if not self.stopping:  # an interrupted run stops at once
                ended = {**self._test(), **self._log_views()}
        except NonFinite as err:
            kept = (f"kept the last good checkpoint, {self.ckpt_dir / 'last.pt'} (step "
                    f"{self._saved_step})" if (self.ckpt_dir / "last.pt").exists()
                    else "no checkpoint was written")
            error = f"{err}; {kept}"
        except RuntimeError as err:  # a collective failed: a rank went away
            if self.group.size == 1:
                raise
            self.lost_rank, error = True, self.group.lost(err)
        status = ("failed" if error else "interrupted" if self.stopping
                  else "stopped_early" if self.stopped_early else "completed")
        result: dict[str, Any] = {"status": status, "epochs": self.epoch, "steps": self.step}
        if error:
            result["error"] = error
        else:
            result.update(self.metrics)
            result.update(ended)
        result["wall_s"] = time.perf_counter() - start
        return result

    @property
    def stopping(self) -> bool:
        """A signal asked the run to stop: this process's, or in a data-parallel run any
        rank's, as agreed at the last flush of the loss buffer."""
        return self._stop_agreed if self.group.size > 1 else self.stop_signal is not None

    def _train_epoch(self) -> bool:
        """One epoch (or what is left of it after a resume, or before `max_steps`); True if the
        run ends here: early stopping (`stopped_early`) or `max_steps` within the epoch."""
        cfg = self.cfg
        epoch_start = time.perf_counter()
        self.model.train()
        if self.batch_in_epoch == 0:
            self._epoch_order = self.data_rng.get_state()
        for batch in self.data.train.epoch(self.data_rng, skip=self.batch_in_epoch):
            with self._autocast():
                loss = self.task.loss(self.train_model, batch)
            if self._scale_every != 1.0:
                loss = loss * self._scale_every
            elif self._scale_last != 1.0 and self.batch_in_epoch == len(self.data.train) - 1:
                loss = loss * self._scale_last
            if self._read_each_loss:
                value = loss.item()
                if not math.isfinite(value):  # before its gradient reaches the weights
                    self._flush_losses()
                    raise NonFinite("the training loss", self.step + 1)
                self._host_losses.append(value)
            else:
                self._losses[self._n_losses] = loss.detach()  # no host sync here
            self._n_losses += 1
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.params, cfg.clip_grad_norm)
            if cfg.clip_grad_value is not None:
                nn.utils.clip_grad_value_(self.params, cfg.clip_grad_value)
            self.optimizer.step()
            self.schedule.after_step()
            self.step += 1
            self.batch_in_epoch += 1
            if self._n_losses == self._flush_every:
                self._flush_losses()
            if self.task.views_every and self.step % self.task.views_every == 0 and \
                    self.group.main:
                self._log_views()  # e.g. generated text, while it trains
            if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0:
                self.stopped_early = self._validate()
                if self.stopped_early:
                    self._flush_losses()
                    return True
            if self.step >= self.total_steps:
                break
            if self.stopping:  # a signal: save here, mid-epoch, and stop
                self._flush_losses()
                self._save("last.pt")
                return True
        self._flush_losses()
        if self.batch_in_epoch < len(self.data.train):  # max_steps ended it mid-epoch
            return True
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.logger.log("time/epoch_s", time.perf_counter() - epoch_start, self.step)
        self.schedule.after_epoch()
        last = self.epoch == cfg.epochs or self.step >= self.total_steps
        due = (self.epoch % cfg.eval_every == 0 or last) and self._eval_step != self.step
        self.stopped_early = self.stopped_early or (due and self._validate())
        if self.epoch % cfg.save_every == 0:
            self._save("last.pt")
        self._mark()
        return self.stopped_early

    def _test(self) -> dict[str, float]:
        """The task's metrics on the test split, if the data has one, logged as `test/...`."""
        if self.data.test is None:
            return {}
        if self.data.test is self.data.val:  # just evaluated, at this step
            test = {f"test/{k[4:]}": v for k, v in self.metrics.items() if k.startswith("val/")}
        else:
            test = {f"test/{k}": v for k, v in self.evaluate(self.data.test).items()}
        self.logger.log_dict(test, self.step)
        return test

    def _log_views(self) -> dict[str, float]:
        """The task's views (figures, texts, images, scalars) of the validation split, at this step;
        returns the scalars. Rank 0's alone in a data-parallel run."""
        if not self.group.main:
            return {}
        views = self.task.views(self.model, self.data.val)
        for tag, view in views.items():
            self.logger.log_view(tag, view, self.step)
        self.model.train()
        return {tag: view for tag, view in views.items() if isinstance(view, float)}

    def _flush_losses(self) -> None:
        """Sync the buffered losses once: log their mean, or stop on the first non-finite one."""
        if self._n_losses == 0:
            return
        if self._read_each_loss:
            losses, self._host_losses = self._host_losses, []
        elif self.group.size > 1:
            mean, self._stop_agreed = self.group.mean_losses(self._losses[:self._n_losses],
                                                             self.stop_signal is not None)
            losses = mean.tolist()
        else:
            losses = self._losses[:self._n_losses].tolist()  # the one sync
        for i, value in enumerate(losses):
            if not math.isfinite(value):
                raise NonFinite("the training loss", self.step - self._n_losses + i + 1)
        self._n_losses = 0
        if not losses:
            return
        mean = sum(losses) / len(losses)
        self.metrics["train/loss"] = mean
        self.logger.log("train/loss", mean, self.step)
        self.logger.log("lr", self.optimizer.param_groups[0]["lr"], self.step)
        self.progress.update(self.step, self.epoch, mean)

    @torch.no_grad()
    def evaluate(self, batches: Batches) -> dict[str, float]:
        """The task's metrics over one split, in order."""
        metrics = evaluate_split(self.forward_model, self.task, batches, self.cfg.bf16,
                                 self.model, self.group)
        self.model.train()
        return metrics

    def _validate(self) -> bool:
        """Evaluate on the validation split, track the best, save best.pt; True = stop early."""
        self._flush_losses()  # a non-finite loss stops here, before a broken model is saved
        metrics = {f"val/{k}": v for k, v in self.evaluate(self.data.val).items()}
        self.logger.log_dict(metrics, self.step)
        self.metrics.update(metrics)
        self._eval_step = self.step
        value = metrics[self.cfg.monitor]
        if not math.isfinite(value):
            raise NonFinite(self.cfg.monitor, self.step)
        self.schedule.after_eval(metrics)
        sign = 1 if self.cfg.mode == "min" else -1
        if self.best is None or sign * (self.best - value) > self.cfg.min_delta:
            self.best, self.bad_evals = value, 0
            self._save("best.pt")
        else:
            self.bad_evals += 1
        self._mark()
        return self.cfg.patience is not None and self.bad_evals >= self.cfg.patience

    def _mark(self) -> None:
        """Where the run stands, for the plain progress lines: at each epoch end and each
        evaluation, once a step (an epoch that ends on an evaluation gives one line). The
        training loss is the last one logged; the monitored metric shows where it was just
        measured; the learning rate is read off the optimizer, as the logger reads it."""
        if self._marked_step == self.step:
            return
        self._marked_step = self.step
        values = {"train/loss": self.metrics.get("train/loss")}
        if self._eval_step == self.step:
            values[self.cfg.monitor] = self.metrics.get(self.cfg.monitor)
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        epoch = self.epoch + 1 if self.batch_in_epoch else self.epoch  # the one under way
        self.progress.mark(epoch, self.step, {k: v for k, v in values.items() if v is not None})

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.cfg.bf16)

    # ---- checkpoints ------------------------------------------------------------------------

    def _save(self, name: str) -> None:
        if name == "last.pt":
            self._saved_step = self.step
        path = self.ckpt_dir / name
        # best.pt and last.pt at one step hold the same state (nothing changes between the
        # two saves), so the second is a link to the first rather than a second write.
        if self._written is not None and self._written[0] == self.step:
            if self.group.main:
                checkpoint.duplicate(self._written[1], path)
            return
        order = self._epoch_order if self.batch_in_epoch else self.data_rng.get_state()
        rngs = self.group.gather(checkpoint.rng_state(order)) or [None]  # all ranks', on rank 0
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
            "best": self.best, "bad_evals": self.bad_evals, "metrics": dict(self.metrics),
            "rng": rngs[0], "rng_ranks": rngs[1:], "processes": self.group.size,
            "config": self.config,
            "sizes": asdict(self.data.sizes),
            "vocabularies": {k: list(v) for k, v in self.data.vocabularies.items()},
        }
        broken = checkpoint.non_finite(state)
        if broken:  # never write a checkpoint that cannot be trained on from
            raise NonFinite(f"the weights ({', '.join(broken[:3])})", self.step)
        if self.group.main:  # the weights are the same on every rank: rank 0 writes them
            checkpoint.save(state, path)
        self._written = (self.step, path)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` (from `checkpoint.load`) left off."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.batch_in_epoch, self.best = state["batch_in_epoch"], state["best"]
        self.bad_evals = state["bad_evals"]
        self.metrics = dict(state["metrics"])
        self._saved_step = self._eval_step = self.step
        rng = state["rng_ranks"][self.group.rank - 1] if self.group.rank else state["rng"]
        checkpoint.set_rng_state(rng, self.data_rng)
        self._epoch_order = self.data_rng.get_state()
