"""Exact resume: a run killed mid-epoch and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from nnrun.run import run
from tests.helpers import TINY_SINE, make_config, nnrun

# An LSTM with dropout between its layers, so the resumed run must also restore the random
# state that dropout draws from, not only the weights and the data order.
JOB = ["data.n_points=20000", "data.window=10", "model.hidden_size=16", "model.num_layers=2",
       "model.dropout=0.2", "trainer.epochs=4", "trainer.progress=false", "seed=7"]


def final(run_dir) -> tuple[dict, dict]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return state, json.loads((run_dir / "metrics.json").read_text())


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = nnrun(*JOB, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"  # as conftest.nnrun runs the other two
    proc = subprocess.Popen([sys.executable, "-m", "nnrun", *JOB, f"hydra.run.dir={killed}"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # epoch 1 is checkpointed; kill during epoch 2 (an epoch takes about a second here)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at_kill = torch.load(last, weights_only=True)
    assert at_kill["epoch"] < 4, "the run finished before it was killed; make the job longer"
    assert not (killed / "metrics.json").exists()

    resumed = nnrun(*JOB, f"hydra.run.dir={killed}", "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (a, metrics_a), (b, metrics_b) = final(straight), final(killed)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("val/loss", "val/mse", "val/mae", "val/r2", "train/loss", "best/val/loss"):
        assert metrics_a[key] == metrics_b[key], key


def test_resume_from_the_middle_of_an_epoch(tmp_path):
    """max_steps stops a run inside an epoch; resuming it (from a path, into a new run
    directory) replays the rest of that epoch in the same order."""
    job = [*TINY_SINE, "model.dropout=0.0", "trainer.epochs=3", "optimizer=sgd",
           "optimizer.momentum=0.9", "schedule=step", "schedule.step_size=1"]
    straight = run(make_config(*job), tmp_path / "straight")
    part = run(make_config(*job, "trainer.max_steps=8"), tmp_path / "part")
    assert part["steps"] == 8
    ckpt = tmp_path / "part" / "checkpoints" / "last.pt"
    assert torch.load(ckpt, weights_only=True)["batch_in_epoch"] == 3  # 5 batches an epoch
    rest = run(make_config(*job, f"trainer.resume={ckpt}"), tmp_path / "rest")
    assert rest["steps"] == straight["steps"] == 15
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "rest" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert rest["val/loss"] == straight["val/loss"]


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path):
    result = run(make_config(*TINY_SINE, "trainer.resume=auto"), tmp_path / "fresh")
    assert result["status"] == "completed" and result["steps"] == 10
