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
from omegaconf import DictConfig, OmegaConf, read_write

from nnrun.errors import ConfigError, PastHydra, SweepFailed


class RunDirGuard(Callback):
    """Protect a directory that already holds a run, before Hydra writes anything there.

    A fresh run is refused (continuing takes `trainer.resume=auto`; a PastHydra, because Hydra
    turns a callback's Exception into a warning and starts the run anyway). A resumed run keeps
    the `.hydra/` record of how the run was started: its own resolved config goes into its
    checkpoints, and a resume refused for bad input leaves the directory as it was.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        taken = [p for p in ("checkpoints/last.pt", "metrics.json") if (run_dir / p).exists()]
        if not taken:
            return
        if config.trainer.resume is None:
            raise PastHydra(ConfigError(
                f"hydra.run.dir={run_dir} already holds a run ({taken[0]}); pass "
                "trainer.resume=auto to continue it, or choose another directory"))
        with read_write(config.hydra):
            config.hydra.output_subdir = None  # Hydra then leaves .hydra/ alone

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
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
