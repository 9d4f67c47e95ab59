"""`nnrun -m` through the real command line: a grid, a sweep with failing jobs, the parallel
joblib launcher, the summary each leaves (summary.csv, summary.md, the console table), and the
sweep in a real TensorBoard."""

from __future__ import annotations

import csv
import json
import re
from itertools import product
from pathlib import Path

import pytest
from tensorboard.plugins.hparams import api_pb2, metadata

from tests.helpers import TINY_SINE, get_json, hparams_data, nnrun, tensorboard_server

TINY = [o for o in TINY_SINE if not o.startswith("model.hidden_size=")]
METRICS = ["train/loss", "val/loss", "val/mse", "val/mae", "val/rmse", "val/r2", "best/val/loss"]
# the console table's metrics, in the order it shows them while they fit
SHOWN_FIRST = ["best/val/loss", "val/loss", "val/mae", "val/mse", "val/r2", "val/rmse",
               "train/loss"]
WIDE = {"COLUMNS": "400"}  # a terminal this wide still gets a table of at most 100 columns


def read_summary(sweep_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def table_lines(stdout: str) -> list[str]:
    """The lines of the rich table printed on the console, colours removed."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in stdout.splitlines()]
    return [line for line in lines if line[:1] in ("┏", "┃", "┡", "│", "└")]


def console_table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the rich table printed on the console: a row is one line, so a cell
    folded onto a second line shows as an extra row."""
    lines = table_lines(stdout)
    header = [[c.strip() for c in line.strip().strip("┃").split("┃")] for line in lines
              if line.startswith("┃")]
    rows = [[c.strip() for c in line.strip().strip("│").split("│")] for line in lines
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
            assert list((job_dir / "tb").glob("*/events.out.tfevents.*")), job_dir
            assert not list((job_dir / "tb").glob("events.*"))  # in a folder named for the job
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


def test_the_console_table_fits_100_columns_and_shows_what_varies(grid):
    """Under a 400-column terminal: the job, the two overrides the grid varies (not the TINY
    ones every job shares), the status and as many metrics as fit in 100 columns, best first,
    each row on one line; then where the full table is."""
    result, sweep_dir = grid
    _, rows = read_summary(sweep_dir)
    lines = table_lines(result.stdout)
    assert lines and all(len(line) <= 100 for line in lines), "\n".join(lines)

    header, table = console_table(result.stdout)
    assert header[:4] == ["job", "optimizer.lr", "model.hidden_size", "status"]
    metrics = header[4:]
    assert metrics and metrics == SHOWN_FIRST[:len(metrics)]  # no other column, no error
    assert len(table) == len(rows)  # one line a job: no cell folded
    for cells, row in zip(table, rows, strict=True):
        given = dict(o.split("=", 1) for o in row["overrides"].split())
        assert cells[:4] == [row["job"], given["optimizer.lr"], given["model.hidden_size"],
                             "completed"]
        for column, cell in zip(metrics, cells[4:], strict=True):
            assert float(cell) == pytest.approx(float(row[column]), rel=1e-5), column

    left_out = len(SHOWN_FIRST) - len(metrics)
    note = f" ({left_out} columns left out here)" if left_out else ""
    assert f"full table: {sweep_dir / 'summary.md'}{note}" in result.stdout.splitlines()


def test_tensorboard_names_each_job_by_its_overrides_and_compares_them(grid, tmp_path):
    """The real `tensorboard` over the sweep directory: a run per job named by its overrides
    (less those a resume may change, `trainer.*` here), and an HPARAMS row per job holding the
    keys its command line set and `seed`, as numbers, text and bools, with its final metrics."""
    _, sweep_dir = grid
    _, rows = read_summary(sweep_dir)
    given = {row["job"]: dict(o.split("=", 1) for o in row["overrides"].split()) for row in rows}
    names = {f"{job}/tb/data.n_points=200,data.window=8,optimizer.lr={o['optimizer.lr']},"
             f"model.hidden_size={o['model.hidden_size']}": job for job, o in given.items()}
    text = ["data.n_points", "data.window", "trainer.epochs", "model.hidden_size", "seed"]
    scalars = [m for m in METRICS if not m.startswith("best/")]  # best/ is in metrics.json only
    request = {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS"],
               "colParams": [{"hparam": "optimizer.lr"}, *({"hparam": k} for k in text),
                             *({"metric": {"tag": m}} for m in scalars)],
               "startIndex": 0, "sliceSize": 10}

    def groups(base: str) -> list[dict]:
        return get_json(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]

    def ready(base: str) -> bool:
        found = groups(base)
        return len(found) == len(rows) and all(
            {m["name"]["tag"] for m in g["metricValues"]} >= set(scalars) for g in found)

    with tensorboard_server(sweep_dir, tmp_path / "tensorboard.log", ready) as base:
        assert sorted(get_json(f"{base}/data/runs")) == sorted(names)
        experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        found = groups(base)

    # the override keys and seed, nothing else (no `_target_`, no data.root), typed
    types = {info["name"]: info["type"] for info in experiment["hparamInfos"]}
    assert types == {"optimizer.lr": "DATA_TYPE_FLOAT64", "trainer.progress": "DATA_TYPE_BOOL",
                     **dict.fromkeys(text, "DATA_TYPE_STRING")}
    assert sorted(group["name"] for group in found) == sorted(names)  # one group a job
    by_job = {row["job"]: row for row in rows}
    for group in found:
        job = names[group["name"]]
        assert group["hparams"] == {
            "optimizer.lr": float(given[job]["optimizer.lr"]),  # 0.01, 0.1
            "model.hidden_size": given[job]["model.hidden_size"],  # "4", "8": ints as text
            "data.n_points": "200", "data.window": "8", "trainer.epochs": "2",
            "trainer.progress": False, "seed": "0"}
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        for key in scalars:  # float32 in the event file
            assert values[key] == pytest.approx(float(by_job[job][key]), rel=1e-6), key


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
    (nan_run,) = (sweep_dir / "2" / "tb").iterdir()  # TensorBoard shows how each run ended
    ended = hparams_data(nan_run)[metadata.SESSION_END_INFO_TAG].session_end_info.status
    assert ended == api_pb2.Status.STATUS_FAILURE
    check_job_dirs(sweep_dir, rows)

    md = (sweep_dir / "summary.md").read_text()
    assert md.count("| failed |") == 2 and md.count("| completed |") == 1
    assert all(len(line) <= 100 for line in table_lines(result.stdout))
    header, table = console_table(result.stdout)
    assert header[:3] == ["job", "optimizer.lr", "status"] and header[-1] == "error"
    assert [cells[:3] for cells in table] == [  # Hydra writes 1e12 out
        ["0", "0.01", "completed"], ["1", "-1", "failed"], ["2", "1000000000000.0", "failed"]]
    assert table[0][-1] == ""
    for cells, row in zip(table[1:], rows[1:], strict=True):  # the error's start, or all of it
        assert cells[-1] == row["error"] or (
            cells[-1].endswith("…") and row["error"].startswith(cells[-1][:-1])), cells[-1]

    # Finishing the sweep: the completed job stands, the failed ones run again (and fail again)
    kept = (sweep_dir / "0" / "metrics.json").read_bytes()
    failed_at = {job: (sweep_dir / job / "metrics.json").stat().st_mtime_ns for job in "12"}
    again = nnrun("-m", *TINY_SINE, "optimizer=sgd", "optimizer.lr=0.01,-1,1e12",
                  f"hydra.sweep.dir={sweep_dir}", "trainer.resume=auto", cwd=tmp_path, env=WIDE)
    assert again.returncode == 1, again.stderr
    assert "nnrun: job 0 completed in an earlier start of the sweep" in again.stdout
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == kept
    assert len(json.loads((sweep_dir / "0" / "run.json").read_text())["starts"]) == 1
    for job in "12":
        assert (sweep_dir / job / "metrics.json").stat().st_mtime_ns > failed_at[job], job
    assert len(json.loads((sweep_dir / "2" / "run.json").read_text())["starts"]) == 2
    _, rows_again = read_summary(sweep_dir)
    assert [(r["job"], r["status"], r["error"]) for r in rows_again] == [
        (r["job"], r["status"], r["error"]) for r in rows]


def test_joblib_launcher_runs_jobs_side_by_side_with_the_same_summary(grid, tmp_path):
    _, grid_dir = grid
    sweep_dir = tmp_path / "sweep"
    result = nnrun("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                   "optimizer.lr=0.01,0.1", "model.hidden_size=8",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=WIDE)
    assert result.returncode == 0, result.stderr
    assert "Launching 2 jobs, 2 at a time in their own processes" in result.stdout

    columns, rows = read_summary(sweep_dir)
    assert [(row["job"], row["status"]) for row in rows] == [("0", "completed"), ("1", "completed")]
    check_job_dirs(sweep_dir, rows)
    # each job in its own worker process: the event file names end in `.<pid>.<n>`
    pids = {next((sweep_dir / row["job"] / "tb").glob("*/events.*")).name.split(".")[-2]
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

    header, table = console_table(result.stdout)  # hidden_size=8 in both: not a column
    assert header[:3] == ["job", "optimizer.lr", "status"]
    assert [cells[:3] for cells in table] == [["0", "0.01", "completed"], ["1", "0.1", "completed"]]
