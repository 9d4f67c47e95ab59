"""The `nnrun` command: Hydra composes the config, `run` trains, and every error a user can fix
prints as one line on stderr with a non-zero exit.

Only Hydra and OmegaConf are imported here; torch comes in with `nnrun.run`, when a job starts,
so `nnrun --cfg job` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from nnrun.errors import Interrupted, NnrunError, PastHydra


@hydra.main(version_base="1.3", config_path="pkg://nnrun.conf", config_name="config")
def job(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job. In a sweep, a failing job is recorded as failed and the sweep goes on."""
    from nnrun.checkpoint import write_json
    from nnrun.run import hydra_record, run
    from nnrun.rundir import write_hydra_record

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            return run(cfg, run_dir)
        except NnrunError as err:  # command() prints it; Hydra would add an "Error executing" line
            raise PastHydra(err) from None
    try:
        return run(cfg, run_dir)
    except Interrupted as err:  # the sweep stops with its job
        raise PastHydra(err) from None
    except Exception as err:
        if not isinstance(err, NnrunError):
            traceback.print_exc()
        print(f"nnrun: job {hydra_cfg.job.num} failed: {err}", file=sys.stderr)
        metrics = run_dir / "metrics.json"
        if not metrics.exists():  # a failure before training: record it for the summary
            write_hydra_record(run_dir, hydra_record(cfg, run_dir) or {})
            write_json({"status": "failed", "error": str(err)}, metrics)
        return None


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
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing them
    # PyG (Cora, GCN) calls torch.jit.script as it is imported: a warning no user can act on
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    try:
        try:
            job()
        except PastHydra as carried:
            raise carried.error from None
    except Interrupted as err:
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
