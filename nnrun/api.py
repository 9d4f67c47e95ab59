"""nnrun from Python and notebooks: `nnrun.train(...)` runs a job as the `nnrun` command would,
and `nnrun.load(...)` gives back a trained model.

Both read nothing from `sys.argv` (in a notebook it holds the kernel's own arguments), and this
module imports neither torch nor Hydra until a function is called, so `import nnrun` stays
light. Every error a user can fix is an `NnrunError` whose message is one line.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nnrun.errors import CheckpointError, ConfigError, NnrunError

if TYPE_CHECKING:
    from torch import nn

    from nnrun.data import Sizes

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Trained:
    """What `train` returns.

    Args:
        run_dir: the run directory (absolute): `nnrun.load(result.run_dir)` gives the model.
        metrics: the run's result, as metrics.json holds it: `status`, `epochs`, `steps`,
            `wall_s` and every final metric under its TensorBoard name (`val/loss`,
            `best/val/loss`, ...).
    """

    run_dir: Path
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Loaded:
    """What `load` returns.

    Args:
        model: the trained model, on the CPU, in eval mode.
        config: the run's config as the checkpoint recorded it (resolved).
        sizes: the data-derived sizes the model was built with (`nnrun.data.Sizes`).
        checkpoint: the checkpoint file the weights came from (absolute).
        metrics: the metrics recorded with that checkpoint (the last evaluation before it).
        vocabularies: for token data, the token strings by id (`chars`, or `source` and
            `target`), to turn the model's ids into text; empty otherwise.
    """

    model: nn.Module
    config: DictConfig
    sizes: Sizes
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)


def train(*overrides: str, run_dir: PathLike | None = None,
          config_dir: PathLike | None = None) -> Trained:
    """Train the job `nnrun <overrides>` would, in this process; return its result.

        result = nnrun.train("model=mlp", "data=mnist", "trainer.epochs=1")
        result.metrics["val/acc"], result.run_dir

    The config is composed by Hydra exactly as on the command line (the same defaults,
    `trainer.progress` included: in a notebook the tree, progress bar and summary show in the
    cell; pass "trainer.progress=false" for quiet), and the run is the command's: the same
    checks before anything is written, the same run directory with `.hydra/` and `run.json`.

    Args:
        overrides: as on the command line: "model=mlp", "optimizer.lr=0.01",
            "trainer.resume=auto". A sweep (`a=1,2`) is the command's (`nnrun -m`).
        run_dir: where the run goes; None: a new `outputs/<date>/<time>` under the current
            folder, as the command makes. A folder that holds a run is refused (as the command
            refuses it) unless the overrides continue it with "trainer.resume=auto".
        config_dir: a folder of your own config groups (`conf/model/mynet.yaml`), as the
            command's `--config-dir`; their `_target_`s import from the current folder. (An
            option named as one of nnrun's is nnrun's here: Hydra's Compose API searches an
            added folder after nnrun's own.)

    Raises:
        NnrunError: bad input (nothing written), a failed run, or an interrupted one
            (`Interrupted`: Ctrl-C or "interrupt the kernel" stops at the next step, with a
            checkpoint to resume from).
    """
    from nnrun.run import run
    from nnrun.rundir import CALLED_AS

    cfg = compose(overrides, config_dir)
    where = Path(os.path.abspath(Path(run_dir if run_dir is not None
                                      else cfg.hydra.run.dir).expanduser()))
    named = {"run_dir": run_dir, "config_dir": config_dir}
    call = [*map(repr, overrides), *(f"{k}={str(v)!r}" for k, v in named.items() if v is not None)]
    called = CALLED_AS.set(f"nnrun.train({', '.join(call)})")
    try:
        with as_hydra_job(cfg, where) as job:
            return Trained(where, run(job, where))
    finally:
        CALLED_AS.reset(called)


def compose(overrides: Sequence[str], config_dir: PathLike | None = None) -> DictConfig:
    """The config `nnrun <overrides>` runs, with Hydra's own node (`hydra:`, which holds the
    run directory and the options chosen), through Hydra's Compose API. A notebook's own Hydra
    session, if it has one, is put back afterwards."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    from nnrun.cli import one_line

    if any(not isinstance(o, str) for o in overrides):
        raise ConfigError(f"nnrun.train: overrides are strings like 'optimizer.lr=0.01'; got "
                          f"{', '.join(repr(o) for o in overrides if not isinstance(o, str))}")
    searched = []
    if config_dir is not None:
        folder = Path(config_dir).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"config_dir={config_dir}: no such folder; pass the folder that "
                              "holds your config groups (model/, data/, task/ ...)")
        searched = [f"hydra.searchpath=[file://{folder}]"]
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("nnrun.conf", version_base="1.3"):
            return hydra_compose("config", overrides=[*overrides, *searched],
                                 return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    finally:
        restore_gh_from_backup(backup)


@contextmanager
def as_hydra_job(cfg: DictConfig, run_dir: Path) -> Iterator[DictConfig]:
    """The job's config (`cfg` less its `hydra:` node), with Hydra's state set as for a job of
    the command (`hydra.core.utils.run_job`) and put back afterwards: the run then records
    `.hydra/` and names options (`model=mlp`) as the command's does. Unlike the command, the
    logging setup and the working directory are left alone: they are the notebook's."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.instance()
    before = hydra.cfg
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(run_dir)
    hydra.set_config(cfg)
    job = copy.deepcopy(cfg)
    with read_write(job), open_dict(job):
        del job["hydra"]
    try:
        yield job
    finally:
        hydra.cfg = before


CHECKPOINTS = ("best", "last")


def load(source: PathLike, checkpoint: str = "best") -> Loaded:
    """The trained model of a run, ready to use: built from the config its checkpoint recorded
    with the data-derived sizes it was trained with, its weights loaded, in eval mode, on the
    CPU. No override needs repeating, and no data is read.

        loaded = nnrun.load("outputs/2026-12-02/10-31-07-123456")
        loaded.model(x), loaded.config.model, loaded.sizes

    Args:
        source: a run directory, or a checkpoint file (then `checkpoint` is not used).
        checkpoint: of a run directory, "best" (checkpoints/best.pt, the best evaluation of
            `trainer.monitor`) or "last" (checkpoints/last.pt, where training ended).

    Raises:
        NnrunError: one line, and nothing written: not a run directory, no such checkpoint,
            a damaged checkpoint, or a recorded config this nnrun cannot build (naming the key).
    """
    from nnrun import checkpoint as checkpoints

    path = checkpoint_file(Path(os.path.abspath(Path(source).expanduser())), checkpoint)
    state = checkpoints.load(path, "nnrun.load")
    model, cfg, sizes = rebuild_model(state, path, "nnrun.load")
    return Loaded(model, cfg, sizes, path, dict(state["metrics"]),
                  {k: list(v) for k, v in (state["vocabularies"] or {}).items()})


def checkpoint_file(source: Path, which: str, key: str = "nnrun.load") -> Path:
    """The checkpoint `load` (or, as `key`, `nnrun-eval`) reads: `source` itself if it is a
    file, else the run directory's checkpoints/<which>.pt. A folder that is not a run, or a
    run without that checkpoint, is a CheckpointError saying what there is instead."""
    if which not in CHECKPOINTS:
        raise ConfigError(f"{key}: checkpoint={which!r} must be one of "
                          f"{', '.join(map(repr, CHECKPOINTS))}")
    if source.is_file():
        return source
    if not source.is_dir():
        raise CheckpointError(f"{key}: {source} does not exist; pass a run directory "
                              "(outputs/<date>/<time>) or a checkpoint file")
    folder = source / "checkpoints"
    if not folder.is_dir() and not (source / "run.json").is_file():
        raise CheckpointError(f"{key}: {source} is not an nnrun run directory (it has no "
                              "checkpoints/ and no run.json); pass a run directory "
                              "(outputs/<date>/<time>) or a checkpoint file")
    path = folder / f"{which}.pt"
    if not path.is_file():
        held = [c for c in CHECKPOINTS if (folder / f"{c}.pt").is_file()]
        instead = ((f"use {key} {held[0]}" if key.startswith("--") else
                    f"pass checkpoint={held[0]!r}") if held else
                   "it ended before writing any (see its metrics.json)")
        raise CheckpointError(f"{key}: the run {source} has no checkpoints/{which}.pt; "
                              f"{instead}")
    return path


def rebuild_model(state: dict[str, Any], path: Path,
                  key: str) -> tuple[nn.Module, DictConfig, Sizes]:
    """The model of a loaded checkpoint (`nnrun.checkpoint.load`), built from its recorded
    config and sizes with its weights, in eval mode; its config and sizes. A config this nnrun
    can no longer build (a class renamed, an argument gone) is a ConfigError naming `key`, the
    file and the config key."""
    from omegaconf.errors import OmegaConfBaseException

    from nnrun import checkpoint as checkpoints
    from nnrun.run import build, check_group, size_arguments

    cfg = OmegaConf.create(state["config"])
    try:
        check_group(cfg, "model")
        sizes = recorded_sizes(state, cfg, path, key)
        model = build(cfg.model, **size_arguments(cfg.model, sizes))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: {path} records a config this nnrun cannot read "
                          f"({str(err).splitlines()[0]})") from None
    except ConfigError as err:
        raise ConfigError(f"{key}: {path}: its model cannot be built again from the config "
                          f"it recorded: {err}") from None
    checkpoints.check_weights(state, path, model, key)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, sizes


def recorded_sizes(state: dict[str, Any], cfg: DictConfig, path: Path, key: str) -> Sizes:
    """The data-derived sizes a checkpoint's model was built with. A checkpoint written before
    they were recorded (format 2) has none: they are found again by building its data, as the
    run did (which needs the dataset where the run found it)."""
    from nnrun.data import Sizes
    from nnrun.run import build

    recorded = state.get("sizes")
    if recorded is None:
        try:
            return build(cfg.data).sizes
        except NnrunError as err:
            raise CheckpointError(f"{key}: {path} predates recorded data sizes, and its data "
                                  f"could not be built to find them again ({err})") from None
    try:
        return Sizes(**recorded)
    except TypeError:  # a field this nnrun's Sizes does not have
        raise CheckpointError(f"{key}: {path} records sizes {recorded} that are not "
                              "nnrun.data.Sizes; use it with the nnrun that wrote it") from None
