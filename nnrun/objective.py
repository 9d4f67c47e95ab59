"""The metrics a run is judged by: `trainer.monitor` (best.pt, early stopping, the plateau
schedule) and `objective` (what a search optimises). Both must be metrics the run's task
reports, and both are checked before anything is written: by `nnrun.run` for a run, and by the
Optuna sweeper for a whole search, before its first trial.

No torch here at import: the sweeper plugin module is imported by Hydra for every command.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from nnrun.errors import ConfigError


def result_keys(task_class: type, monitor: str) -> list[str]:
    """Every metric key a run of this task returns that a search may optimise: the best value
    of the monitored metric, each of the task's metrics on the validation and test splits, and
    the training loss. (`test/` keys exist only where the data has a test split; a trial
    without its objective fails.)"""
    names = task_class.metric_names  # a class attribute: no need to build the task
    return [f"best/{monitor}", *(f"val/{m}" for m in names), *(f"test/{m}" for m in names),
            "train/loss"]


def check_objective(cfg: DictConfig, task_class: type) -> tuple[str, str]:
    """Check `trainer.monitor` and `objective` against the metrics of `task_class`, the class of
    `cfg.task`; return the objective's result key (`best/<trainer.monitor>` when `objective`
    is null) and Optuna's direction for it (from `trainer.mode`).

    Raises:
        ConfigError: naming the key and the metrics it may be.
    """
    monitor = cfg.trainer.monitor
    monitors = [f"val/{m}" for m in task_class.metric_names]
    if monitor not in monitors:
        raise ConfigError(f"trainer.monitor={monitor} is not a metric of this task; "
                          f"use one of {', '.join(monitors)}")
    mode = cfg.trainer.mode
    if mode not in ("min", "max"):  # TrainerConfig refuses it too, but a search needs it first
        raise ConfigError(f"trainer.mode={mode!r} must be min or max")
    objective: Any = cfg.get("objective")
    keys = result_keys(task_class, monitor)
    if objective is not None and objective not in keys:
        raise ConfigError(f"objective={objective} is not a metric of this task; use one of "
                          f"{', '.join(keys)} (or null for best/{monitor})")
    return objective or keys[0], "minimize" if mode == "min" else "maximize"
