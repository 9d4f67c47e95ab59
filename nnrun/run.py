"""`run(cfg, run_dir)`: build every component from a composed config and train once.

Setup is a row of small helpers, one component each. Every check that can fail on bad input
runs here, before anything is written to the run directory.
"""

from __future__ import annotations

import errno
import inspect
import json
import math
import os
import random
import signal
import sys
import threading
import typing
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from nnrun import checkpoint, parallel
from nnrun.callbacks import what_it_is
from nnrun.console import device_name, live, print_config, print_summary, say, watcher
from nnrun.data import Sizes
from nnrun.errors import (
    CheckpointError,
    ConfigError,
    Interrupted,
    NnrunError,
    StorageFailed,
    SweepChanged,
    TrainingFailed,
)
from nnrun.launch import Launch
from nnrun.logger import NoLogger, TensorBoardLogger
from nnrun.models import ClosedForm
from nnrun.objective import check_objective
from nnrun.optim import Schedule
from nnrun.rundir import RunDir, provenance
from nnrun.trainer import Trainer, TrainerConfig, total_steps

GROUPS = ("model", "data", "task", "optimizer", "schedule", "device", "trainer")


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; `cuda` and `cpu` insist. A rank of a
    data-parallel run takes its local GPU (`cuda:LOCAL_RANK`) or the CPU."""
    group = parallel.current()
    if group.size > 1:
        return rank_device(name, group.launch)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device.name={name} is not a device; use auto, cpu, cuda or cuda:N, "
                          "mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            key = "device" if name == "cuda" else "device.name"
            raise ConfigError(f"{key}={name}: no CUDA device is available here; use device=cpu "
                              "or device=auto")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device.name={name}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}; choose one of them")
    return device


def rank_device(name: str, launch: Launch) -> torch.device:
    """The device of one rank of a data-parallel run: `cuda:LOCAL_RANK` (for `auto` where CUDA
    is present, and `cuda`), or the CPU; one GPU a process."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "cpu" or name == "auto" and count == 0:
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(f"device.name={name}: under torchrun each process takes the GPU of its "
                          "local rank; use device=cuda or device=auto (or device=cpu)")
    if count == 0:
        raise ConfigError("device=cuda: no CUDA device is available here; use device=cpu or "
                          "device=auto")
    local = launch.local_size or launch.local_rank + 1
    if local > count:
        raise ConfigError(f"device={name}: {local} processes on this machine but {count} CUDA "
                          f"device(s), one each; start at most {count} (torchrun "
                          f"--nproc_per_node={count}), or use device=cpu")
    device = torch.device("cuda", launch.local_rank)
    torch.cuda.set_device(device)
    return device


def _kinds(hint: Any) -> set[Any]:
    """The types an annotation allows, None aside: `int | None` -> {int}."""
    return set(typing.get_args(hint) or (hint,)) - {type(None)}


def _numeric(param: inspect.Parameter, hint: Any) -> bool:
    """A number is expected: by the parameter's default, or by its (resolved) annotation."""
    if isinstance(param.default, bool):
        return False
    return isinstance(param.default, int | float) or bool(_kinds(hint)) and _kinds(hint) <= {
        int, float}


def validate(cfg: DictConfig) -> None:
    """Check values against their constructors' signatures and the rules a run depends on
    (TrainerConfig checks its own values when it is built)."""
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed} must be a whole number from 0 to 2**32 - 1, e.g. seed=1")
    for group in GROUPS:
        check_group(cfg, group)
    for key, ok, fix in RULES:
        value = OmegaConf.select(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}={value} {fix}")


def check_group(cfg: DictConfig, group: str) -> None:
    """Check one group's values against its constructor's signature: part of `validate`, and
    on its own where only that group is built (`nnrun.load` rebuilds a run's model alone)."""
    node = cfg[group]
    target = import_target(f"{group}._target_", node._target_)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{group}._target_={node._target_!r} is not a class or function "
                          f"({err})") from None
    hints = _type_hints(target)
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if key not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            takes = f"use one of: {', '.join(params)}" if params else "it takes no arguments"
            raise ConfigError(f"{group}.{key} is not an argument of {node._target_}; "
                              f"remove it or {takes}")
        hint = hints.get(key)
        if key in params and _numeric(params[key], hint) and isinstance(value, str):
            raise ConfigError(f"{group}.{key}={value!r} is not a number; pass e.g. "
                              f"{group}.{key}={params[key].default}")
        if isinstance(value, float) and _kinds(hint) == {int}:
            example = params[key].default if key in params else 1
            raise ConfigError(f"{group}.{key}={value} must be a whole number, e.g. "
                              f"{group}.{key}={example}")


def import_target(key: str, target: str) -> Any:
    """The class or function a `_target_` names, imported. One that cannot be is a ConfigError
    that says why in one line. A module that is not found at all is named with the folders it
    was looked for in, so that a user's own `_target_: mynet.Net` that is not found says where
    mynet.py should be (the folder nnrun runs in, see `nnrun.cli.import_from_here`)."""
    from hydra._internal.utils import _locate  # what `instantiate` uses to find a target

    try:  # not hydra.utils.get_object, which logs the failure, leaving a nnrun.log behind
        return _locate(target)
    except Exception as err:
        cause = err.__cause__ or err  # Hydra wraps the import's own error in an ImportError
    top = target.split(".")[0]
    if isinstance(cause, ModuleNotFoundError) and cause.name == top:
        raise ConfigError(f"{key}={target!r} cannot be imported: there is no module {top!r} in "
                          f"{', '.join(user_folders()) or 'no folder of yours'} or the installed "
                          f"packages; put {top}.py in the folder you run nnrun from, or add its "
                          "folder to PYTHONPATH") from None
    detail = (str(cause).strip().splitlines() or [""])[0][:200]
    misspelt = isinstance(cause, AttributeError) or (  # a name missing along the path
        isinstance(cause, ModuleNotFoundError) and f"{target}.".startswith(f"{cause.name}."))
    fix = ("check the spelling of the class path" if misspelt else
           "its module fails as it is imported; fix it, or try `python -c 'import "
           f"{target.rsplit('.', 1)[0]}'`")
    raise ConfigError(f"{key}={target!r} cannot be imported ({type(cause).__name__}: "
                      f"{detail}); {fix}") from None


def user_folders() -> list[str]:
    """The folders on `sys.path` that may hold a user's own modules, in the order Python
    searches them: the current folder and PYTHONPATH's, not the interpreter's own (the standard
    library, site-packages), which no user puts a model in."""
    own = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                        sys.base_exec_prefix)}
    folders: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if path in folders or not os.path.isdir(path) or any(
                path == p or path.startswith(p + os.sep) for p in own):
            continue
        folders.append(path)
    return folders


# Values whose constructors would accept them and fail later, mid-run, or quietly train on
# nonsense (a negative floor for the learning rate).
RULES = [("optimizer.lr", lambda v: v > 0, "must be > 0, e.g. optimizer.lr=0.001"),
         ("data.batch_size", lambda v: v > 0, "must be > 0, e.g. data.batch_size=32"),
         ("data.window", lambda v: v > 0, "must be > 0, e.g. data.window=20"),
         ("data.period", lambda v: v > 0, "must be > 0 (points per cycle), e.g. data.period=50"),
         ("data.n_points", lambda v: v > 0, "must be > 0, e.g. data.n_points=1000"),
         ("schedule.step_size", lambda v: v > 0, "must be > 0 (epochs), e.g. "
          "schedule.step_size=10"),
         ("schedule.gamma", lambda v: v > 0, "must be > 0, e.g. schedule.gamma=0.1"),
         ("schedule.eta_min", lambda v: v >= 0, "must be >= 0 (the lowest rate), e.g. "
          "schedule.eta_min=0"),
         ("schedule.final_lr", lambda v: v > 0, "must be > 0, e.g. schedule.final_lr=0.001")]


def _type_hints(target: Any) -> dict[str, Any]:
    """The annotations of a constructor's parameters, resolved; {} where they cannot be."""
    for obj in ((target.__init__, target) if inspect.isclass(target) else (target,)):
        try:
            return typing.get_type_hints(obj)
        except Exception:  # an annotation naming something not importable at run time
            continue
    return {}


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, with a constructor's own NnrunError passed through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NnrunError):
            raise cause from None
        raise ConfigError(f"{node._target_}: {cause or err}") from cause


def size_arguments(node: DictConfig, sizes: Sizes) -> dict[str, Any]:
    """The data's sizes that the constructor `node._target_` takes by name and its config does
    not set. A size it needs (a parameter without a default) that the data does not give is a
    ConfigError naming both."""
    params = inspect.signature(get_object(node._target_)).parameters
    offered = {f.name: getattr(sizes, f.name) for f in fields(sizes)}
    arguments = {}
    for name, value in offered.items():
        if name not in params or name in node:
            continue
        if value is None:
            if params[name].default is inspect.Parameter.empty:
                given = ", ".join(k for k, v in offered.items() if v is not None)
                raise ConfigError(f"needs the data's {name}, which this data does not give "
                                  f"(it gives {given or 'no sizes'})")
            continue
        arguments[name] = value
    return arguments


def choice(cfg: DictConfig, group: str) -> str:
    """The option of `group` this run uses, as the user names it (`lstm`), or its class."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        name = choices.get(group) or choices.get(f"{group}@_global_.{group}")
        if name:
            return name
    return str(cfg[group]._target_).rsplit(".", 1)[-1]


def misfit(cfg: DictConfig, err: Exception) -> ConfigError:
    """A model that cannot read the chosen data, in words: what the model reads (its `reads`)
    and, in brackets, what failed."""
    reads = getattr(get_object(cfg.model._target_), "reads", None)
    what = f"it reads {reads}" if reads else "check that the model's inputs fit the data's"
    detail = (str(err).strip().splitlines() or [""])[0][:160]
    if not isinstance(err, NnrunError):
        detail = f"{type(err).__name__}: {detail}"
    return ConfigError(f"model={choice(cfg, 'model')} cannot train on data="
                       f"{choice(cfg, 'data')} with task={choice(cfg, 'task')}: {what} "
                       f"({detail})")


def probe(cfg: DictConfig, model: nn.Module, task: Any, data: Any, device: torch.device) -> None:
    """The loss of one training batch (one evaluation batch for a model with nothing to train),
    before anything is written, so that a model, data and task that do not fit together are
    refused in one line. Nothing is learned and no random state is consumed: the run that
    follows is the same as without it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    trainable = any(p.requires_grad for p in model.parameters())
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.no_grad():
            model.eval()
            if trainable:
                train = next(iter(data.train.epoch(torch.Generator().manual_seed(0))), None)
                if train is not None:
                    task.loss(model, train)
            else:  # evaluation may be slow (a translation's greedy decoding): only if needed
                val = next(iter(data.val.epoch()), None)
                if val is not None:
                    task.eval_stats(model, val)
    except NnrunError:
        raise
    except Exception as err:
        raise misfit(cfg, err) from None
    finally:
        model.train(was_training)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def assemble(cfg: DictConfig, task: Any, data: Any, device: torch.device) -> nn.Module:
    """The configured model for `data` on `device`, with the task set up for that data; a model,
    data and task that do not fit together are refused in one line (`probe`)."""
    task.setup(data)
    try:
        sizes = size_arguments(cfg.model, data.sizes)
    except ConfigError as err:
        raise misfit(cfg, err) from None
    try:
        model = build(cfg.model, **sizes).to(device)
    except ConfigError as err:
        if err.__cause__ is None:  # the model's own message, or a size the data lacks
            raise
        raise misfit(cfg, err.__cause__) from None
    probe(cfg, model, task, data, device)
    return model


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def checkpoint_path(given: str) -> Path:
    """A checkpoint named on the command line: a file, or a run directory for its last.pt."""
    path = Path(given).expanduser()
    last = path / "checkpoints" / "last.pt"
    return last if path.is_dir() and last.is_file() else path


def resume_path(resume: str | None, run_dir: Path) -> Path | None:
    """`auto` = this run directory's last.pt if there is one; a path must exist."""
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        return last if last.exists() else None
    return checkpoint_path(resume)


def hparams(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """What a run's HPARAMS entry shows: the keys its command line set (a sweep's varied ones
    among them), each with its resolved value, and `seed`. Every resolved key (each `_target_`,
    `data.root`, `trainer.progress` ...) would bury the few that tell a sweep's runs apart; the
    whole config is in the run's `.hydra/config.yaml`.

    A group's option (`model=gru`) shows as its name, as does a choice that sets no key of its
    own name (`experiment=dlfs/ch4_momentum`); a deleted key (`~key`) is left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    absent = object()
    params: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_delete():
            continue
        value = OmegaConf.select(cfg, override.key_or_group, default=absent)
        if value is absent or isinstance(value, DictConfig):
            value = override.get_value_element_as_str()
        elif isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        params[override.key_or_group] = value
    params.setdefault("seed", cfg.seed)
    return params


TARGET_KEYS = {"metric", "value", "tolerance", "source"}  # and optionally a `note`


def check_expected(targets: list[dict[str, Any]], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target a document reports against this run's final metric: `reproduced` within
    its tolerance, `outside tolerance`, or `missing` (no such metric, or not finite)."""
    checks = []
    for target in targets:
        measured = metrics.get(target["metric"])
        if not isinstance(measured, float) or not math.isfinite(measured):
            verdict = "missing"
        elif abs(measured - target["value"]) <= target["tolerance"]:
            verdict = "reproduced"
        else:
            verdict = "outside tolerance"
        checks.append({**target, "measured": measured, "verdict": verdict})
    return checks


def listed(keys: list[str], most: int = 6) -> str:
    """`a, b, c and 4 more`: the keys a refusal names, kept to one line."""
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def _resumed(config: dict[str, Any], path: Path | None, schedule: Schedule,
             processes: int) -> tuple[dict | None, dict]:
    """The checkpoint this run resumes (None for a new run), checked against this run's
    config and number of processes, and the keys the resume changes (key -> [old, new]). Any
    other change is refused: a resume is exact, or it does not start."""
    if path is None:
        return None, {}
    state = checkpoint.load(path)
    if state["processes"] != processes:
        def how(n: int) -> str:
            return f"{n} processes" if n > 1 else "one process"
        relaunch = (f"torchrun with {state['processes']} processes in all (e.g. "
                    f"--nproc_per_node={state['processes']})" if state["processes"] > 1
                    else "plain nnrun, without torchrun")
        raise CheckpointError(
            f"trainer.resume: {path} was trained by {how(state['processes'])} and this start "
            f"has {how(processes)}: each rank's random state and data share would not match; "
            f"resume it with {relaunch}, or start a new run from its weights with "
            f"trainer.init_from={path}")
    changed, refused = checkpoint.changed_keys(state["config"], config)
    if refused:
        raise CheckpointError(
            f"trainer.resume: {path} was trained with other values of {listed(refused)}; resume "
            "with the values it was trained with, or start a new run from its weights with "
            f"trainer.init_from={path}")
    length = [k for k in changed if k in ("trainer.epochs", "trainer.max_steps")]
    if length and schedule.spans_run:
        raise CheckpointError(
            f"trainer.resume: {path}: its schedule ({config['schedule']['_target_']}) spans the "
            f"run's planned length, which {' and '.join(length)} would change; resume with the "
            f"old value, or start a new run from its weights with trainer.init_from={path}")
    return state, changed


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the configured job in `run_dir`; return its status and final metrics.

    Raises:
        NnrunError: on bad input (before anything is written: a refused start leaves no trace
            in `run_dir`), a failed run (after metrics.json records it), or a signal
            (`Interrupted`, after the checkpoint and metrics.json record where it stopped).
    """
    group = parallel.current()
    if group.restarted and OmegaConf.select(cfg, "trainer.resume") is None:
        cfg.trainer.resume = "auto"  # torchrun restarted the run: it continues where it was
    resume = OmegaConf.select(cfg, "trainer.resume")
    # a directory that holds a run may only be continued: by `auto`, or from its own checkpoint
    resuming = resume == "auto" or (resume is not None and checkpoint_path(resume).resolve()
                                    .is_relative_to(Path(run_dir).resolve()))
    try:
        with ExitStack() as stack:
            held, refused = None, None
            if group.main:  # rank 0 holds the directory and writes in it; the others read
                try:
                    held = stack.enter_context(RunDir(Path(run_dir), resuming))
                except NnrunError as err:
                    refused = err
            return _run(cfg, Path(os.path.abspath(run_dir)), held, refused)
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        raise StorageFailed(f"{err.filename or run_dir}: {err.strerror}; make room (or choose "
                            "another hydra.run.dir), then continue with trainer.resume=auto "
                            "(the last checkpoint written is intact)") from None


# A write that fails for want of room or permission: the run stops with one line, not a traceback.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _run(cfg: DictConfig, run_dir: Path, held: RunDir | None,
         refused: NnrunError | None) -> dict[str, Any]:
    """The run in `run_dir`, held by this process (`held`; None on ranks other than 0) or
    `refused`. Every rank builds the run and checks it; any refusal on any rank refuses the run
    on all, before anything is written (`parallel.Group.agree`)."""
    group = parallel.current()
    try:
        if refused is not None:
            raise refused
        built = _build(cfg, run_dir, group)
    except NnrunError as err:
        group.agree(err)  # raises, on every rank
        raise
    group.agree(None)
    return _train(cfg, run_dir, held, group, built)


class Built(NamedTuple):
    """A run ready to train: its trainer (restored, if it resumes) and what it starts from."""

    trainer: Trainer
    state: dict[str, Any] | None  # the checkpoint it resumes
    path: Path | None  # that checkpoint's file
    changed: dict[str, Any]  # the keys the resume changes: key -> [old, new]
    init: Path | None  # trainer.init_from's checkpoint, for a new run from its weights


def _build(cfg: DictConfig, run_dir: Path, group: parallel.Solo) -> Built:
    """Every component of the run, checked, and the trainer restored from the checkpoint it
    resumes (if any): nothing is written."""
    validate(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    for target in config["expected"]:
        if not isinstance(target, dict) or not TARGET_KEYS <= set(target) <= TARGET_KEYS | {"note"}:
            raise ConfigError(f"expected: each target needs the keys "
                              f"{', '.join(sorted(TARGET_KEYS))} (and may have a note); "
                              f"got {target}")
    trainer_cfg: TrainerConfig = build(cfg.trainer)
    path = resume_path(trainer_cfg.resume, run_dir)
    seed_everything(cfg.seed, trainer_cfg.deterministic)
    device = build(cfg.device)
    task = build(cfg.task)
    check_objective(cfg, type(task))  # trainer.monitor, and `objective` for a search
    data = build(cfg.data).to(device)
    model = assemble(cfg, task, data, device)
    if group.size > 1:
        data = replace(data, train=data_parallel(cfg, model, data, group))
    init = checkpoint_path(trainer_cfg.init_from) if trainer_cfg.init_from else None
    if init is not None and path is None:
        weights = checkpoint.load(init, "trainer.init_from")
        checkpoint.check_weights(weights, init, model, "trainer.init_from")
        model.load_state_dict(weights["model"])
    elif isinstance(model, ClosedForm) and path is None:
        model.fit(data.train)
    optimizer = build(cfg.optimizer, params=model.parameters())
    schedule = build(cfg.schedule, optimizer=optimizer,
                     total_steps=total_steps(trainer_cfg, model, len(data.train)))
    state, changed = _resumed(config, path, schedule, group.size)
    if group.rank:  # ranks' own random streams (dropout); rank 0 keeps one process's
        seed_everything(int(np.random.SeedSequence([cfg.seed, group.rank]).generate_state(1)[0]),
                        trainer_cfg.deterministic)
    trainer = Trainer(trainer_cfg, model, task, data, optimizer, schedule, run_dir, device,
                      seed=cfg.seed, config=config, group=group)
    if state is not None:
        checkpoint.check_weights(state, path, model, "trainer.resume")
        trainer.restore(state)
    return Built(trainer, state, path, changed, init)


def data_parallel(cfg: DictConfig, model: nn.Module, data: Any, group: parallel.Solo) -> Any:
    """This rank's share of the training split (`parallel.Shard`); a model or data that cannot
    train data-parallel is refused, naming which and why."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model={choice(cfg, 'model')} cannot train data-parallel: it has no "
                          "weights to train by gradient (it is fitted or set, not trained); run "
                          "it in one process, without torchrun")
    if getattr(model, "stateful", False):
        raise ConfigError(f"model={choice(cfg, 'model')} with model.stateful=true cannot train "
                          "data-parallel: the state it carries from batch to batch would be each "
                          "rank's own; set model.stateful=false, or run it in one process")
    try:
        return group.shard(data.train)
    except ConfigError as err:
        raise ConfigError(f"data={choice(cfg, 'data')} cannot train data-parallel: {err}; run "
                          "it in one process, without torchrun") from None


def _train(cfg: DictConfig, run_dir: Path, held: RunDir | None, group: parallel.Solo,
           built: Built) -> dict[str, Any]:
    """Record the start (rank 0), train, and record the result."""
    trainer, state, path, changed, init = built
    trainer_cfg, device, config = trainer.cfg, trainer.device, trainer.config
    start = provenance(device, cfg.seed)
    if group.size > 1:
        start["processes"] = group.size
    if state is not None:
        start.update({"resumed_from": str(path), "step": trainer.step, "changed": changed})
    elif init is not None:
        start["init_from"] = str(init)
    if held is not None:
        held.record(start, hydra_record(cfg, run_dir))  # from here the directory is this run's
        group.started(str(run_dir))
    processes = f" x {group.size} processes" if group.size > 1 else ""
    say(f"nnrun: run {run_dir} on {device_name(start)}{processes}")
    shown = [f"{k} {old} -> {new}" for k, (old, new) in changed.items() if k != "trainer.resume"]
    if shown:
        say(f"nnrun: resuming {path} at step {trainer.step} with {', '.join(shown)}")
    if trainer_cfg.progress:
        print_config({**config, "device": device_name(start)})  # not `select_device(name=auto)`
    logger = TensorBoardLogger(tensorboard_dir(run_dir),
                               purge_step=trainer.step + 1 if state else None) \
        if group.main else NoLogger()
    progress = watcher(trainer_cfg.progress, trainer.total_steps, trainer.step,
                       trainer_cfg.epochs)
    try:
        with stop_on_signals(trainer):
            result = trainer.fit(logger, progress)
        best = {f"best/{trainer_cfg.monitor}": trainer.best} if trainer.best is not None else {}
        if group.main:
            logger.log_hparams(hparams(cfg, what_it_is(task_overrides(run_dir))),
                               result["status"])
    finally:  # what was logged reaches the event file, whatever stopped the run
        progress.close()
        logger.close()
    if config["expected"] and result["status"] != "interrupted":
        result["expected"] = check_expected(config["expected"], {**result, **best})
    signum = trainer.stop_signal or signal.SIGTERM  # a data-parallel rank may stop on another's
    if trainer.stopping:
        result["signal"] = signal.Signals(signum).name
    if group.main:
        checkpoint.write_json({**result, **best}, run_dir / "metrics.json")
        print_summary(result, best, run_dir, as_table=live(trainer_cfg.progress))
    group.finish()
    if result["status"] == "failed":
        fix = ("continue from the last checkpoint with the same torchrun command plus "
               "trainer.resume=auto, or let torchrun --max-restarts do it" if trainer.lost_rank
               else "lower optimizer.lr or set trainer.clip_grad_norm")
        raise TrainingFailed(f"{result['error']}; {fix}")
    if result["status"] == "interrupted":
        raise Interrupted(signum, trainer.step, run_dir)
    return {**result, **best}


def earlier_result(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """For a sweep's job started again (a resumed sweep, a requeued job): the result it
    recorded if it completed, which stands (None if it has still to run or finish).

    Raises:
        SweepChanged: an earlier start of this job ran another config (other than in the
            keys a resume may change): the command is not the one that started the sweep.
    """
    earlier = run_dir / ".hydra" / "config.yaml"
    if not earlier.is_file():
        return None
    saved = OmegaConf.to_container(OmegaConf.load(earlier), resolve=True)
    _, refused = checkpoint.changed_keys(saved, OmegaConf.to_container(cfg, resolve=True))
    if refused:
        raise SweepChanged(f"hydra.sweep.dir: job {run_dir.name} of the sweep in {run_dir.parent} "
                           f"ran with other values of {listed(refused)}; finish a sweep with the "
                           "command that started it, or choose another hydra.sweep.dir")
    metrics = run_dir / "metrics.json"
    result = json.loads(metrics.read_text()) if metrics.is_file() else {}
    if result.get("status") != "completed":
        return None
    print(f"nnrun: job {run_dir.name} completed in an earlier start of the sweep; its result "
          "stands")
    return result


def hydra_job(run_dir: Path) -> DictConfig | None:
    """Hydra's settings (`hydra:`) of the job running in `run_dir`; None outside a Hydra job for
    `run_dir` (`run` called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    job = HydraConfig.get()
    return job if Path(job.runtime.output_dir) == run_dir else None


def task_overrides(run_dir: Path) -> list[str]:
    """The overrides the command line (and a sweep) gave the job in `run_dir`, as Hydra records
    them (`optimizer.lr=0.01`, `model=gru`); [] outside a Hydra job."""
    job = hydra_job(run_dir)
    return list(job.overrides.task) if job is not None else []


def tensorboard_dir(run_dir: Path) -> Path:
    """Where a run writes its TensorBoard events: `tb/`, or for a sweep's job `tb/<name>/`, so
    that TensorBoard over the sweep directory names each run by its overrides
    (`0/tb/optimizer.lr=0.01,seed=1`) rather than `0/tb`, `1/tb`.

    The name joins the job's overrides with "," ("/" made ":", which TensorBoard would read
    as a folder), leaving out the keys a resume may change (`trainer.resume=auto`, more
    `trainer.epochs`), so that a resumed job writes on, and purges, in the same folder;
    `job<num>` if none is left. It is cut to 200 bytes: a file name holds at most 255.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    job = hydra_job(run_dir)
    if job is None or job.mode != RunMode.MULTIRUN:
        return run_dir / "tb"
    overrides = task_overrides(run_dir)
    kept = [o.input_line for o in OverridesParser.create().parse_overrides(overrides)
            if not checkpoint.may_change(o.key_or_group)]
    name = ",".join(kept).replace("/", ":") or f"job{job.job.num}"
    return run_dir / "tb" / name.encode()[:200].decode(errors="ignore")


def hydra_record(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Hydra's record of a run (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), which
    nnrun writes itself once a start has passed its checks (Hydra's own would be written before
    them); None outside a Hydra job for `run_dir` (`run` called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if hydra_job(run_dir) is None:
        return None
    hydra_cfg = HydraConfig.instance().cfg
    return {"config.yaml": cfg, "hydra.yaml": hydra_cfg,
            "overrides.yaml": hydra_cfg.hydra.overrides.task}


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 (a cluster's warning before its time limit; SIGUSR2
    is submitit's) ask the trainer to stop at the next step boundary, where it saves a
    checkpoint; a second one stops at once.
    Outside the main thread (where Python allows no handlers) signals keep their defaults."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None and trainer.group.size == 1:
            raise KeyboardInterrupt  # the second signal: stop now (cli prints one line)
        # Under torchrun a Ctrl-C reaches each rank twice (from the terminal, and forwarded by
        # torchrun): the ranks stop together at the next flush, and torchrun's own kill after
        # its grace period is the hard stop.
        trainer.stop_signal = trainer.stop_signal or signum

    caught = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    before = {s: signal.signal(s, handle) for s in caught}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
