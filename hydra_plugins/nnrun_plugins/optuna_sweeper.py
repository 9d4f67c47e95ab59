"""`hydra/sweeper=optuna`: a search with Optuna (>= 4) through Hydra's sweeper interface.

    nnrun -m hydra/sweeper=optuna hydra.sweeper.n_trials=30 \\
        'optimizer.lr=tag(log, interval(1e-4, 1e-1))' 'model.hidden_size=range(8, 65, 8)'

Why nnrun has its own: Hydra's hydra-optuna-sweeper, as released (1.3.0), requires
optuna>=2.10,<3 (2021), which cannot be installed beside nnrun's optuna>=4. This one is small
because Optuna does all the searching through its ask-and-tell interface: the sweeper asks the
study for trials, hands each trial's overrides to Hydra's launcher (any launcher: basic,
joblib, submitit), and tells the study each job's result. The study lives in `storage` (an
SQLite file, say), so a second invocation with the same storage and study name continues it.

The search space is the sweep's overrides (and `hydra.sweeper.params`), in Hydra's override
syntax:

    interval(a, b)               a float from a to b         FloatDistribution(a, b)
    tag(int, interval(a, b))     a whole number from a to b  IntDistribution(a, b)
    tag(log, interval(a, b))     on a log scale (a > 0)      ..., log=True
    range(a, b) / range(a, b, s) Python's range: the stop b is EXCLUDED, so range(8, 64, 8) is
                                 8, 16, ..., 56              IntDistribution(8, 56, step=8)
                                 (a float range gives a FloatDistribution with that step)
    choice(a, b) / a,b           one of the values           CategoricalDistribution
    key=value                    fixed in every trial

Each trial's value is its job's result under `objective` (a key of `nnrun.run.run`'s result;
null: `best/<trainer.monitor>`), minimised when `trainer.mode` is min, else maximised. A trial
whose job failed, or returned no finite value, is told FAIL and the search goes on. At the end
the best trial of the study is printed and written to `best.yaml` in the sweep directory.

Every setting is checked before anything is written (no sweep directory, no study database):
a bad one is one line on stderr, through nnrun's error path (`PastHydra`, exit 2).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from nnrun.errors import ConfigError, NnrunError, PastHydra

# Optuna is imported where it is used: Hydra imports this module for every command, `--cfg`
# and `--help` included.

SAMPLERS = ("tpe", "random")
DEFAULT_STUDY = "nnrun"
# What a study is judged by is fixed for the whole study: trials judged by different metrics or
# in different directions cannot be compared.
UNSEARCHABLE = ("objective", "trainer.monitor", "trainer.mode")
# The tags each kind of search understands; any other is a mistake worth naming.
TAGS = {IntervalSweep: {"log", "int"}, RangeSweep: {"log"}, ChoiceSweep: set()}
FIXES = {IntervalSweep: "write interval(low, high) with low <= high (whole numbers under "
                        "tag(int, ...), low > 0 under tag(log, ...))",
         RangeSweep: "write range(start, stop[, step]) that holds at least one value (the stop "
                     "is excluded), with step 1 under tag(log, ...)",
         ChoiceSweep: "write choice(a, b, ...)"}


class Dimension:
    """One searched key: its Optuna distribution, and how a sampled value is written back as
    an override. (Not a dataclass: Hydra's plugin scan runs this module before it is in
    sys.modules, where a dataclass looks up its string annotations.)"""

    def __init__(self, key: str, distribution: Any, texts: list[str] | None = None) -> None:
        self.key = key  # as the override writes it, `+` prefix included
        self.distribution = distribution  # an optuna.distributions.BaseDistribution
        self.texts = texts  # a choice: each value as an override writes it

    def override(self, value: Any) -> str:
        if self.texts is not None:
            return f"{self.key}={self.texts[int(self.distribution.to_internal_repr(value))]}"
        return f"{self.key}={value!r}"  # repr: a float reads back exactly

    def probes(self) -> list[str]:
        """Overrides worth composing before a search starts: the ends of a numeric range, every
        value of a choice (a config group's options, say)."""
        if self.texts is not None:
            return [f"{self.key}={text}" for text in self.texts]
        return [self.override(self.distribution.low), self.override(self.distribution.high)]


def dimension(override: Override) -> Dimension:
    """The Optuna distribution of one sweep override.

    Raises:
        ConfigError: a tag this kind of search does not know, or a space Optuna cannot build
            (it raises ValueError: a log scale from 0, an interval whose ends are swapped).
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    sweep = override.value()
    kind = type(sweep)
    unknown = sorted(set(sweep.tags) - TAGS[kind])
    if unknown:
        known = " or ".join(sorted(TAGS[kind])) or "no tag"
        raise ConfigError(f"{override.input_line}: tag {', '.join(unknown)} means nothing to "
                          f"{kind.__name__.removesuffix('Sweep').lower()}(...) here; use {known}")
    log = "log" in sweep.tags
    try:
        if isinstance(sweep, IntervalSweep):
            if "int" not in sweep.tags:
                return Dimension(override.get_key_element(),
                                 FloatDistribution(sweep.start, sweep.end, log=log))
            if not (float(sweep.start).is_integer() and float(sweep.end).is_integer()):
                raise ValueError("an int interval needs whole-number ends")
            return Dimension(override.get_key_element(),
                             IntDistribution(int(sweep.start), int(sweep.end), log=log))
        if isinstance(sweep, RangeSweep):
            values = list(override.sweep_iterator())  # Hydra's reading: Python's range for ints
            if not values:
                raise ValueError("it holds no value")
            low, high, step = min(values), max(values), abs(sweep.step)
            whole = all(isinstance(v, int) for v in values)
            distribution = IntDistribution if whole else FloatDistribution
            return Dimension(override.get_key_element(),
                             distribution(low, high, log=log, step=step))
        values = list(sweep.list)
        texts = [Override._get_value_element_as_str(v) for v in values]
        primitive = all(isinstance(v, (str, int, float, bool)) for v in values)
        return Dimension(override.get_key_element(),
                         CategoricalDistribution(values if primitive else texts), texts)
    except ValueError as err:
        raise ConfigError(f"{override.input_line}: Optuna cannot search this "
                          f"({str(err).rstrip('.')}); {FIXES[kind]}") from None


def search_space(overrides: list[Override]) -> list[str | Dimension]:
    """The trial template, in the order given: a fixed override's text, or a searched key's
    Dimension. A key given twice takes its last value (the command line after `params`)."""
    template: dict[str, str | Dimension] = {}
    for override in overrides:
        name = override.get_key_element().lstrip("+~")
        template.pop(name, None)
        template[name] = dimension(override) if override.is_sweep_override() else \
            override.input_line
    searched = [name for name, item in template.items() if isinstance(item, Dimension)]
    if not searched:
        raise ConfigError("hydra/sweeper=optuna: nothing to search; give a key a range, e.g. "
                          "'optimizer.lr=tag(log, interval(1e-4, 1e-1))', "
                          "'model.hidden_size=range(8, 65)' or 'optimizer=sgd,adam'")
    fixed_by_study = [name for name in searched if name in UNSEARCHABLE]
    if fixed_by_study:
        raise ConfigError(f"{fixed_by_study[0]} cannot be searched: a study optimises one "
                          "objective in one direction; run one study for each")
    return list(template.values())


def sqlite_path(storage: str) -> Path | None:
    """The database file of an SQLite storage URL (None for another database, or memory)."""
    if not storage.startswith("sqlite:///"):
        return None
    path = storage.removeprefix("sqlite:///").partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def check_storage(storage: Any) -> str | None:
    """The storage URL to open (an SQLite path made absolute, so that a job that changes the
    working directory cannot move it), after checking that its file can be created: before
    Optuna creates it, which would otherwise fail half-way with a traceback."""
    if storage is None:
        return None
    key = "hydra.sweeper.storage"
    if not isinstance(storage, str) or "://" not in storage:
        raise ConfigError(f"{key}={storage} is not a database URL; use e.g. "
                          f"{key}=sqlite:///study.db (or null to keep the study in memory)")
    db = sqlite_path(storage)
    if db is None:
        return storage
    db = Path(os.path.abspath(db))
    problem = None
    if not db.parent.is_dir():
        problem = f"no folder {db.parent}"
    elif not os.access(db.parent, os.W_OK | os.X_OK):
        problem = f"the folder {db.parent} is not writable"
    elif db.is_dir():
        problem = "it is a folder"
    elif db.exists() and not os.access(db, os.R_OK | os.W_OK):
        problem = "the file is not writable"
    if problem:
        raise ConfigError(f"{key}={storage} cannot be created ({problem}); create the folder or "
                          f"choose a writable path, e.g. {key}=sqlite:///study.db")
    query = storage.partition("?")[2]
    return f"sqlite:///{db}" + (f"?{query}" if query else "")


def positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"hydra.sweeper.{key}={value} must be a whole number > 0, e.g. "
                          f"hydra.sweeper.{key}={20 if key == 'n_trials' else 2}")


def job_value(ret: JobReturn, objective: str) -> float | None:
    """The trial's value: the job's result under `objective`; None if the job failed, returned
    nothing (nnrun's job returns None when it fails in a sweep), or no finite number."""
    if ret.status != JobStatus.COMPLETED or not isinstance(ret.return_value, dict):
        return None
    value = ret.return_value.get(objective)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class OptunaSweeper(Sweeper):
    """Runs `n_trials` trials of an Optuna study, `n_jobs` at a time (conf/hydra/sweeper/
    optuna.yaml describes the settings)."""

    def __init__(self, n_trials: int = 20, n_jobs: int = 1, sampler: str = "tpe",
                 seed: int | None = None, storage: str | None = None,
                 study_name: str | None = None, params: Any = None) -> None:
        super().__init__()
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler, self.seed = sampler, seed
        self.storage, self.study_name = storage, study_name
        self.params = params or {}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        try:
            return self._sweep(arguments)
        except NnrunError as err:  # Hydra would print it with a traceback
            raise PastHydra(err) from None

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.hydra_context is not None
        # Every check first: a refused search writes nothing.
        positive("n_trials", self.n_trials)
        positive("n_jobs", self.n_jobs)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"hydra.sweeper.sampler={self.sampler} is not a sampler; use one "
                              f"of {', '.join(SAMPLERS)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(
                self.seed, int) or not 0 <= self.seed < 2**32):
            raise ConfigError(f"hydra.sweeper.seed={self.seed} must be a whole number from 0 to "
                              "2**32 - 1 (or null), e.g. hydra.sweeper.seed=0")
        name = self.study_name or DEFAULT_STUDY
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        template = search_space(parser.parse_overrides(given))
        objective, direction = self._objective()
        self._check_compose(template)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._check_not_resumed(sweep_dir)
        storage = check_storage(self.storage)

        study = open_study(storage, name, objective, direction, self.sampler, self.seed)
        returns: list[Sequence[JobReturn]] = []
        done = 0
        while done < self.n_trials:
            returns.append(self._run_batch(study, template, objective, done,
                                           min(self.n_jobs, self.n_trials - done)))
            done += len(returns[-1])
            if len(returns) == 1:  # the launcher has made the sweep directory: Hydra's record
                OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        report_best(study, sweep_dir, objective, direction, self.storage)
        return returns

    def _objective(self) -> tuple[str, str]:
        """The objective and its direction, checked against the task's metrics before any job
        runs (nnrun.run checks the same for a single run)."""
        from hydra.utils import get_class

        from nnrun.objective import check_objective

        target = OmegaConf.select(self.config, "task._target_")
        try:
            task_class = get_class(target)
        except Exception as err:
            raise ConfigError(f"task._target_={target!r} cannot be imported ({err}); check the "
                              "spelling of the class path") from None
        return check_objective(self.config, task_class)

    def _check_compose(self, template: list[str | Dimension]) -> None:
        """Compose a few trials' configs before the study exists (as Hydra's basic sweeper does
        for each batch): a misspelt key or a config option that does not exist is refused now,
        with Hydra's own one-line message, not by every trial. One trial with each searched
        key's first probe, then one for each further probe of each key."""
        first = [item if isinstance(item, str) else item.probes()[0] for item in template]
        batch = [first]
        for i, item in enumerate(template):
            if isinstance(item, Dimension):
                batch += [first[:i] + [probe] + first[i + 1:] for probe in item.probes()[1:]]
        self.validate_batch_is_legal(batch)

    def _check_not_resumed(self, sweep_dir: Path) -> None:
        """A search is continued through its storage, not by resuming its sweep directory
        (`trainer.resume=auto`): the study would ask for other trials than the ones there."""
        from nnrun.callbacks import holds_sweep

        if holds_sweep(sweep_dir):
            raise ConfigError(f"hydra.sweep.dir={sweep_dir} holds a sweep; an Optuna search "
                              "goes on in a new hydra.sweep.dir with the same "
                              "hydra.sweeper.storage and study_name")

    def _run_batch(self, study: Any, template: list[str | Dimension], objective: str,
                   first_job: int, size: int) -> Sequence[JobReturn]:
        """Ask `size` trials, launch their jobs together, tell the study each result."""
        from optuna.trial import TrialState

        dims = {item.key: item.distribution for item in template if isinstance(item, Dimension)}
        trials = [study.ask(dims) for _ in range(size)]
        batch = []
        for trial in trials:
            overrides = [item if isinstance(item, str) else item.override(trial.params[item.key])
                         for item in template]
            trial.set_user_attr("overrides", overrides)
            batch.append(overrides)
        try:
            results = self.launcher.launch(batch, initial_job_idx=first_job)
        except BaseException:  # a signal stopped the sweep: no trial is left running
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        for job, (trial, ret) in enumerate(zip(trials, results, strict=True), first_job):
            run_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") \
                if ret.hydra_cfg is not None else None
            if run_dir is not None:
                trial.set_user_attr("run_dir", str(run_dir))
            value = job_value(ret, objective)
            if value is None:
                if ret.status == JobStatus.COMPLETED and ret.return_value is not None:
                    print(f"nnrun: job {job} returned no finite {objective}; its trial "
                          f"{trial.number} failed", file=sys.stderr)
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        return results


def open_study(storage: str | None, name: str, objective: str, direction: str, sampler: str,
               seed: int | None) -> Any:
    """Create the study, or load it to continue: the same storage and study name. A study that
    optimises another objective, or in the other direction, is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for logger in ("alembic", "sqlalchemy"):  # SQLite storage set-up, on Hydra's console
        logging.getLogger(logger).setLevel(logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                    load_if_exists=True)
    except Exception as err:  # a database that cannot be reached, a driver not installed
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"hydra.sweeper.storage={storage} cannot be opened ({reason}); use "
                          "e.g. hydra.sweeper.storage=sqlite:///study.db") from None
    found = (study.user_attrs.get("objective", objective), study.direction.name.lower())
    if found != (objective, direction):
        raise ConfigError(f"hydra.sweeper.study_name={name}: the study in {storage} "
                          f"{found[1]}s {found[0]}, not {objective} ({direction}); choose "
                          "another hydra.sweeper.study_name")
    study.set_user_attr("objective", objective)
    # A continued study would replay its first invocation's samples under the same seed:
    # offset it by the trials the study already holds.
    seed = None if seed is None else (seed + len(study.get_trials(deepcopy=False))) % 2**32
    study.sampler = (optuna.samplers.TPESampler(seed=seed) if sampler == "tpe" else
                     optuna.samplers.RandomSampler(seed=seed))
    return study


def report_best(study: Any, sweep_dir: Path, objective: str, direction: str,
                storage: str | None) -> None:
    """Print the study's best trial and write it to `best.yaml` in the sweep directory; say so
    when no trial has succeeded yet (the sweep summary reports the failed jobs)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print(f"nnrun: no trial of study {study.study_name} has succeeded; no best.yaml")
        return
    best = study.best_trial
    overrides = list(best.user_attrs.get("overrides", []))
    record = {"objective": objective, "direction": direction, "value": best.value,
              "overrides": overrides, "trial": best.number,
              "run_dir": best.user_attrs.get("run_dir"), "study_name": study.study_name,
              "storage": storage}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(record), sweep_dir / "best.yaml")
    print(f"nnrun: best trial {best.number} of study {study.study_name}: {objective}="
          f"{best.value:.6g} ({direction}), in {record['run_dir']}; {sweep_dir / 'best.yaml'}")
    print(f"nnrun: best overrides: {' '.join(overrides)}")
