"""The run directory: one writer at a time, a record of what produced it, and nothing left behind
by a start that is refused.

    with RunDir(path) as run_dir:   # locks the directory, or refuses naming the holder
        ...checks that may refuse...
        run_dir.record(...)         # the point of no return: .hydra/ and run.json are written
        ...training...

The lock is `flock` on the directory itself: the kernel drops it when the holder's process ends,
however it ends, so a killed run never leaves a directory locked. The holder's pid, host and
start time go to `.lock` beside it, only to name the holder in the refusal.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nnrun.errors import ConfigError

HOLDER = ".lock"
RECORD = "run.json"

# Directories Hydra is about to create for a run (filled by callbacks.RunDirGuard before it
# does): run directory -> its topmost ancestor that did not exist yet. A refused start removes
# them again, so that it leaves no folder behind.
NEW_DIRS: dict[Path, Path] = {}


def note_new_dirs(path: Path) -> None:
    """Remember which folders up to `path` do not exist yet, before anything creates them."""
    path = Path(os.path.abspath(path))
    top = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        top = folder
    if top is not None:
        NEW_DIRS[path] = top


def cannot_create(path: Path, err: OSError, key: str = "hydra.run.dir") -> str:
    return (f"{key}={path} cannot be created ({err.strerror}); choose a folder you can write, "
            f"e.g. {key}=runs/a")


class RunDir:
    """A run directory held exclusively for the life of a `with` block. A directory that holds
    an earlier run is refused unless the start is `resuming` it.

    On leaving the block by an exception before `record` (a refused start), everything this
    start made is removed again: its holder file, and the folders that did not exist before it.
    """

    def __init__(self, path: Path, resuming: bool) -> None:
        self.path = Path(os.path.abspath(path))
        self.resuming = resuming
        self.recorded = False
        self._fd: int | None = None

    def __enter__(self) -> RunDir:
        note_new_dirs(self.path)
        self._new_top = NEW_DIRS.pop(self.path, None)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(cannot_create(self.path, err)) from None
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise ConfigError(f"hydra.run.dir={self.path} is in use by another nnrun run "
                              f"({self._holder()}); wait for it to end, or choose another "
                              "directory") from None
        taken = self.holds_run()
        if taken and not self.resuming:
            self._release(refused=True)
            raise ConfigError(f"hydra.run.dir={self.path} already holds a run ({taken}); pass "
                              "trainer.resume=auto to continue it, or choose another directory")
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": timestamp()}
            (self.path / HOLDER).write_text(json.dumps(holder) + "\n")
            for leftover in [*self.path.glob(".*.tmp"), *self.path.glob("checkpoints/.*.tmp"),
                             *self.path.glob("checkpoints/.*.link")]:
                leftover.unlink(missing_ok=True)  # from a write that a kill interrupted
        except BaseException:
            self._release(refused=True)
            raise
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> None:
        self._release(refused=kind is not None and not self.recorded)

    def _holder(self) -> str:
        try:
            holder = json.loads((self.path / HOLDER).read_text())
            return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its pid is not recorded yet"

    def _release(self, refused: bool) -> None:
        (self.path / HOLDER).unlink(missing_ok=True)
        if refused and self._new_top is not None:  # remove the folders this start made
            for folder in (self.path, *self.path.parents):
                try:
                    folder.rmdir()  # only if empty: a refused start writes nothing else
                except OSError:
                    break
                if folder == self._new_top:
                    break
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def holds_run(self) -> str | None:
        """The file that shows an earlier run lives here, if any."""
        for name in ("checkpoints/last.pt", "metrics.json"):
            if (self.path / name).exists():
                return name
        return None

    def record(self, start: dict[str, Any], hydra_record: dict[str, Any] | None) -> None:
        """Write what produced this start: Hydra's record of the config (`.hydra/`, on the first
        start only; later starts keep it) and one entry in `run.json`'s list of starts."""
        from nnrun.checkpoint import write_json  # torch: only once a run really starts

        self.recorded = True
        if hydra_record and not (self.path / ".hydra").exists():
            write_hydra_record(self.path, hydra_record)
        path = self.path / RECORD
        starts = json.loads(path.read_text())["starts"] if path.exists() else []
        write_json({"starts": [*starts, start]}, path)


def write_hydra_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Hydra's record of a job (`run.hydra_record`) as Hydra writes it, in `run_dir/.hydra/`."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    for name, node in record.items():
        OmegaConf.save(node, run_dir / ".hydra" / name)


def record_failure(run_dir: Path, error: str, record: dict[str, Any]) -> None:
    """A sweep's job that failed without recording it (before training, or its process died):
    `metrics.json` says `failed` with `error`, for the sweep's summary; Hydra's `record` of the
    job (`.hydra/`) is written if the job had not written its own."""
    from nnrun.checkpoint import write_json

    if not (run_dir / ".hydra").exists():
        write_hydra_record(run_dir, record)
    write_json({"status": "failed", "error": error}, run_dir / "metrics.json")


def timestamp() -> str:
    """Now, in local time with its offset, to the second (ISO 8601)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def source_commit() -> str | None:
    """The git commit nnrun is imported from, with a note on uncommitted changes; None when
    nnrun is not imported from a git checkout of its own (an installed wheel)."""
    source = Path(__file__).resolve().parents[1]
    if not (source / ".git").exists():
        return None

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return None
    changed = git("status", "--porcelain").stdout.splitlines()
    if not changed:
        return f"{head.stdout.strip()}, clean tree"
    return (f"{head.stdout.strip()}, **uncommitted changes** in {len(changed)} file(s): "
            + ", ".join(line[3:] for line in changed[:5]) + (" ..." if len(changed) > 5 else ""))


# How a start was asked for when not from the command line: `nnrun.train` sets its call here,
# since `sys.argv` is then the host's (a notebook kernel's own arguments, `-f kernel.json`).
CALLED_AS: ContextVar[str | None] = ContextVar("nnrun_called_as", default=None)


def command_line() -> str:
    """The command line this process was started with, as a shell would take it."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def provenance(device: Any, seed: int) -> dict[str, Any]:
    """What a start of a run was made of: versions, the device really used, threads, seed,
    host, command line and time."""
    import torch

    record: dict[str, Any] = {
        "started": timestamp(), "command": CALLED_AS.get() or command_line(),
        "nnrun": metadata.version("nnrun"), "source": source_commit(),
        "python": platform.python_version(), "torch": torch.__version__,
        "device": str(device), "threads": torch.get_num_threads(), "seed": seed,
        "host": socket.gethostname(), "platform": platform.platform(),
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["device_name"] = torch.cuda.get_device_name(device)
    return record
