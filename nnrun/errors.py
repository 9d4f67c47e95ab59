"""Errors a user can fix: the command line prints them as one line and exits with `exit_code`."""

import signal
from typing import Any

# The graph options need an optional part of nnrun; their one line when it is not installed.
GRAPH_EXTRA = ("{what} needs PyTorch Geometric, which the default install leaves out; install "
               "nnrun's graph extra: pip install 'nnrun[graph]' (in a checkout: pip install -e "
               "'.[graph]')")


class NnrunError(Exception):
    """Base class: the message names the key or file and what to do. Bad input exits 2."""

    exit_code = 2


class ConfigError(NnrunError):
    """A configuration value is wrong or impossible."""


class SweepChanged(ConfigError):
    """A resumed sweep's job was started earlier with another config: the command is not the
    sweep's, and the whole sweep is refused."""


class DataError(NnrunError):
    """A dataset cannot be found or read."""


class CheckpointError(NnrunError):
    """A checkpoint is missing, unreadable, or belongs to another run."""


class TrainingFailed(NnrunError):
    """Training stopped on a non-finite loss; the last good checkpoint is kept."""

    exit_code = 1


class StorageFailed(NnrunError):
    """A file of the run could not be written: the disk is full, or the folder not writable."""

    exit_code = 1


class Interrupted(NnrunError):
    """A signal stopped the run at a step boundary; last.pt and metrics.json record where. Exits
    as a shell reports the signal: 130 for Ctrl-C, 143 for SIGTERM, and 143 for SIGUSR1 and
    SIGUSR2 too (a cluster's notice before its time limit: the system ending the job, as
    SIGTERM does)."""

    def __init__(self, signum: int, step: int, run_dir: object) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at step {step}; saved {run_dir}/checkpoints/"
                         f"last.pt. Continue with the same command plus "
                         f"hydra.run.dir={run_dir} trainer.resume=auto")
        self.signum = signum
        self.exit_code = 130 if signum == signal.SIGINT else 143


class SweepInterrupted(NnrunError):
    """A signal stopped a sweep: its running jobs saved a checkpoint at their step. Exits as
    `Interrupted` does. `hydra` is the sweep's Hydra config: how to go on depends on its
    sweeper (a grid finishes in its directory; a search continues from its storage)."""

    def __init__(self, signum: int, hydra: Any) -> None:
        name = signal.Signals(signum).name
        if "optuna" in str(hydra.sweeper._target_).lower():
            how = ("continue the search with the same command and hydra.sweeper.storage (a "
                   "study kept in memory is lost)")
        else:
            how = (f"finish it with the same command plus hydra.sweep.dir={hydra.sweep.dir} "
                   "trainer.resume=auto")
        super().__init__(f"sweep interrupted by {name}; its running jobs saved a checkpoint. "
                         f"{how[0].upper()}{how[1:]}")
        self.signum = signum
        self.exit_code = 130 if signum == signal.SIGINT else 143


class SweepFailed(NnrunError):
    """One or more jobs of a sweep failed; the others ran."""

    exit_code = 1


class PastHydra(BaseException):
    """Carries an NnrunError from a callback or a single run to `cli.command`. Hydra 1.3 catches
    an Exception there and only warns (callbacks: the run goes on) or prints an extra line
    (jobs); a BaseException passes through both."""

    def __init__(self, error: NnrunError) -> None:
        super().__init__(error)
        self.error = error
