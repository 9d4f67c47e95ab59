"""`nnrun -m` through the real command line: a grid, a sweep with failing jobs, the parallel
joblib launcher, and the summary each leaves (summary.csv, summary.md, the console table)."""

from __future__ import annotations

import csv
import json
import re
from itertools import product
from pathlib import Path

import pytest

from tests.helpers import TINY_SINE, nnrun

TINY = [o for o in TINY_SINE if not o.startswith("model.hidden_size=")]
METRICS = ["train/loss", "val/loss", "val/mse", "val/mae", "val/rmse", "val/r2", "best/val/loss"]
WIDE = {"COLUMNS": "400"}  # rich folds table cells to 80 columns when stdout is not a terminal


def read_summary(sweep_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def console_table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the rich table printed on the console."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in stdout.splitlines()]
    header = [[c.strip() for c in line.strip("┃").split("┃")] for line in lines
              if line.startswith("┃")]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines
            if line.startswith("│")]
    assert len(header) == 1, stdout
    return header[0], rows


def check_job_dirs(sweep_dir: Path, rows: list[dict[str, str]]) -> None:
    """Every completed job: metrics.json as in its summary row, and TensorBoard events."""
    for row in rows:
        job_dir = sweep_dir / row["job"]
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["status"] == row["status"]
        if row["status"] == "completed":
            assert list((job_dir / "tb").glob("events.out.tfevents.*")), job_dir
            for key in METRICS:
                assert float(row[key]) == metrics[key], (row["job"], key)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory):
    """`nnrun -m optimizer.lr=0.01,0.1 model.hidden_size=4,8`: four jobs, one process."""
    tmp = tmp_path_factory.mktemp("grid")
    sweep_dir = tmp / "sweep"
    result = nnrun("-m", *TINY, "optimizer.lr=0.01,0.1", "model.hidden_size=4,8",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp, env=WIDE)
    return result, sweep_dir


def test_grid_sweep_runs_every_job_and_summarises_them(grid):
    result, sweep_dir = grid
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]

    columns, rows = read_summary(sweep_dir)
    assert columns[:3] == ["job", "overrides", "status"]
    assert set(METRICS) | {"epochs", "steps", "wall_s"} <= set(columns)
    assert "error" not in columns  # no job failed
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"]
    combos = set()
    for row in rows:
        overrides = row["overrides"].split()
        assert {o.lower() for o in TINY} <= {o.lower() for o in overrides}  # Hydra: `False`
        lr = [o for o in overrides if o.startswith("optimizer.lr=")]
        size = [o for o in overrides if o.startswith("model.hidden_size=")]
        assert len(lr) == len(size) == 1, overrides
        combos.add((lr[0], size[0]))
        assert row["status"] == "completed"
        assert row["epochs"] == "2" and int(row["steps"]) > 2
        assert all(row[key] for key in METRICS)
    assert combos == set(product(["optimizer.lr=0.01", "optimizer.lr=0.1"],
                                 ["model.hidden_size=4", "model.hidden_size=8"]))
    check_job_dirs(sweep_dir, rows)

    md = (sweep_dir / "summary.md").read_text().splitlines()
    assert md[0] == "| " + " | ".join(columns) + " |"
    assert len(md) == 2 + len(rows)
    for line, row in zip(md[2:], rows, strict=True):
        assert line.startswith(f"| {row['job']} | {row['overrides']} | completed | ")

    header, table = console_table(result.stdout)  # the same table on the console
    assert f"sweep {sweep_dir}" in result.stdout
    assert header == columns
    assert len(table) == len(rows)
    for cells, row in zip(table, rows, strict=True):
        assert cells[:3] == [row["job"], row["overrides"], "completed"]
        for column, cell in zip(columns, cells, strict=True):
            if column in METRICS:
                assert float(cell) == pytest.approx(float(row[column]), rel=1e-5), column


def test_a_sweep_into_a_summarised_sweep_dir_is_refused(grid, tmp_path):
    _, sweep_dir = grid
    before = (sweep_dir / "summary.csv").read_text()
    result = nnrun("-m", *TINY, "optimizer.lr=0.01,0.1", f"hydra.sweep.dir={sweep_dir}",
                   cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnrun: error: "), result.stderr
    assert "already holds a sweep" in lines[0]
    assert (sweep_dir / "summary.csv").read_text() == before
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(tmp_path):
    """Job 1 is refused before training (lr < 0); job 2's loss becomes NaN (lr = 1e12)."""
    sweep_dir = tmp_path / "sweep"
    result = nnrun("-m", *TINY_SINE, "optimizer=sgd", "optimizer.lr=0.01,-1,1e12",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=WIDE)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("nnrun: error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    assert "2 of 3 jobs failed (jobs 1, 2)" in errors[0]
    assert str(sweep_dir / "summary.md") in errors[0]

    columns, rows = read_summary(sweep_dir)
    assert "error" in columns
    assert [(row["job"], row["status"]) for row in rows] == [
        ("0", "completed"), ("1", "failed"), ("2", "failed")]
    assert rows[0]["error"] == "" and all(rows[0][key] for key in METRICS)
    assert "optimizer.lr=-1" in rows[1]["error"]
    assert "NaN or infinite" in rows[2]["error"]
    for row in rows[1:]:
        assert all(row[key] == "" for key in METRICS), row
    assert not (sweep_dir / "1" / "tb").exists()  # refused before anything was written
    check_job_dirs(sweep_dir, rows)

    md = (sweep_dir / "summary.md").read_text()
    assert md.count("| failed |") == 2 and md.count("| completed |") == 1
    _, table = console_table(result.stdout)
    assert [cells[2] for cells in table] == ["completed", "failed", "failed"]


def test_joblib_launcher_runs_jobs_side_by_side_with_the_same_summary(grid, tmp_path):
    _, grid_dir = grid
    sweep_dir = tmp_path / "sweep"
    result = nnrun("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                   "optimizer.lr=0.01,0.1", "model.hidden_size=8",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=WIDE)
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout

    columns, rows = read_summary(sweep_dir)
    assert [(row["job"], row["status"]) for row in rows] == [("0", "completed"), ("1", "completed")]
    check_job_dirs(sweep_dir, rows)
    # each job in its own worker process: the event file names end in `.<pid>.<n>`
    pids = {next((sweep_dir / row["job"] / "tb").glob("events.*")).name.split(".")[-2]
            for row in rows}
    assert len(pids) == 2

    # the same jobs as in the one-process grid, with the same summary columns and results
    grid_columns, grid_rows = read_summary(grid_dir)
    assert columns == grid_columns
    by_overrides = {row["overrides"]: row for row in grid_rows}
    for row in rows:
        same = by_overrides[row["overrides"]]
        assert (row["epochs"], row["steps"]) == (same["epochs"], same["steps"])
        for key in METRICS:  # other processes, other thread counts: float rounding only
            assert float(row[key]) == pytest.approx(float(same[key]), rel=1e-4), key

    header, table = console_table(result.stdout)
    assert header == columns and [cells[:3] for cells in table] == [
        [row["job"], row["overrides"], "completed"] for row in rows]
