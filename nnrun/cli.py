"""The `nnrun` command: Hydra composes the config, `run` trains, and every error a user can fix
prints as one line on stderr with a non-zero exit.

Only Hydra and OmegaConf are imported here; torch comes in with `nnrun.run`, when a job starts,
so `nnrun --cfg job` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.nnrun_plugins import register
from nnrun.errors import Interrupted, NnrunError, PastHydra, SweepChanged, SweepInterrupted


@hydra.main(version_base="1.3", config_path="pkg://nnrun.conf", config_name="config")
def job(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job. In a sweep, a failing job is recorded as failed and the sweep goes on."""
    from nnrun.checkpoint import write_json
    from nnrun.run import earlier_result, hydra_record, run
    from nnrun.rundir import write_hydra_record

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            return run(cfg, run_dir)
        except NnrunError as err:  # command() prints it; Hydra would add an "Error executing" line
            raise PastHydra(err) from None
    # A job's directory belongs to its sweep, which RunDirGuard let start only into a new sweep
    # directory or with trainer.resume=auto: a job that finds a run in its own directory is
    # that job started again (a resumed sweep, a requeued job), and it continues that run.
    if OmegaConf.select(cfg, "trainer.resume") is None:
        cfg.trainer.resume = "auto"
    started = time.time()
    try:
        done = earlier_result(cfg, run_dir)
        if done is not None:
            return done
        return run(cfg, run_dir)
    except Interrupted as err:  # the job saved a checkpoint; the sweep stops with it
        requeue(err.signum)
        raise PastHydra(SweepInterrupted(err.signum, hydra_cfg)) from None
    except SweepChanged as err:  # not this job's failure: the command is not the sweep's
        raise PastHydra(err) from None
    except Exception as err:
        if not isinstance(err, NnrunError):
            traceback.print_exc()
        print(f"nnrun: job {hydra_cfg.job.num} failed: {err}", file=sys.stderr)
        metrics = run_dir / "metrics.json"
        if not metrics.exists() or metrics.stat().st_mtime < started:  # failed before training
            if not (run_dir / ".hydra").exists():
                write_hydra_record(run_dir, hydra_record(cfg, run_dir) or {})
            write_json({"status": "failed", "error": str(err)}, metrics)
        return None


def requeue(signum: int) -> None:
    """Under submitit (hydra/launcher=slurm, submitit_local), after a warning signal (SIGUSR1,
    or submitit's own, SIGUSR2) has made the job save a checkpoint at its step: hand over to
    submitit's checkpoint-and-requeue handler, which submits the same job again and ends this
    process; the requeued job continues from the checkpoint. SIGTERM, which is also how a user
    cancels a job, is not requeued (a cluster that preempts with SIGTERM requeues by itself)."""
    submitit = sys.modules.get("submitit")
    if submitit is None or signum == signal.SIGTERM:
        return
    usr_sig = submitit.JobEnvironment._usr_sig()
    handler = signal.getsignal(usr_sig)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(usr_sig, None)


def group_options(group: str) -> list[str]:
    """Every option of a config group, nested ones (`experiment=examples/mnist_cnn`) included:
    `group_options("experiment")` lists the presets."""
    root = files("nnrun.conf") / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in Path(root).glob("**/*.yaml"))


def one_line(err: Exception) -> str:
    """Hydra's multi-line messages, folded to one line that ends with what to do."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    missing = getattr(err, "missing_cfg_file", None) or ""
    if isinstance(err, MissingConfigException) and "/" in missing:
        options = err.options or group_options(missing.split("/")[0])  # Hydra lists no nested ones
        if options:
            return f"{lines[0]}; choose one of: {', '.join(options)}"
    return "; ".join(line for line in lines if not line.startswith("Set the environment"))


def command() -> int:
    """The `nnrun` command in this process: Hydra composes, `run` trains, and an error a user
    can fix prints as one line. Returns the exit status: 0, 1 for a failed run or sweep, 2 for
    bad input."""
    register()  # nnrun's launcher and sweeper
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing them
    # PyG (Cora, GCN) calls torch.jit.script as it is imported: a warning no user can act on
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    try:
        try:
            job()
        except PastHydra as carried:
            raise carried.error from None
    except (Interrupted, SweepInterrupted) as err:
        print(f"nnrun: {err}", file=sys.stderr)
        return err.exit_code
    except (NnrunError, HydraException, OmegaConfBaseException) as err:
        if full_error:
            raise
        print(f"nnrun: error: {one_line(err)}", file=sys.stderr)
        return err.exit_code if isinstance(err, NnrunError) else 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training began
        print("nnrun: stopped at once by a second signal; the last checkpoint written, if any, "
              "is kept", file=sys.stderr)
        return 130
    return 0


def main() -> None:
    """Entry point of the `nnrun` console script and of `python -m nnrun`: `command()`, then
    the end of the process.

    After a single run the process ends at once (`os._exit`), not through the interpreter's
    teardown: unloading torch's and torchvision's thousands of modules takes about a second
    (0.9 s on the development machine after `import torch, torchvision`) and does nothing for
    a run that has finished, whose files are all written, fsynced and closed by then. The
    standard streams and logging are flushed first. The ordinary exit is kept for a sweep (its
    launcher may hold worker processes), for a command that never imported torch (`--cfg`,
    `--help`), and under a profiler, tracer or coverage tool, which write their results at
    exit. Call `command()` to use the command inside a process that must go on.
    """
    status = command()
    single_run = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if single_run and "torch" in sys.modules and not watched:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(status)
    sys.exit(status)
