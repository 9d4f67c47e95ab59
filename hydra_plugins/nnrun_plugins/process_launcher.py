"""Side-by-side sweeps on one machine that survive a crashed job (`hydra/launcher=joblib`).

Hydra's joblib launcher runs jobs in loky workers, and when one worker dies (the kernel's
out-of-memory killer, a segfault) loky shuts every worker down: the other jobs die with it and
the sweep ends in a traceback, without its summary. This launcher keeps joblib's name and its
`n_jobs` knob, but gives every job a process of its own, forked from the sweep's process after
torch and nnrun are imported there once:

- a job whose process dies is recorded as failed with its cause (`killed by SIGKILL`), and the
  other jobs go on; the sweep's summary is written and the command exits 1;
- start-up (importing torch, about 3 s) is paid once per sweep, not once per job or worker;
- each job gets `threads_per_job` intra-op threads (by default its share of the cores), so
  that jobs running side by side do not fight over the cores;
- a signal to the sweep (Ctrl-C, SIGTERM) reaches every running job, which saves a checkpoint
  at its step; the sweep then stops and says how to finish it (`trainer.resume=auto`). If the
  sweep's own process is killed outright, its jobs get SIGTERM (Linux) and do the same.

Forking needs a platform that has it (Linux, macOS); elsewhere use the basic launcher.
"""

import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from nnrun.errors import ConfigError, PastHydra, SweepChanged, SweepInterrupted

log = logging.getLogger(__name__)


@dataclass
class ProcessLauncherConf:
    """`hydra/launcher=joblib` (stored by `hydra_plugins.nnrun_plugins.register`)."""

    _target_: str = "hydra_plugins.nnrun_plugins.process_launcher.ProcessLauncher"
    n_jobs: int | None = None  # jobs at once; None: one per core
    threads_per_job: int | None = None  # torch threads in each job; None: a share of the cores



def cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_positive(value: Any, key: str, fix: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise PastHydra(ConfigError(f"{key}={value}: must be a whole number of at least 1; {fix}"))


class ProcessLauncher(Launcher):
    """Runs a sweep's jobs `n_jobs` at a time, each in a process forked for it.

    Args:
        n_jobs: jobs at once; None for one per core.
        threads_per_job: torch intra-op threads in each job; None for the cores divided by
            the jobs running at once (at least one).
    """

    def __init__(self, n_jobs: int | None = None, threads_per_job: int | None = None) -> None:
        check_positive(n_jobs, "hydra.launcher.n_jobs", "or null for one job per core")
        check_positive(threads_per_job, "hydra.launcher.threads_per_job",
                       "or null for a share of the cores")
        self.n_jobs = n_jobs
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        if "fork" not in multiprocessing.get_all_start_methods():
            raise PastHydra(ConfigError("hydra/launcher=joblib needs a platform that can fork "
                                        "(Linux, macOS); use hydra/launcher=basic"))
        assert self.config is not None
        setup_globals()
        self._preload(job_overrides[0])

        n_jobs = min(self.n_jobs or cores(), len(job_overrides))
        threads = self.threads_per_job or max(1, cores() // n_jobs)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, {n_jobs} at a time in their own "
                 f"processes, {threads} thread(s) each")
        waiting = list(enumerate(job_overrides, start=initial_job_idx))
        running: dict[Connection, tuple[int, Sequence[str], multiprocessing.Process]] = {}
        results: dict[int, JobReturn] = {}
        stop = _StopOnSignals()
        refusal = None  # a job's refusal of the whole sweep (SweepChanged)
        context = multiprocessing.get_context("fork")
        with stop:
            while running or (waiting and stop.signum is None and refusal is None):
                while (waiting and len(running) < n_jobs and stop.signum is None
                       and refusal is None):
                    idx, overrides = waiting.pop(0)
                    log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                    ours, theirs = context.Pipe(duplex=False)
                    process = context.Process(target=self._job, args=(
                        theirs, idx, overrides, threads, os.getpid()))
                    process.start()
                    theirs.close()  # so that `ours` reads EOF when the job's process ends
                    running[ours] = (idx, overrides, process)
                for conn in wait(list(running)):
                    idx, overrides, process = running.pop(conn)
                    try:
                        outcome = conn.recv()
                    except EOFError:  # the process ended without a word: it died
                        outcome = None
                    conn.close()
                    process.join()
                    results[idx] = self._result(idx, overrides, outcome, process.exitcode)
                    if isinstance(outcome, int):  # a signal stopped the job: stop the sweep
                        stop.signum = stop.signum or outcome
                    elif isinstance(outcome, str):
                        refusal = refusal or outcome
        if refusal is not None:
            raise PastHydra(SweepChanged(refusal))
        if stop.signum is not None:
            raise PastHydra(SweepInterrupted(stop.signum, self.config.hydra))
        return [results[idx] for idx in sorted(results)]

    def _preload(self, overrides: Sequence[str]) -> None:
        """Import here, once, what every job would import for itself: nnrun's runner, the
        modules of the components a job builds (every `_target_` of its config), what building
        a torch optimizer imports (torch._dynamo, with sympy) and matplotlib for the figures.
        A forked job finds them loaded; without this each job spent about 2 s importing them."""
        import importlib

        import torch._dynamo  # noqa: F401

        import nnrun.run  # noqa: F401
        from nnrun.tasks import pyplot

        pyplot()

        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        targets: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("_target_"), str):
                    targets.append(node["_target_"])
                for value in node.values():
                    walk(value)

        walk({k: v for k, v in OmegaConf.to_container(config).items() if k != "hydra"})
        for target in targets:
            module = target.rsplit(".", 1)[0]
            try:
                importlib.import_module(module)
            except ImportError:  # not a module path (a class inside one): the job will say
                pass

    def _job(self, conn: Connection, idx: int, overrides: Sequence[str], threads: int,
             sweep_pid: int) -> None:
        """In the job's own process: run the job as Hydra's launchers do, send back its
        result (or the signal that stopped it), and end without the interpreter's teardown
        (unloading torch takes a second)."""
        import torch

        signal.signal(signal.SIGINT, signal.default_int_handler)  # not the sweep's handlers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _end_with_parent(sweep_pid)
        torch.set_num_threads(threads)
        assert self.hydra_context is not None and self.config is not None
        assert self.task_function is not None
        status = 0
        try:
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            HydraConfig.instance().set_config(sweep_config)
            ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                          config=sweep_config, job_dir_key="hydra.sweep.dir",
                          job_subdir_key="hydra.sweep.subdir")
            if ret.status == JobStatus.FAILED:  # an exception object may not pickle
                ret.return_value = RuntimeError(str(ret._return_value))
            conn.send(ret)
        except PastHydra as carried:  # a signal stopped the job (it saved a checkpoint), or
            error = carried.error    # the job refused the whole sweep
            conn.send(error.signum if isinstance(error, SweepInterrupted) else str(error))
            status = 1
        except BaseException as err:  # anything else: the sweep records it and goes on
            print(f"nnrun: job {idx} failed: {err}", file=sys.stderr)
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
        os._exit(status)

    def _result(self, idx: int, overrides: Sequence[str], outcome: Any,
                exitcode: int | None) -> JobReturn:
        """The job's JobReturn; for a job whose process died, a completed one whose value is
        None (as nnrun's jobs return for a failure) after its directory records the failure
        and its cause, for the summary."""
        if isinstance(outcome, JobReturn):
            return outcome
        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                          list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = idx
        job_dir = Path(sweep_config.hydra.sweep.dir) / str(sweep_config.hydra.sweep.subdir)
        if outcome is None:
            record_crash(job_dir, list(overrides), died(exitcode))
        ret = JobReturn(overrides=list(overrides), working_dir=str(job_dir),
                        task_name=self.config.hydra.job.name, status=JobStatus.COMPLETED)
        ret.return_value = None
        return ret


def died(exitcode: int | None) -> str:
    """Why a job's process ended without a result, in words."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        cause = " (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else ""
        return f"the job's process was killed by {name}{cause}"
    return f"the job's process exited with status {exitcode} before it finished"


def record_crash(job_dir: Path, overrides: list[str], cause: str) -> None:
    """metrics.json `failed` with its cause, and the job's overrides if it had not written
    them yet; a record the job completed is kept."""
    from nnrun.rundir import record_failure

    metrics = job_dir / "metrics.json"
    if metrics.exists() and json.loads(metrics.read_text()).get("status") == "completed":
        return
    print(f"nnrun: job {job_dir.name} failed: {cause}", file=sys.stderr)
    record_failure(job_dir, cause, {"overrides.yaml": OmegaConf.create(overrides)})


class _StopOnSignals:
    """While jobs run: SIGINT and SIGTERM to the sweep stop it starting jobs (the running
    ones, which get the signal too, save a checkpoint and end); a second one ends it at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._before: dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._before[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if signum == signal.SIGTERM:  # a terminal's Ctrl-C reaches the jobs by itself
            for child in multiprocessing.active_children():
                os.kill(child.pid, signum)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)


def _end_with_parent(sweep_pid: int) -> None:
    """Ask Linux to send this job SIGTERM when the sweep's process dies (it then saves a
    checkpoint and ends, rather than run on unwatched); elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != sweep_pid:  # the sweep died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
