"""`nnrun -m hydra/sweeper=optuna` through the real command line: a study over a float, an int
and a choice with a value that fails, continued from its SQLite storage; the objective and its
direction; bad settings refused in one line before anything is written."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from tests.helpers import TINY_SINE, nnrun

TINY = [o for o in TINY_SINE if not o.startswith("model.hidden_size=")]
# optimizer.momentum=-1 is refused by torch.optim.SGD: its trials fail, the study goes on
SPACE = ["optimizer=sgd", "optimizer.momentum=choice(0, -1)",
         "optimizer.lr=tag(log, interval(1e-4, 1e-1))", "model.hidden_size=range(4, 9)"]


def search(tmp_path: Path, sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return nnrun("-m", "hydra/sweeper=optuna", *TINY, *args, f"hydra.sweep.dir={sweep_dir}",
                 cwd=tmp_path)


def summary(sweep_dir: Path) -> dict[str, dict[str, str]]:
    """summary.csv's rows by job directory."""
    with (sweep_dir / "summary.csv").open(newline="") as f:
        return {str(sweep_dir / row["job"]): row for row in csv.DictReader(f)}


def check_quiet(result: subprocess.CompletedProcess) -> None:
    """Only nnrun's own lines on stderr; no Optuna, SQLAlchemy or Alembic chatter anywhere."""
    assert all(line.startswith("nnrun: ") for line in result.stderr.splitlines()), result.stderr
    for noise in ("Traceback", "alembic", "sqlalchemy", "A new study created", "Trial "):
        assert noise not in result.stdout + result.stderr, noise


def check_trials(trials: list[optuna.trial.FrozenTrial], rows: dict[str, dict[str, str]],
                 objective: str) -> None:
    """Each trial is one job of the sweep: its sampled values are the job's overrides, and a
    trial failed exactly where its job failed; a completed trial's value is the job's metric."""
    assert sorted(t.user_attrs["run_dir"] for t in trials) == sorted(rows)
    for trial in trials:
        row = rows[trial.user_attrs["run_dir"]]
        assert row["overrides"].split() == trial.user_attrs["overrides"]
        lr, size, momentum = (trial.params[k] for k in (
            "optimizer.lr", "model.hidden_size", "optimizer.momentum"))
        assert 1e-4 <= lr <= 1e-1 and size in range(4, 9) and momentum in (0, -1)
        for override in (f"optimizer.lr={lr!r}", f"model.hidden_size={size}",
                         f"optimizer.momentum={momentum}"):
            assert override in trial.user_attrs["overrides"]
        failed = momentum == -1
        assert row["status"] == ("failed" if failed else "completed"), row
        assert trial.state == (optuna.trial.TrialState.FAIL if failed else
                               optuna.trial.TrialState.COMPLETE)
        if not failed:
            assert trial.value == float(row[objective])


def check_best(sweep_dir: Path, study: optuna.Study, objective: str, direction: str,
               storage: str | None, stdout: str) -> dict:
    """best.yaml names the study's best completed trial, as printed on the console."""
    best = OmegaConf.to_container(OmegaConf.load(sweep_dir / "best.yaml"))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pick = min if direction == "minimize" else max
    top = pick(done, key=lambda t: t.value)
    assert best == {"objective": objective, "direction": direction, "value": top.value,
                    "overrides": top.user_attrs["overrides"], "trial": top.number,
                    "run_dir": top.user_attrs["run_dir"], "study_name": "nnrun",
                    "storage": storage}
    assert f"nnrun: best trial {top.number} of study nnrun: {objective}=" in stdout
    assert f"nnrun: best overrides: {' '.join(top.user_attrs['overrides'])}" in stdout
    return best


def test_a_study_records_failed_trials_and_continues_from_its_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    settings = ["hydra.sweeper.n_trials=4", "hydra.sweeper.seed=2",  # seed 2: one -1 in four
                f"hydra.sweeper.storage={storage}"]
    first_dir = tmp_path / "first"
    first = search(tmp_path, first_dir, *settings, *SPACE)
    assert first.returncode == 1, first.stderr  # a job failed: the sweep summary says so
    check_quiet(first)
    assert "nnrun: error: " in first.stderr.splitlines()[-1]

    study = optuna.load_study(study_name="nnrun", storage=storage)
    assert len(study.trials) == 4 and [t.number for t in study.trials] == [0, 1, 2, 3]
    states = [t.state for t in study.trials]
    failed = states.count(optuna.trial.TrialState.FAIL)
    assert 1 <= failed < 4 and states.count(optuna.trial.TrialState.COMPLETE) == 4 - failed
    rows = summary(first_dir)
    assert [row["job"] for row in rows.values()] == ["0", "1", "2", "3"]
    assert sum(row["status"] == "failed" for row in rows.values()) == failed
    check_trials(study.trials, rows, "best/val/loss")
    best = check_best(first_dir, study, "best/val/loss", "minimize", storage, first.stdout)
    assert rows[best["run_dir"]]["overrides"].split() == best["overrides"]

    # The same command into a new sweep directory continues the study from its storage.
    second_dir = tmp_path / "second"
    second = search(tmp_path, second_dir, *settings, *SPACE)
    assert second.returncode in (0, 1), second.stderr
    check_quiet(second)
    study = optuna.load_study(study_name="nnrun", storage=storage)
    assert [t.number for t in study.trials] == list(range(8))
    check_trials(study.trials[4:], summary(second_dir), "best/val/loss")
    # the seed is offset by the trials already there: no sample of the first run is replayed
    assert not ({t.params["optimizer.lr"] for t in study.trials[:4]}
                & {t.params["optimizer.lr"] for t in study.trials[4:]})
    check_best(second_dir, study, "best/val/loss", "minimize", storage, second.stdout)


@pytest.mark.parametrize("mode, objective", [("min", "val/mse"), ("max", "val/r2")])
def test_the_objective_and_its_direction(tmp_path, mode, objective):
    """`objective` picks the result key each trial is judged by; trainer.mode its direction."""
    sweep_dir = tmp_path / "sweep"
    watch = [] if mode == "min" else ["trainer.monitor=val/r2", "trainer.mode=max"]
    result = search(tmp_path, sweep_dir, f"objective={objective}", *watch,
                    "hydra.sweeper.n_trials=3", "hydra.sweeper.seed=0",
                    "optimizer.lr=tag(log, interval(1e-3, 1e-1))")
    assert result.returncode == 0, result.stderr
    check_quiet(result)
    rows = summary(sweep_dir)
    assert all(row["status"] == "completed" for row in rows.values())
    values = {run_dir: float(row[objective]) for run_dir, row in rows.items()}
    best = OmegaConf.to_container(OmegaConf.load(sweep_dir / "best.yaml"))
    direction = "minimize" if mode == "min" else "maximize"
    assert (best["objective"], best["direction"], best["storage"]) == (objective, direction, None)
    assert best["value"] == values[best["run_dir"]]
    assert best["value"] == (min if mode == "min" else max)(values.values())
    assert best["overrides"] == rows[best["run_dir"]]["overrides"].split()


SEARCH = "optimizer.lr=interval(1e-3, 1e-1)"
BAD = {  # arguments: what the one line must hold (the key, then what is wrong)
    "log_from_zero": (["optimizer.lr=tag(log, interval(0, 1))"],
                      ["optimizer.lr=tag(log, interval(0, 1))", "low > 0"]),
    "swapped_interval": (["optimizer.lr=interval(1, 0)"],
                         ["optimizer.lr=interval(1, 0)", "low <= high"]),
    "empty_range": (["model.hidden_size=range(8, 8)"],
                    ["model.hidden_size=range(8, 8)", "holds no value"]),
    "objective": (["objective=val/acc", SEARCH],
                  ["objective=val/acc", "not a metric of this task", "val/mse", "train/loss"]),
    "storage_folder": (["hydra.sweeper.storage=sqlite:///{tmp}/nope/study.db", SEARCH],
                       ["hydra.sweeper.storage=", "cannot be created", "/nope"]),
    "n_trials": (["hydra.sweeper.n_trials=0", SEARCH], ["hydra.sweeper.n_trials=0", "> 0"]),
    "n_jobs": (["hydra.sweeper.n_jobs=-1", SEARCH], ["hydra.sweeper.n_jobs=-1", "> 0"]),
    "sampler": (["hydra.sweeper.sampler=grid", SEARCH],
                ["hydra.sweeper.sampler=grid", "tpe, random"]),
    "nothing_to_search": (["optimizer.lr=0.01"], ["hydra/sweeper=optuna", "nothing to search"]),
    "searched_objective": (["objective=val/loss,val/mse", SEARCH],
                           ["objective cannot be searched"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, case):
    args, words = BAD[case]
    run_in = tmp_path / "cwd"
    run_in.mkdir()
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"
    result = search(run_in, tmp_path / "sweep", storage,
                    *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnrun: error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]  # no sweep dir, no study.db
    assert not list(run_in.iterdir())


def test_a_single_run_with_a_bad_objective_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    result = nnrun(*TINY, "objective=val/nope", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nnrun: error: objective=val/nope is not a metric of this task; use one of "
        "best/val/loss, val/loss, val/mse, val/mae, val/rmse, val/r2, test/loss, test/mse, "
        "test/mae, test/rmse, test/r2, train/loss (or null for best/val/loss)"]
    assert not run_dir.exists()
