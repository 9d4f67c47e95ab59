"""Learning-rate schedules: torch schedulers plus when to step them (`Schedule`).

Each builder takes the optimizer and the run's length at the call site
(`instantiate(cfg.schedule, optimizer=..., total_steps=...)`) and its own hyperparameters from
YAML.
"""

from __future__ import annotations

from torch.optim import Optimizer, lr_scheduler

from nnrun.optim import Schedule


def constant(optimizer: Optimizer, total_steps: int) -> Schedule:
    """Keep optimizer.lr throughout."""
    return Schedule(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")


def step(optimizer: Optimizer, total_steps: int, step_size: int = 10,
         gamma: float = 0.1) -> Schedule:
    """Multiply the rate by `gamma` every `step_size` epochs."""
    return Schedule(lr_scheduler.StepLR(optimizer, step_size, gamma), "epoch")


def exponential(optimizer: Optimizer, total_steps: int,
                gamma: float = 0.95) -> Schedule:
    """Multiply the rate by `gamma` after every epoch."""
    return Schedule(lr_scheduler.ExponentialLR(optimizer, gamma), "epoch")


def cosine(optimizer: Optimizer, total_steps: int,
           eta_min: float = 0.0) -> Schedule:
    """Cosine annealing from optimizer.lr to `eta_min` over the run's optimizer steps."""
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, max(total_steps, 1), eta_min)
    return Schedule(scheduler, "step", spans_run=True)


def plateau(optimizer: Optimizer, total_steps: int, monitor: str = "val/loss",
            mode: str = "min", factor: float = 0.1, patience: int = 5) -> Schedule:
    """Multiply the rate by `factor` when `monitor` stops improving for `patience` evaluations."""
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor,
                                               patience=patience)
    return Schedule(scheduler, "eval", monitor)


def onecycle(optimizer: Optimizer, total_steps: int, max_lr: float = 0.01,
             pct_start: float = 0.3) -> Schedule:
    """The one-cycle policy (warm up to `max_lr`, then anneal) over the run's optimizer steps."""
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1),
                                        pct_start=pct_start)
    return Schedule(scheduler, "step", spans_run=True)


def _decay_steps(epochs: int) -> int:
    return max(epochs - 1, 1)


def linear_decay(optimizer: Optimizer, total_steps: int, epochs: int,
                 final_lr: float) -> Schedule:
    """From optimizer.lr down to `final_lr` in equal steps after each epoch, reaching it in the
    last of `epochs` epochs: lr_e = lr - e (lr - final_lr) / (epochs - 1) for the 0-based
    epoch e (Deep Learning from Scratch, L3879-3903). `epochs` is the planned run, whether
    or not early stopping ends it sooner."""
    steps = _decay_steps(epochs)

    def factor(e: int, lr: float) -> float:
        return 1 - min(e, steps) / steps * (1 - final_lr / lr)

    lambdas = [lambda e, lr=group["lr"]: factor(e, lr) for group in optimizer.param_groups]
    return Schedule(lr_scheduler.LambdaLR(optimizer, lambdas), "epoch")


def exponential_decay(optimizer: Optimizer, total_steps: int, epochs: int,
                      final_lr: float) -> Schedule:
    """From optimizer.lr down to `final_lr` by a constant factor after each epoch, reaching it in
    the last of `epochs` epochs: lr_e = lr (final_lr / lr)^(e / (epochs - 1)) (Deep Learning
    from Scratch, L3934-3965, with the book's formula corrected as its code has it, G23)."""
    steps = _decay_steps(epochs)

    def factor(e: int, lr: float) -> float:
        return (final_lr / lr) ** (min(e, steps) / steps)

    lambdas = [lambda e, lr=group["lr"]: factor(e, lr) for group in optimizer.param_groups]
    return Schedule(lr_scheduler.LambdaLR(optimizer, lambdas), "epoch")
