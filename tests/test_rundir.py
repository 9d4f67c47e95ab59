"""The run directory through the real command line: one writer at a time, the user's file mode,
a record of what produced the run, and nothing left by a refused start or a killed write."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from tests.helpers import TINY_SINE, nnrun, scalar_events

# Long enough (several seconds) that a second command starts while the first still trains.
LONG = [*TINY_SINE, "data.n_points=4000", "trainer.epochs=6"]


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen([sys.executable, "-m", "nnrun", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_second_run_into_a_held_directory_is_refused_and_nothing_mixes(tmp_path):
    run_dir = tmp_path / "x"
    first = start(*LONG, "seed=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for(run_dir / ".lock", first)
    second = nnrun(*LONG, "seed=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    line = second.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("nnrun: error: ")
    assert f"hydra.run.dir={run_dir} is in use by another nnrun run (pid {first.pid}" in line
    # every record in the directory is the first run's
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["config"]["seed"] == 1
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["best"] == metrics["best/val/loss"]
    assert json.loads((run_dir / "run.json").read_text())["starts"][0]["seed"] == 1
    assert not (run_dir / ".lock").exists()


def test_two_runs_started_at_the_same_moment_one_runs_and_one_is_refused(tmp_path):
    run_dir = tmp_path / "x"
    procs = {seed: start(*LONG, f"seed={seed}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
             for seed in (1, 2)}
    ended = {seed: (proc.communicate(timeout=300), proc.returncode)
             for seed, proc in procs.items()}
    codes = sorted(code for _, code in ended.values())
    assert codes == [0, 2], ended
    winner = next(seed for seed, (_, code) in ended.items() if code == 0)
    loser_err = next(out[1] for out, code in ended.values() if code == 2)
    assert "in use by another nnrun run" in loser_err or "already holds a run" in loser_err
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == winner
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["config"]["seed"] == winner


def test_two_resumes_at_once_one_runs_and_the_curves_have_no_duplicate_steps(tmp_path):
    run_dir = tmp_path / "x"
    assert nnrun(*TINY_SINE, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    more = [*TINY_SINE, "trainer.epochs=80", f"hydra.run.dir={run_dir}", "trainer.resume=auto"]
    first = start(*more, cwd=tmp_path)
    wait_for(run_dir / ".lock", first)
    second = nnrun(*more, cwd=tmp_path)
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert second.returncode == 2 and "is in use by another nnrun run" in second.stderr
    steps = [step for step, _ in scalar_events(run_dir, "val/loss")]
    assert steps == [step * 5 for step in range(1, 81)]  # one point per epoch, once each
    assert len(json.loads((run_dir / "run.json").read_text())["starts"]) == 2


def test_a_dead_holder_does_not_keep_the_directory_and_its_leftovers_go(tmp_path):
    run_dir = tmp_path / "x"
    proc = start(*LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for(run_dir / "checkpoints" / "last.pt", proc)
    proc.kill()
    proc.communicate()
    leftover = run_dir / "checkpoints" / ".last.pt.abc123.tmp"  # as a kill during a write leaves
    leftover.write_bytes(b"half a checkpoint")
    resumed = nnrun(*LONG, f"hydra.run.dir={run_dir}", "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not leftover.exists()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_files_follow_the_umask_and_the_run_says_what_produced_it(tmp_path):
    run_dir = tmp_path / "x"
    result = subprocess.run(
        ["sh", "-c", f"umask 022 && exec {sys.executable} -m nnrun "
         + " ".join([*TINY_SINE, "seed=3", f"hydra.run.dir={run_dir}"])],
        cwd=tmp_path, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
             "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "run.json",
                 ".hydra/config.yaml"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name
    record = json.loads((run_dir / "run.json").read_text())["starts"][0]
    assert record["nnrun"] and record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["torch"] == torch.__version__
    assert record["device"] == "cpu" and record["threads"] == 1 and record["seed"] == 3
    assert "seed=3" in record["command"]


def test_a_refused_start_leaves_no_folder(tmp_path):
    run_dir = tmp_path / "a" / "b" / "c"
    result = nnrun(*TINY_SINE, "optimizer.lr=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "a").exists()


def test_a_directory_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = nnrun(*TINY_SINE, f"hydra.run.dir={blocker / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"hydra.run.dir={blocker / 'run'} cannot be created" in result.stderr


def test_a_full_disk_stops_the_run_in_one_line(tmp_path):
    """A file-size limit stands in for a full disk: the first checkpoint cannot be written."""
    run_dir = tmp_path / "x"
    result = subprocess.run(
        ["bash", "-c", f"trap '' XFSZ; ulimit -f 16; exec {sys.executable} -m nnrun "
         + " ".join([*TINY_SINE, f"hydra.run.dir={run_dir}"])],
        cwd=tmp_path, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
             "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    assert line.startswith(f"nnrun: error: {run_dir / 'checkpoints'}/") and "make room" in line
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_validation_runs_once_when_the_step_cadence_meets_an_epoch_end(tmp_path):
    run_dir = tmp_path / "x"  # 5 batches an epoch: evaluating every 5 steps lands on each end
    result = nnrun(*TINY_SINE, "trainer.eval_every_steps=5", "trainer.epochs=3",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [step for step, _ in scalar_events(run_dir, "val/loss")] == [5, 10, 15]
