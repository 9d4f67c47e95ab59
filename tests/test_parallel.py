"""One run on several processes: `torchrun -m nnrun` with gloo on the CPU, started for real.

Every test runs torchrun itself (`python -m torch.distributed.run`, the `torchrun` script) in a
subprocess, with two processes on this machine; nothing is mocked.
"""

from __future__ import annotations

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

# A run small enough to start, train and stop in seconds, with dropout, so that each rank's
# own random stream (which travels in the checkpoint) decides the result.
DROPOUT_SINE = ["model=mlp", "model.dropout=0.3", "data.n_points=400", "data.window=8",
                "data.batch_size=16", "trainer.progress=false"]


def torchrun(*args: str, cwd: Path, nproc: int = 2, torchrun_args: tuple[str, ...] = (),
             timeout: float = 300, background: bool = False) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=<nproc> -m nnrun <args>` (a free port each, so
    that runs never meet)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *torchrun_args, "-m", "nnrun", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    if background:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def errors(done: subprocess.CompletedProcess) -> list[str]:
    """nnrun's own error lines (torchrun adds its report of the failed processes below them)."""
    return [line for line in done.stderr.splitlines() if line.startswith("nnrun: error:")]


Ran = subprocess.CompletedProcess


def one_at_twice_and_two_processes(job: list[str], batch: int,
                                   tmp_path: Path) -> tuple[dict, dict, Ran]:
    """`job` in one process at batch 2 x `batch` (run `one`) and in two at `batch` (run
    `two`): their metrics, and the torchrun command's outcome."""
    one = nnrun(*job, f"data.batch_size={2 * batch}", f"hydra.run.dir={tmp_path / 'one'}",
                cwd=tmp_path)
    two = torchrun(*job, f"data.batch_size={batch}", f"hydra.run.dir={tmp_path / 'two'}",
                   cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    return metrics(tmp_path / "one"), metrics(tmp_path / "two"), two


def test_two_processes_train_as_one_at_twice_the_batch(tmp_path, data_root):
    """One epoch of MNIST with the MLP (no dropout, no batch statistics): 2 processes at batch
    64 and 1 process at 128 see the same global batches, including an uneven last one (55,001
    training images leave 89, split 45/44 and weighted), so they train alike.

    Tolerance: relative 1e-5 on the validation loss, where the runs differ by about 1e-6. The
    gradients differ only in float32 rounding: the mean of two half-batch means, summed by
    gloo, against one mean over the batch (1e-7 in the weights after a step). Plain SGD keeps
    that drift small over 430 steps; Adam would not (its update divides by the root of tiny
    second moments, which magnifies a rounding difference to 1e-4 in the loss), so the test
    uses SGD."""
    job = ["model=mlp", "data=mnist", f"data.root={data_root}", "data.val_size=4999",
           "optimizer=sgd", "trainer.epochs=1", "trainer.progress=false"]
    a, b, two = one_at_twice_and_two_processes(job, 64, tmp_path)
    assert a["steps"] == b["steps"] == 430  # ceil(55001 / 128): no sample twice, none left out
    assert b["val/loss"] == pytest.approx(a["val/loss"], rel=1e-5)
    assert b["test/acc"] == pytest.approx(a["test/acc"], abs=2e-4)  # at most 2 of 10,000 images
    start = json.loads((tmp_path / "two" / "run.json").read_text())["starts"][0]
    assert start["processes"] == 2
    assert "x 2 processes" in two.stdout and two.stdout.count("nnrun: completed") == 1


@pytest.mark.slow  # ~15 s: the MNIST equivalence above is the default suite's
def test_a_summed_loss_trains_as_one_process_too(tmp_path):
    """With `task.reduction=sum` the ranks' gradients must add up, not average: 2 processes at
    batch 16 train as one process at 32 (an uneven last batch included), to float rounding."""
    job = ["model=mlp", "data.n_points=300", "data.window=8", "task.reduction=sum",
           "optimizer=sgd", "optimizer.lr=0.001", "trainer.epochs=5", "trainer.progress=false"]
    a, b, _ = one_at_twice_and_two_processes(job, 16, tmp_path)
    assert a["steps"] == b["steps"]
    assert b["val/loss"] == pytest.approx(a["val/loss"], rel=1e-5)
    assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)  # the global batch's sum


def test_one_run_directory_chosen_by_rank_0(tmp_path):
    """With the default `${now:...}` run directory, which each process would resolve to its own
    time: one directory, written by rank 0 alone (one log, one event file, one record)."""
    done = torchrun(*TINY_SINE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert metrics(run_dir)["status"] == "completed"
    assert len(list((run_dir / "tb").glob("events.*"))) == 1
    assert len(json.loads((run_dir / "run.json").read_text())["starts"]) == 1
    log = (run_dir / "nnrun.log").read_text()
    assert log.count("nnrun: run ") == 1  # rank 1's lines are dropped, not interleaved
    assert done.stdout.count("nnrun: run ") == 1

    # The ranks' evaluation, summed, is a single process's on the same weights: nnrun-eval
    # of best.pt in one process gives the run's best val/loss.
    evaluated = subprocess.run([str(Path(sys.executable).parent / "nnrun-eval"), str(run_dir),
                                "--split", "val"], capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr
    alone = json.loads((run_dir / "evaluations" / "best-val.json").read_text())
    assert alone["val/loss"] == pytest.approx(metrics(run_dir)["best/val/loss"], rel=1e-9)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def kill_after_checkpoint(proc: subprocess.Popen, run_dir: Path, seed: int) -> None:
    """SIGKILL torchrun and its processes (each in a session of its own) at once, at a random
    moment after the first checkpoint."""
    wait_for_checkpoint(proc, run_dir)
    time.sleep(random.Random(seed).uniform(0.2, 2.0))
    for pid in [*(rank_pid(proc.pid, rank) for rank in (0, 1)), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.communicate()


def test_a_killed_two_process_run_resumes_exactly(tmp_path):
    """A 2-process run killed with SIGKILL and resumed with trainer.resume=auto under the same
    torchrun command ends with the weights of a run never stopped: every rank's random state
    (dropout) and the data order travel in the checkpoint."""
    job = [*DROPOUT_SINE, "trainer.epochs=150"]
    whole = torchrun(*job, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = torchrun(*job, f"hydra.run.dir={killed}", cwd=tmp_path, background=True)
    kill_after_checkpoint(proc, killed, seed=os.getpid())
    assert not (killed / "metrics.json").exists(), "the run ended before the kill"
    stopped_at = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert stopped_at["processes"] == 2 and len(stopped_at["rng_ranks"]) == 1
    assert 0 < stopped_at["step"] < metrics(tmp_path / "whole")["steps"]

    resumed = torchrun(*job, f"hydra.run.dir={killed}", "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(killed)["status"] == "completed"
    a, b = weights(tmp_path / "whole"), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Its checkpoint continues only under 2 processes: one is refused in one line, and
    # nothing in the run changes.
    before = {p: p.read_bytes() for p in killed.rglob("*") if p.is_file()}
    alone = nnrun(*job, f"hydra.run.dir={killed}", "trainer.resume=auto", "trainer.epochs=160",
                  cwd=tmp_path)
    assert alone.returncode == 2
    lines = alone.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained by 2 processes and this start has one" in lines[0]
    assert "--nproc_per_node=2" in lines[0]
    assert {p: p.read_bytes() for p in killed.rglob("*") if p.is_file()} == before


def rank_pid(torchrun_pid: int, rank: int, timeout: float = 60) -> int:
    """The pid of the worker process of `rank` among torchrun's children (its RANK variable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                env = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if parent == torchrun_pid and f"RANK={rank}".encode() in env:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no process of rank {rank} under torchrun {torchrun_pid}")


@pytest.mark.slow  # ~45 s: two runs of 2 processes, one restarted by torchrun
def test_a_lost_rank_fails_the_run_naming_it_and_max_restarts_brings_it_back(tmp_path):
    """Rank 1 killed mid-run: the run stops at once (no hang), records `failed` naming rank 1,
    and keeps its last checkpoint. Under `torchrun --max-restarts=1` the same kill is followed
    by a restart that continues the run from that checkpoint, in the same directory."""
    job = [*DROPOUT_SINE, "trainer.epochs=300"]
    for restarts, run_dir in ((0, tmp_path / "lost"), (1, tmp_path / "back")):
        proc = torchrun(*job, f"hydra.run.dir={run_dir}", cwd=tmp_path, background=True,
                        torchrun_args=(f"--max-restarts={restarts}",))
        wait_for_checkpoint(proc, run_dir)
        os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
        if restarts == 0:
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode != 0
            result = metrics(run_dir)
            assert result["status"] == "failed" and "rank 1" in result["error"], result
            said = [line for line in stderr.splitlines() if line.startswith("nnrun: error:")]
            assert len(said) == 1 and "rank 1" in said[0] and "trainer.resume=auto" in said[0]
            assert (run_dir / "checkpoints" / "last.pt").exists()
        else:  # a fresh start shortened: the restart is the point, not the 300 epochs
            _, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr[-3000:]
            starts = json.loads((run_dir / "run.json").read_text())["starts"]
            assert len(starts) == 2 and starts[1]["resumed_from"].endswith("last.pt")
            assert starts[1]["step"] > 0
            assert metrics(run_dir)["status"] == "completed"
            assert [p.name for p in tmp_path.iterdir() if p.name == "outputs"] == []


@pytest.mark.parametrize("setting, says", [
    ({"RANK": "1"}, "RANK=1 set but not WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost"},
     "not MASTER_PORT"),
    ({"RANK": "3", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost",
      "MASTER_PORT": "29500"}, "do not fit together"),
])
def test_a_half_configured_launch_is_refused(tmp_path, setting, says):
    done = nnrun(*TINY_SINE, cwd=tmp_path, env=setting, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "torchrun" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


SLOW = pytest.mark.slow  # ~8 s each: the default suite keeps a model's and a char model's


@pytest.mark.parametrize("job, says", [
    (["model=least_squares", "data=boston", "data.root=DATA"],
     "model=least_squares cannot train data-parallel"),
    pytest.param(["data=trig", "model=mlp"], "data=trig cannot train data-parallel", marks=SLOW),
    (["experiment=dlfs/ch6_char_rnn", "data.root=DATA"], "with model.stateful=true cannot"),
    pytest.param(["-m", "optimizer.lr=0.01,0.1"], "nnrun -m under torchrun", marks=SLOW),
    pytest.param(["device=cuda"], "device=cuda", marks=SLOW),
])
def test_what_cannot_run_data_parallel_is_refused_in_one_line(tmp_path, job, says, data_root):
    job = [a.replace("DATA", str(data_root)) for a in job]
    done = torchrun(*job, "trainer.progress=false", cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    said = errors(done)
    assert len(said) == 1 and says in said[0], done.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # ~15 s: submitit's local executor starts each job's tasks afresh
def test_a_sweep_of_data_parallel_jobs_through_submitit_tasks(tmp_path):
    """The sweep launchers and data-parallel runs compose: each job of a `submitit_local` sweep
    with two tasks per node is one run on two processes (the way `hydra/launcher=slurm` runs
    one on a cluster), and the sweep's summary reads as for one-process jobs."""
    sweep_dir = tmp_path / "sweep"
    done = nnrun("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                 *TINY_SINE, "seed=1,2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        starts = json.loads((sweep_dir / job / "run.json").read_text())["starts"]
        assert [s["processes"] for s in starts] == [2]
        assert metrics(sweep_dir / job)["status"] == "completed"
        assert len(list((sweep_dir / job / "tb").rglob("events.*"))) == 1
    rows = (sweep_dir / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:])
