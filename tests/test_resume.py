"""Exact resume: a run killed mid-epoch and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
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


# ---- a resume with a changed config ----------------------------------------------------------

def snapshot(root) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None,
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Two finished TINY_SINE runs: Adam at a constant rate, and SGD under a cosine schedule."""
    root = tmp_path_factory.mktemp("trained")
    runs = {"adam": [], "cosine": ["optimizer=sgd", "schedule=cosine"]}
    for name, extra in runs.items():
        done = nnrun(*TINY_SINE, *extra, f"hydra.run.dir={root / name}", cwd=root)
        assert done.returncode == 0, done.stderr
    return {name: root / name for name in runs}


REFUSED = {  # a changed key: the base run and the keys the refusal names
    "optimizer.lr=0.01": ("adam", ["optimizer.lr"]),
    "data.batch_size=64": ("adam", ["data.batch_size"]),
    "seed=5": ("adam", ["seed"]),
    "data.window=10": ("adam", ["data.window"]),
    "schedule=cosine": ("adam", ["schedule._target_"]),
    "optimizer=sgd": ("adam", ["optimizer._target_"]),
    "model.hidden_size=4": ("adam", ["model.hidden_size"]),
    "trainer.epochs=3": ("cosine", ["spans the run's planned length", "trainer.epochs"]),
}


@pytest.mark.parametrize("change", REFUSED)
def test_a_resume_with_a_changed_key_is_refused_before_anything_is_written(change, trained,
                                                                            tmp_path):
    name, words = REFUSED[change]
    run_dir = trained[name]
    before = snapshot(run_dir)
    extra = ["optimizer=sgd", "schedule=cosine"] if name == "cosine" else []
    result = nnrun(*TINY_SINE, *extra, *change.split(), f"hydra.run.dir={run_dir}",
                   "trainer.resume=auto", cwd=tmp_path)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("nnrun: error: trainer.resume: "), line
    for word in [*words, f"trainer.init_from={run_dir / 'checkpoints' / 'last.pt'}"]:
        assert word in line, (word, line)
    assert snapshot(run_dir) == before


def test_a_resume_may_extend_the_run_and_the_change_is_recorded(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained["adam"], run_dir)
    result = nnrun(*TINY_SINE, "trainer.epochs=3", "trainer.patience=4", "trainer.log_every=2",
                   f"hydra.run.dir={run_dir}", "trainer.resume=auto", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trainer.epochs 2 -> 3" in result.stdout
    assert "trainer.patience None -> 4" in result.stdout
    starts = json.loads((run_dir / "run.json").read_text())["starts"]
    assert len(starts) == 2 and starts[1]["step"] == 10
    assert starts[1]["changed"]["trainer.epochs"] == [2, 3]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 15
    # the resumed run is the 3-epoch run it extends
    straight = nnrun(*TINY_SINE, "trainer.epochs=3", f"hydra.run.dir={tmp_path / 'straight'}",
                     cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_starts_a_new_run_from_the_weights_only(trained, tmp_path):
    source = trained["adam"] / "checkpoints" / "last.pt"
    weights = torch.load(source, weights_only=True)["model"]
    # no training: the new run's weights are the checkpoint's
    start = nnrun(*TINY_SINE, "trainer.epochs=0", f"trainer.init_from={trained['adam']}",
                  f"hydra.run.dir={tmp_path / 'zero'}", cwd=tmp_path)
    assert start.returncode == 0, start.stderr
    state = torch.load(tmp_path / "zero" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(state["model"][k], weights[k]) for k in weights)
    # fine-tuning under a new optimizer, rate and batch size: counters start at zero
    tuned = nnrun(*TINY_SINE, "trainer.epochs=1", "optimizer=sgd", "optimizer.lr=0.01",
                  "data.batch_size=16", f"trainer.init_from={source}",
                  f"hydra.run.dir={tmp_path / 'tuned'}", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    metrics = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["steps"] == 10  # 160 windows / 16, from step 0
    assert json.loads((tmp_path / "tuned" / "run.json").read_text())["starts"][0][
        "init_from"] == str(source)
    # weights that do not fit are refused, naming them
    other = nnrun(*TINY_SINE, "model.hidden_size=4", f"trainer.init_from={source}",
                  f"hydra.run.dir={tmp_path / 'other'}", cwd=tmp_path)
    assert other.returncode == 2 and "trainer.init_from" in other.stderr
    assert "does not fit this model" in other.stderr and not (tmp_path / "other").exists()


# ---- signals ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    done = nnrun(*JOB, f"hydra.run.dir={root / 'run'}", cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM,
                                    pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_a_signal_saves_the_step_and_the_resume_is_exact(signum, straight, tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "nnrun", *JOB, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "tb").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    delay = random.uniform(0.2, 2.5)  # a random step: 4 epochs take about 4 s here
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), (delay, err)
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    name = signal.Signals(signum).name
    assert line.startswith(f"nnrun: interrupted by {name} at step ")
    assert "trainer.resume=auto" in line
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["signal"] == name
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == metrics["steps"] == int(line.split(" at step ")[1].split(";")[0])

    resumed = nnrun(*JOB, f"hydra.run.dir={run_dir}", "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (a, metrics_a), (b, metrics_b) = final(straight), final(run_dir)
    assert a["step"] == b["step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert metrics_a["val/loss"] == metrics_b["val/loss"]


def test_a_second_ctrl_c_stops_at_once_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "nnrun", *JOB, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while not (run_dir / "tb").exists() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err


def test_a_kill_after_the_last_checkpoint_resumes_to_full_metrics(tmp_path):
    """A kill between the final last.pt and metrics.json: the resume finds nothing to train and
    writes the metrics the checkpoint carries, train/loss included."""
    run_dir = tmp_path / "run"
    assert nnrun(*TINY_SINE, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    whole = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()
    again = nnrun(*TINY_SINE, f"hydra.run.dir={run_dir}", "trainer.resume=auto", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "best/val/loss"):
        assert metrics[key] == whole[key], key
