"""Sweeps that survive: a job killed as the out-of-memory killer would, a whole sweep killed and
resumed, a cluster's preemption signal under submitit, and a sweep refused before it writes.

Every sweep here is the real `nnrun -m` in a subprocess with the real launcher: nnrun's
`hydra/launcher=joblib` (a forked process per job) or Hydra's `submitit_local`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_SINE, nnrun

BASE = [o for o in TINY_SINE if not o.startswith("trainer.epochs=")]
# Two short jobs and two long ones (5 steps an epoch), two at a time: the short ones complete
# while the long ones are still training.
SWEEP = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *BASE, "trainer.epochs=3,150",
         "seed=1,2"]
METRICS = ["train/loss", "val/loss", "val/mse", "best/val/loss", "epochs", "steps"]


def summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """`nnrun` started in the background, as `tests.helpers.nnrun` runs it."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen([sys.executable, "-m", "nnrun", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def holder(job_dir: Path) -> int | None:
    """The pid of the process running a job (its run directory's lock file names it)."""
    try:
        return json.loads((job_dir / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def weights(job_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(job_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def starts(job_dir: Path) -> list[dict]:
    return json.loads((job_dir / "run.json").read_text())["starts"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep, never stopped."""
    tmp = tmp_path_factory.mktemp("straight")
    result = nnrun("-m", *SWEEP, f"hydra.sweep.dir={tmp / 'sweep'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "sweep"


def test_a_job_killed_by_sigkill_is_recorded_and_the_others_finish(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start("-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    long_job = sweep_dir / "2"  # trainer.epochs=150 seed=1
    wait_for(lambda: (long_job / "checkpoints" / "last.pt").exists() and holder(long_job),
             proc, "a checkpoint of job 2")
    victim = holder(long_job)
    assert victim != proc.pid  # the job runs in a process of its own
    os.kill(victim, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"nnrun: error: 1 of 4 jobs failed (jobs 2); see {sweep_dir / 'summary.md'}")
    rows = summary(sweep_dir)
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "completed"), ("1", "completed"), ("2", "failed"), ("3", "completed")]
    assert "killed by SIGKILL" in rows[2]["error"]
    assert "trainer.epochs=150" in rows[2]["overrides"]
    assert (sweep_dir / "summary.md").read_text().count("| failed |") == 1
    assert int(rows[3]["epochs"]) == 150  # the job beside the killed one ran to its end


def test_a_sweep_killed_at_a_random_moment_resumes_to_the_same_results(straight, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start("-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    wait_for(lambda: (sweep_dir / "2" / "checkpoints" / "last.pt").exists(), proc,
             "a checkpoint of job 2")
    time.sleep(random.uniform(0.0, 0.8))
    proc.kill()  # the sweep's own process; its jobs get SIGTERM, save their step and end
    proc.communicate()
    deadline = time.monotonic() + 60
    while any(holder(d) for d in sweep_dir.iterdir() if d.name.isdigit()):
        assert time.monotonic() < deadline, "jobs still running after their sweep died"
        time.sleep(0.05)
    assert not (sweep_dir / "summary.csv").exists()
    before = {d.name: (d / "metrics.json").read_bytes()
              for d in sweep_dir.iterdir() if (d / "metrics.json").exists()}
    completed = [n for n, m in before.items() if json.loads(m)["status"] == "completed"]
    assert {"0", "1"} <= set(completed), before  # the short jobs had finished
    stopped = [d.name for d in sweep_dir.iterdir() if d.name not in completed
               and (d / "checkpoints" / "last.pt").exists()]
    assert "2" in stopped

    again = nnrun("-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"nnrun: error: hydra.sweep.dir={sweep_dir} already holds a sweep; finish it with the "
        "same command plus trainer.resume=auto, or choose another hydra.sweep.dir"]
    assert not (sweep_dir / "summary.csv").exists()

    resumed = nnrun("-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", "trainer.resume=auto",
                    cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for name in completed:  # not trained again: the recorded result stands
        assert (sweep_dir / name / "metrics.json").read_bytes() == before[name]
        assert len(starts(sweep_dir / name)) == 1
    for name in stopped:  # continued from its last checkpoint
        assert starts(sweep_dir / name)[-1]["resumed_from"] == str(
            sweep_dir / name / "checkpoints" / "last.pt")

    rows, expected = summary(sweep_dir), summary(straight)
    assert [r["overrides"] for r in rows] == [r["overrides"] for r in expected]
    for row, same in zip(rows, expected, strict=True):
        assert row["status"] == "completed"
        assert {k: row[k] for k in METRICS} == {k: same[k] for k in METRICS}, row["job"]
        a, b = weights(sweep_dir / row["job"]), weights(straight / row["job"])
        assert all(torch.equal(a[k], b[k]) for k in a), row["job"]


@pytest.mark.slow  # ~14 s (three job processes, each importing torch): the suite keeps to 15 min
def test_a_preempted_submitit_job_is_requeued_and_resumes_exactly(tmp_path):
    """Two identical jobs under `submitit_local`; job 0 gets submitit's preemption signal
    (SIGUSR2) mid-run: it saves a checkpoint at its step, submitit requeues it, and the
    requeued job continues to the same final weights as job 1, which was never stopped."""
    sweep_dir = tmp_path / "sweep"
    proc = start("-m", "hydra/launcher=submitit_local", *BASE, "trainer.epochs=150",
                 "seed=3,3", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    job = sweep_dir / "0"
    wait_for(lambda: (job / "checkpoints" / "last.pt").exists() and holder(job), proc,
             "a checkpoint of job 0", timeout=180)
    os.kill(holder(job), signal.SIGUSR2)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr

    first, second = starts(job)
    assert second["resumed_from"] == str(job / "checkpoints" / "last.pt")
    assert 0 < second["step"] < 750
    assert len(starts(sweep_dir / "1")) == 1
    rows = summary(sweep_dir)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert {k: rows[0][k] for k in METRICS} == {k: rows[1][k] for k in METRICS}
    a, b = weights(job), weights(sweep_dir / "1")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad, key", [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0"),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], "hydra.launcher.n_jobs=-1"),
    (["hydra/launcher=nosuch"], "hydra/launcher/nosuch"),
    (["hydra/sweeper=nosuch"], "hydra/sweeper/nosuch"),
])
def test_a_bad_launcher_or_sweeper_is_refused_before_anything_is_written(bad, key, tmp_path):
    result = nnrun("-m", *bad, *BASE, "trainer.epochs=1", "seed=1,2",
                   f"hydra.sweep.dir={tmp_path / 'sweeps' / 'a'}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnrun: error: ") and key in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == []
