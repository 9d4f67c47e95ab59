"""Hydra callbacks (configured in conf/config.yaml): guard earlier runs, summarise sweeps.

No torch here: Hydra builds these for every command, `nnrun --cfg job` included.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nnrun.errors import ConfigError, NnrunError, PastHydra, SweepFailed
from nnrun.launch import launch_env
from nnrun.rundir import cannot_create, note_new_dirs

if TYPE_CHECKING:
    from rich.table import Table


class RunDirGuard(Callback):
    """Note which folders of a run directory do not exist yet, before Hydra creates them, so
    that a start refused for bad input removes them again (`nnrun.rundir`); refuse a sweep into
    a directory that already holds one. Whether a run directory may be written is decided under
    its lock, in `nnrun.rundir.RunDir`."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        launch = this_launch()
        run_dir = Path(config.hydra.run.dir)
        if launch is not None:  # one rank of a torchrun run: rank 0 chooses the directory
            from nnrun import parallel  # torch: only for a run that is starting

            if launch.main:  # before the others hear of it: their Hydra creates it too
                note_new_dirs(Path(os.path.abspath(run_dir)))
            try:
                group = parallel.start(launch, config.trainer.collective_timeout_s)
            except NnrunError as err:
                raise PastHydra(err) from None
            run_dir = Path(group.agree_run_dir(os.path.abspath(run_dir)))
            with read_write(config), open_dict(config):
                config.hydra.run.dir = str(run_dir)  # what Hydra creates and runs the job in
            if not group.main:  # rank 0 creates it; a folder it cannot, none can
                blocked = unwritable(run_dir)
                if blocked is not None:
                    raise PastHydra(ConfigError(cannot_create(run_dir, blocked)))
                return
        note_new_dirs(run_dir)
        try:  # here rather than in Hydra, which would fail with a traceback
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PastHydra(ConfigError(cannot_create(run_dir, err))) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a sweep into a directory that holds one, unless it finishes that sweep
        (`trainer.resume=auto`), and a sweep directory that cannot be created; create nothing
        (the launcher creates the directory when it starts the first job, after the sweeper
        has checked its own settings)."""
        launch = this_launch()
        if launch is not None:
            raise PastHydra(ConfigError(
                "nnrun -m under torchrun: each process would run the whole sweep; run the sweep "
                "without torchrun, its jobs data-parallel on SLURM (hydra/launcher=slurm with "
                "hydra.launcher.tasks_per_node=N, README \"Many processes and machines\"), or "
                "start one torchrun per job"))
        sweep_dir = Path(config.hydra.sweep.dir)
        if holds_sweep(sweep_dir) and OmegaConf.select(config, "trainer.resume") != "auto":
            raise PastHydra(ConfigError(
                f"hydra.sweep.dir={sweep_dir} already holds a sweep; finish it with the same "
                "command plus trainer.resume=auto, or choose another hydra.sweep.dir"))
        blocked = unwritable(sweep_dir)
        if blocked is not None:
            raise PastHydra(ConfigError(cannot_create(sweep_dir, blocked, "hydra.sweep.dir")))


def this_launch() -> Any:
    """`launch.launch_env()`, its refusal of a half-configured launch carried past Hydra."""
    try:
        return launch_env()
    except NnrunError as err:
        raise PastHydra(err) from None


def holds_sweep(sweep_dir: Path) -> bool:
    """Whether `sweep_dir` holds (part of) a sweep: its summary, or a job's directory."""
    return sweep_dir.is_dir() and any(
        p.name == "summary.csv" or p.is_dir() and p.name.isdigit() for p in sweep_dir.iterdir())


def unwritable(path: Path) -> OSError | None:
    """Why `path` could not be created as a folder (or used, if it exists), without creating
    it: its nearest existing ancestor is not a folder we may write. None if it can."""
    path = Path(os.path.abspath(path))
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            if not os.access(folder, os.W_OK | os.X_OK):
                return OSError(errno.EACCES, os.strerror(errno.EACCES))
            return None
    return None


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory: its number, overrides, status and final metrics."""
    rows = []
    job_dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    for job_dir in sorted(job_dirs, key=lambda p: int(p.name)):
        overrides = job_overrides(job_dir)
        metrics_file = job_dir / "metrics.json"
        metrics = (json.loads(metrics_file.read_text()) if metrics_file.exists()
                   else {"status": "failed", "error": "no metrics.json (the job crashed)"})
        rows.append({"job": int(job_dir.name), "overrides": " ".join(what_it_is(overrides)),
                     **metrics})
    return rows


def what_it_is(overrides: list[str]) -> list[str]:
    """A job's overrides without `trainer.resume`, which says how a job was started, not what
    it is: a resumed sweep's jobs are the same jobs as before."""
    return [o for o in overrides if not o.lstrip("+~").startswith("trainer.resume=")]


def job_overrides(job_dir: Path) -> list[str]:
    """The overrides Hydra recorded for a job (`optimizer.lr=0.01`); [] if none are recorded."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_tables(rows: list[dict[str, Any]]) -> tuple[list[str], str, str]:
    """Columns, CSV text and Markdown text of the sweep summary."""
    first = ["job", "overrides", "status"]
    metrics = sorted({k for row in rows for k in row if "/" in k})
    columns = first + metrics + ["epochs", "steps", "wall_s", "error"]
    columns = [c for c in columns if any(c in row for row in rows)]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = (_cell(row.get(c, "")).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return columns, text.getvalue(), "\n".join(lines) + "\n"


# The console's sweep table is at most this wide, whatever the terminal: it is read at a glance,
# and summary.md holds every column.
TABLE_WIDTH = 100
OVERRIDE_WIDTH = 30  # the most of an override's value the table shows before "…"
ERROR_WIDTH = 20  # the least of an error it shows
METRIC_ORDER = ("best", "val", "test", "train")


def varying(overrides: list[list[str]]) -> dict[str, list[str]]:
    """The overrides that differ between jobs, given each job's: key -> each job's value ("" for
    a job without it), in the order the keys first appear."""
    jobs = [{key: value for key, _, value in (o.partition("=") for o in job)}
            for job in overrides]
    keys = dict.fromkeys(key for job in jobs for key in job)
    return {key: [job.get(key, "") for job in jobs] for key in keys
            if len({job.get(key) for job in jobs}) > 1}


def _metric_rank(name: str) -> tuple[int, str]:
    prefix = name.split("/", 1)[0]
    return (METRIC_ORDER.index(prefix) if prefix in METRIC_ORDER else len(METRIC_ORDER), name)


def console_table(rows: list[dict[str, Any]], overrides: list[list[str]],
                  width: int) -> tuple[Table, int]:
    """The sweep's table for the console, at most `width` columns wide: the job, the overrides
    that differ between jobs (the others are the same in every row), the status, as many final
    metrics as fit (`best/` first, then `val/`, `test/`, `train/`), and a failed job's error cut
    short with "…". A metric that does not fit is left out whole rather than folded: a number
    split over two lines misreads. Returns the rich Table and how many columns it left out.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    Column = tuple[str, list[str], int | None]  # header, a cell per job, the most it shows
    keys = [(key, values, OVERRIDE_WIDTH) for key, values in varying(overrides).items()]
    metrics = sorted({k for row in rows for k in row if "/" in k}, key=_metric_rank)
    wanted: list[Column] = keys + [(m, [_cell(row.get(m, "")) for row in rows], None)
                                   for m in metrics]
    failed = any("error" in row for row in rows)

    def layout(shown: int, error_width: int = ERROR_WIDTH) -> Table:
        """The first `shown` wanted columns in their places, as a rich Table."""
        columns: list[Column] = [
            ("job", [str(row["job"]) for row in rows], None), *wanted[:min(shown, len(keys))],
            ("status", [row["status"] for row in rows], None), *wanted[len(keys):shown]]
        if failed:
            columns.append(("error", [row.get("error", "") for row in rows], error_width))
        table = Table()
        for header, _, most in columns:
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=most)
        for cells in zip(*(cells for _, cells, _ in columns), strict=True):
            table.add_row(*(Text(" ".join(cell.split())) for cell in cells))  # not as markup
        return table

    unlimited = Console(width=10_000)

    def natural(table: Table) -> int:
        return unlimited.measure(table).maximum

    shown = 0
    while shown < len(wanted) and natural(layout(shown + 1)) <= width:
        shown += 1
    room = max(width - natural(layout(shown)), 0)  # what is left goes to the error
    return layout(shown, ERROR_WIDTH + room), len(wanted) - shown


class SweepSummary(Callback):
    """After a sweep: summary.csv and summary.md in the sweep directory, the part of that table
    that fits 100 columns on the console (`console_table`), and a non-zero exit if any job
    failed (a PastHydra, as in RunDirGuard)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from nnrun.console import console

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = read_jobs(sweep_dir)
        _, csv_text, md_text = summary_tables(rows)
        (sweep_dir / "summary.csv").write_text(csv_text)
        (sweep_dir / "summary.md").write_text(md_text)
        overrides = [what_it_is(job_overrides(sweep_dir / str(row["job"]))) for row in rows]
        table, left_out = console_table(rows, overrides, min(TABLE_WIDTH, console.width))
        console.print(table)
        note = f" ({left_out} columns left out here)" if left_out else ""
        console.print(f"full table: {sweep_dir / 'summary.md'}{note}", soft_wrap=True,
                      markup=False, highlight=False)
        failed = [row["job"] for row in rows if row["status"] == "failed"]
        if failed:
            raise PastHydra(SweepFailed(f"{len(failed)} of {len(rows)} jobs failed (jobs "
                                        f"{', '.join(map(str, failed))}); see "
                                        f"{sweep_dir / 'summary.md'}"))
