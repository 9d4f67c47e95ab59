"""The `nnrun` command: Hydra composes the config, `run` trains, and every error a user can fix
prints as one line on stderr with a non-zero exit.

Only Hydra and OmegaConf are imported here; torch comes in with `nnrun.run`, when a job starts,
so `nnrun --cfg job` stays fast.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import sys
import textwrap
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
from nnrun.errors import (
    Interrupted,
    NnrunError,
    PastHydra,
    SweepChanged,
    SweepInterrupted,
    TrainingFailed,
)


@hydra.main(version_base="1.3", config_path="pkg://nnrun.conf", config_name="config")
def job(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job. In a sweep, a failing job is recorded as failed and the sweep goes on."""
    from nnrun.run import earlier_result, hydra_record, run
    from nnrun.rundir import record_failure

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        quiet_unless_rank_0()
        try:
            return run(cfg, run_dir)
        except NnrunError as err:  # command() prints it; Hydra would add an "Error executing" line
            raise PastHydra(err) from None
    try:
        parallel_job(cfg)
    except NnrunError as err:  # the same settings fail every job: the sweep stops
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
        if not rank_0():  # a data-parallel job: rank 0 reports and records it
            return None
        print(f"nnrun: job {hydra_cfg.job.num} failed: {err}", file=sys.stderr)
        metrics = run_dir / "metrics.json"
        if not metrics.exists() or metrics.stat().st_mtime < started:  # failed before training
            record_failure(run_dir, str(err), hydra_record(cfg, run_dir) or {})
        return None


def parallel_job(cfg: DictConfig) -> None:
    """A sweep's job run by several SLURM tasks (`hydra.launcher.tasks_per_node` or `nodes`
    above 1): each task joins the job's process group as one rank. The job's directory is the
    same for every task (the sweep's, chosen before submission), so none needs choosing."""
    from nnrun.launch import from_slurm_tasks, launch_env

    from_slurm_tasks()
    launch = launch_env()
    if launch is not None:
        from nnrun import parallel

        parallel.start(launch, cfg.trainer.collective_timeout_s)
        quiet_unless_rank_0()


def rank_0() -> bool:
    """This process is rank 0 of a data-parallel run, or runs on its own."""
    parallel = sys.modules.get("nnrun.parallel")  # not imported: no run has started
    return parallel is None or parallel.current().main


def quiet_unless_rank_0() -> None:
    """Rank 0 alone speaks for a data-parallel run: the other ranks' console lines and log
    records are dropped (their tracebacks, on stderr, are not)."""
    if not rank_0():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        logging.disable(logging.CRITICAL)


def said_by_rank_0(err: BaseException) -> bool:
    """An error on a rank other than 0 of a data-parallel run that rank 0 reports for every
    rank, so that the others exit with its status and say nothing: a refusal the ranks agreed
    on (`parallel.Group.agree`), an error of the config before the ranks met (each rank composes
    the same config, and fails alike), or the end of a failed or interrupted run."""
    from nnrun.launch import launch_env

    try:
        launch = launch_env()
    except NnrunError:  # a half-configured launch: each process says so
        return False
    if launch is None or launch.main:
        return False
    parallel = sys.modules.get("nnrun.parallel")
    met = parallel is not None and parallel.current().size > 1
    return getattr(err, "agreed", False) or isinstance(err, TrainingFailed | Interrupted) or (
        not met and isinstance(err, NnrunError | HydraException | OmegaConfBaseException))


def wait_for_rank_0(status: int, most_s: float = 10.0) -> int:
    """On a rank other than 0, after an error rank 0 reports: give rank 0 time to say it before
    this process ends. torchrun stops every process of a run as soon as one fails, so a rank
    ending first would cut rank 0 off before its line; rank 0 ending first has torchrun stop
    this one instead (at most `most_s` here, should rank 0 not end)."""
    time.sleep(most_s)
    return status


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


def config_groups() -> list[str]:
    """nnrun's config groups (`model`, `data`, ..., `experiment`), Hydra's own (`hydra/...`)
    aside."""
    root = Path(files("nnrun.conf"))
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and p.name != "hydra" and not p.name.startswith(("_", ".")))


# ---- finding presets: --help, --list, tab completion ----------------------------------------
# Hydra names a folder inside a group as a group of its own (`experiment/dlfs: ch4_mse`) in its
# help and its tab completion, a form that does not run (`experiment/dlfs=ch4_mse` is refused);
# what runs is the option with its folder, `experiment=dlfs/ch4_mse`. These show that form.


def wrapped(words: list[str], indent: str = "  ") -> str:
    """`words` in lines of at most 100 columns, never broken inside a word."""
    return textwrap.fill("  ".join(words), 100, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def help_groups() -> str:
    """The config groups and their options, for `nnrun --help` (conf/config.yaml's
    `hydra.help.template` calls this as `${nnrun.groups:}`): each group on its lines, then the
    presets as they run, one document a paragraph."""
    lines = []
    for group in config_groups():
        if group != "experiment":
            lines += [f"{group}:", wrapped(group_options(group))]
    lines.append("experiment (the presets; `nnrun --list experiments` says what each reproduces):")
    for _, presets in by_document(group_options("experiment")).items():
        lines.append(wrapped([f"experiment={p}" for p in presets]))
    return "\n".join(lines)


def by_document(presets: list[str]) -> dict[str, list[str]]:
    """Presets by the folder they live in, `experiments/<doc>/<id>.yaml`: their document."""
    documents: dict[str, list[str]] = {}
    for preset in presets:
        documents.setdefault(preset.rpartition("/")[0], []).append(preset)
    return documents


def document_title(preset: str) -> str | None:
    """The document a preset reproduces, as its header names it in its first comment line, up to
    the first closing bracket (`Deep Learning from Scratch (Weidman)`); None if it names none
    that way (nnrun's own examples)."""
    path = Path(files("nnrun.conf") / "experiment" / f"{preset}.yaml")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            title = re.match(r"#\s*(.+?\))[,:]", line)
            return title[1] if title else None
    return None


def targets_text(preset: str) -> str:
    """The numbers a preset reproduces (its `expected:` targets: metric, value ± tolerance), read
    from its file alone: nothing is composed and torch is not imported."""
    node = OmegaConf.load(Path(files("nnrun.conf") / "experiment" / f"{preset}.yaml"))
    targets = node.get("expected") or []
    return "; ".join(f"{t.metric} {t.value:g} ±{t.tolerance:g}" for t in targets) or \
        "no number to reproduce: records its metrics"


def list_experiments() -> list[str]:
    """`nnrun --list experiments`: each document's title, then one line per preset of it, the
    preset as it runs and the numbers it reproduces."""
    every = group_options("experiment")
    width = max(len(p) for p in every) + len("experiment=")
    lines = []
    for document, presets in by_document(every).items():
        title = next(filter(None, map(document_title, presets)), None)
        lines.append(f"{document}: {title}" if title else f"{document}:")
        lines += [f"  {'experiment=' + p:<{width}}  {targets_text(p)}" for p in presets]
    return lines


LISTS = {"experiments": list_experiments}


def list_command(args: list[str]) -> int:
    """`nnrun --list <what>`: print the list, exit 0; a word that is not one of `LISTS` is one
    line on stderr naming them, exit 2 (handled before Hydra, which knows no --list)."""
    if len(args) != 1 or args[0] not in LISTS:
        given = f" {' '.join(args)}" if args else ""
        print(f"nnrun: error: --list{given}: choose one of: {', '.join(LISTS)}, e.g. nnrun "
              "--list experiments", file=sys.stderr)
        return 2
    try:
        print("\n".join(LISTS[args[0]]()), flush=True)
    except BrokenPipeError:  # `nnrun --list experiments | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return 0


def completion_query(argv: list[str]) -> bool:
    """A tab-completion query from Hydra's shell script (`nnrun -sc query=bash`, the line typed
    so far in COMP_LINE)."""
    return bool({"-sc", "--shell-completion"} & set(argv)) and any(
        a.startswith("query=") for a in argv)


def complete(offered: list[str], line: str) -> list[str]:
    """Hydra's completions of the last word of `line`, with nested options in the form that
    runs: for `experiment=dl`, `experiment=dlfs/ch2_linreg_boston` ... (Hydra lists only a
    group's top-level files, and offers none); and `experiment=` where Hydra offers the folder
    forms `experiment/`, `experiment/dlfs=`, which do not run."""
    word = "" if not line or line[-1].isspace() else line.split()[-1]
    sign = word[:len(word) - len(word.lstrip("+~"))]
    key, eq, partial = word[len(sign):].partition("=")
    words = set(offered)
    for group in config_groups():
        options = group_options(group)
        if not any("/" in option for option in options):
            continue
        folder_forms = {w for w in words if w.lstrip("+~").startswith(f"{group}/")}
        words -= folder_forms
        if folder_forms:
            words.add(f"{sign}{group}=")
        if eq and key == group:
            words |= {f"{sign}{group}={o}" for o in options if o.startswith(partial)}
    return sorted(words)


def completion_command() -> int:
    """Hydra answers the completion query; `complete` corrects its answer for nested options,
    printed the way Hydra prints it (words on one line, or one a line for fish)."""
    answer = io.StringIO()
    with contextlib.redirect_stdout(answer):
        job()
    text = answer.getvalue().strip()
    sep = "\n" if "\n" in text or "query=fish" in sys.argv else " "
    print(sep.join(complete(text.split(), os.environ.get("COMP_LINE", ""))))
    return 0


def one_line(err: Exception) -> str:
    """Hydra's multi-line messages, folded to one line that ends with what to do."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    missing = getattr(err, "missing_cfg_file", None) or ""
    if isinstance(err, MissingConfigException) and "/" in missing:
        options = err.options or group_options(missing.split("/")[0])  # Hydra lists no nested ones
        if options:
            return f"{lines[0]}; choose one of: {', '.join(options)}"
    return "; ".join(line for line in lines if not line.startswith("Set the environment"))


def import_from_here() -> None:
    """Put the folder the command runs in first on `sys.path`, as `python -m nnrun` does, so
    that a user's own `_target_: mynet.Net` imports mynet.py from there. The console script
    alone would not: Python puts the script's own folder (the environment's bin/) there instead.
    Only this folder, not a `--config-dir`'s: one rule, the one `python -m` and notebooks
    follow; code kept elsewhere is reached through PYTHONPATH."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)


def command() -> int:
    """The `nnrun` command in this process: Hydra composes, `run` trains, and an error a user
    can fix prints as one line. Returns the exit status: 0, 1 for a failed run or sweep, 2 for
    bad input."""
    if sys.argv[1:2] == ["--list"]:  # before Hydra, which would refuse the flag
        return list_command(sys.argv[2:])
    register()  # nnrun's launcher and sweeper
    OmegaConf.register_new_resolver("nnrun.groups", help_groups, replace=True)  # for --help
    import_from_here()  # a user's own `_target_: mynet.Net` beside them
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing them
    # PyG (Cora, GCN) calls torch.jit.script as it is imported: a warning no user can act on
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    try:
        try:
            if completion_query(sys.argv[1:]):
                return completion_command()
            job()
        except PastHydra as carried:
            raise carried.error from None
    except (Interrupted, SweepInterrupted) as err:
        if said_by_rank_0(err):
            return wait_for_rank_0(err.exit_code)
        print(f"nnrun: {err}", file=sys.stderr)
        return err.exit_code
    except (NnrunError, HydraException, OmegaConfBaseException) as err:
        if full_error:
            raise
        status = err.exit_code if isinstance(err, NnrunError) else 2
        if said_by_rank_0(err):
            return wait_for_rank_0(status)
        print(f"nnrun: error: {one_line(err)}", file=sys.stderr)
        return status
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
