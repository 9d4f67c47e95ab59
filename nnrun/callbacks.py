"""Hydra callbacks (configured in conf/config.yaml): guard earlier runs, summarise sweeps.

No torch here: Hydra builds these for every command, `nnrun --cfg job` included.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnrun.errors import ConfigError, PastHydra, SweepFailed
from nnrun.rundir import cannot_create, note_new_dirs


class RunDirGuard(Callback):
    """Note which folders of a run directory do not exist yet, before Hydra creates them, so
    that a start refused for bad input removes them again (`nnrun.rundir`); refuse a sweep into
    a directory that already holds one. Whether a run directory may be written is decided under
    its lock, in `nnrun.rundir.RunDir`."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        note_new_dirs(run_dir)
        try:  # here rather than in Hydra, which would fail with a traceback
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PastHydra(ConfigError(cannot_create(run_dir, err))) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PastHydra(ConfigError(cannot_create(sweep_dir, err, "hydra.sweep.dir"))) from None
        if (sweep_dir / "summary.csv").exists():
            raise PastHydra(ConfigError(
                f"hydra.sweep.dir={sweep_dir} already holds a sweep; choose another"))


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory: its number, overrides, status and final metrics."""
    rows = []
    job_dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    for job_dir in sorted(job_dirs, key=lambda p: int(p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        metrics_file = job_dir / "metrics.json"
        metrics = (json.loads(metrics_file.read_text()) if metrics_file.exists()
                   else {"status": "failed", "error": "no metrics.json (the job crashed)"})
        rows.append({"job": int(job_dir.name), "overrides": " ".join(overrides), **metrics})
    return rows


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


class SweepSummary(Callback):
    """After a sweep: summary.csv and summary.md in the sweep directory, the same table on the
    console, and a non-zero exit if any job failed (a PastHydra, as in RunDirGuard)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.table import Table

        from nnrun.console import console

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = read_jobs(sweep_dir)
        columns, csv_text, md_text = summary_tables(rows)
        (sweep_dir / "summary.csv").write_text(csv_text)
        (sweep_dir / "summary.md").write_text(md_text)
        table = Table(title=f"sweep {sweep_dir}")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(c, "")) for c in columns))
        console.print(table)
        failed = [row["job"] for row in rows if row["status"] == "failed"]
        if failed:
            raise PastHydra(SweepFailed(f"{len(failed)} of {len(rows)} jobs failed (jobs "
                                        f"{', '.join(map(str, failed))}); see "
                                        f"{sweep_dir / 'summary.md'}"))
