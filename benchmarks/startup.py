"""Start-up cost of the `nnrun` command, measured on the real CLI in subprocesses.

(a) `python -m nnrun --cfg job` (compose and print the config, no training), median of
    `--repeats` launches, beside `python -c pass` (the interpreter alone) and
    `python -c "import torch"` (what any torch script pays first). A separate subprocess calls
    `nnrun.cli.command()` with `--cfg job` and then checks `sys.modules`: torch must not be in it.

(b) Launch to the first training step of the default job (LSTM on sine), read from the run's
    own TensorBoard event file, so nothing in nnrun is patched: every event carries the
    `time.time()` at which it was written. The parent notes `time.time()` just before it starts
    the subprocess; then
      * "launch -> fit starts": the event file's first record, written when the logger is
        created, the last thing `run()` does before `Trainer.fit`;
      * "launch -> first step done": the first `train/loss` record. These runs pass
        `trainer.log_every=1` (the first loss is logged right after step 1) and
        `trainer.max_steps=1` (so a run takes seconds, not the whole job); neither changes
        anything before the first step.
    The baseline beside it is a bare torch script that takes the same first step (import torch,
    the default LSTM 1-32-1 and Adam, one step on a random batch of 32 windows of 20) and
    prints `time.time()` after it. Building any torch optimizer imports `torch._dynamo` (torch
    does that in `Optimizer.add_param_group`), so both pay for it.
    With `--full`, one full default job (only `hydra.run.dir` set) also gives the total wall
    time, the fit time the trainer reports (`wall_s` in metrics.json: the loop, its evaluations,
    checkpoints and the final forecast figure) and the rest: start-up, the work after fit
    (HPARAMS, metrics.json, the summary table) and interpreter exit. It takes 20-80 s more on
    2 busy cores, hence opt-in.

(c) With `--mnist` (needs MNIST under $NNRUN_DATA_ROOT): a whole one-epoch MNIST MLP job,
    `nnrun model=mlp data=mnist trainer.epochs=1 trainer.progress=false`, launch to exit,
    against a hand-written torch script that does the same work the same way: torchvision's
    MNIST files, the same scaling and seeded 5,000-image validation split, the same 784-128-10
    MLP, Adam and shuffled batches of 64, then validation and test accuracy. The script keeps no
    record; nnrun's run keeps its whole run directory (.hydra/, TensorBoard events with the
    HPARAMS entry, checkpoints, metrics.json). The two alternate, `--repeats` times each, one
    intra-op thread each, and the ratio of the medians is the figure to hold at 1.10 or below.

Every run happens in a temporary working directory, so no `outputs/` is left behind.

    python benchmarks/startup.py [--repeats 3] [--full] [--mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event

CHECK_IMPORTS = """
import sys
sys.argv = ["nnrun", "--cfg", "job"]
from nnrun.cli import command
assert command() == 0
heavy = ["torch", "torchvision", "torch_geometric", "tensorboard", "matplotlib", "numpy"]
print("IMPORTED=" + ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
"""

BARE_FIRST_STEP = """
import time
import torch
import torch.nn.functional as F
lstm, head = torch.nn.LSTM(1, 32, batch_first=True), torch.nn.Linear(32, 1)
optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
x, y = torch.randn(32, 20, 1), torch.randn(32, 1)
loss = F.mse_loss(head(lstm(x)[0][:, -1]), y)
optimizer.zero_grad(set_to_none=True)
loss.backward()
optimizer.step()
loss.item()
print(time.time())
"""


HAND_MNIST = """
import os, sys
import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST

torch.manual_seed(0)
root = os.environ["NNRUN_DATA_ROOT"]
train, test = (MNIST(root, train=t, download=False) for t in (True, False))

def images(ds):
    return ds.data.unsqueeze(1).float().div_(255).sub_(0.1307).div_(0.3081)

x, y, x_test, y_test = images(train), train.targets, images(test), test.targets
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
x_val, y_val, x, y = x[order[:5000]], y[order[:5000]], x[order[5000:]], y[order[5000:]]
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                            torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batch = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
for i in range(0, len(x), 64):
    index = batch[i:i + 64]
    loss = F.cross_entropy(model(x[index]), y[index])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

@torch.no_grad()
def accuracy(xs, ys):
    model.eval()
    return sum(int((model(xs[i:i + 64]).argmax(1) == ys[i:i + 64]).sum())
               for i in range(0, len(xs), 64)) / len(xs)

print(accuracy(x_val, y_val), accuracy(x_test, y_test))
"""

MNIST_JOB = ["model=mlp", "data=mnist", "trainer.epochs=1", "trainer.progress=false"]


def launch_seconds(args: list[str], cwd: Path) -> float:
    """Wall time of one subprocess, from launch to exit; it must succeed."""
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(cwd: Path) -> list[str]:
    """The heavy modules in `sys.modules` after `nnrun --cfg job` ran in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", CHECK_IMPORTS], cwd=cwd, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("IMPORTED="))
    return [m for m in line.removeprefix("IMPORTED=").split(",") if m]


def events(tb_dir: Path) -> list[Event]:
    """The records of the one event file in `tb_dir` (TFRecord framing: length, crc, data, crc)."""
    (path,) = tb_dir.glob("events.out.tfevents.*")
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(Event.FromString(data[pos + 12:pos + 12 + length]))
        pos += 12 + length + 4
    return out


def run_job(overrides: list[str], cwd: Path) -> tuple[float, float, Path]:
    """The default job in a subprocess: (launch as epoch time, total wall s, run dir)."""
    run_dir = cwd / f"run{len(list(cwd.iterdir()))}"
    cmd = [sys.executable, "-m", "nnrun", f"hydra.run.dir={run_dir}", *overrides]
    launch, start = time.time(), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return launch, time.perf_counter() - start, run_dir


def first_step(cwd: Path) -> tuple[float, float]:
    """(launch -> fit starts, launch -> first step done) in seconds, for one short default job."""
    launch, _, run_dir = run_job(["trainer.log_every=1", "trainer.max_steps=1"], cwd)
    records = events(run_dir / "tb")
    loss = next(e for e in records if any(v.tag == "train/loss" for v in e.summary.value))
    return records[0].wall_time - launch, loss.wall_time - launch


def bare_first_step(cwd: Path) -> float:
    """Launch -> first step done, in seconds, for the bare torch script."""
    launch = time.time()
    proc = subprocess.run([sys.executable, "-c", BARE_FIRST_STEP], cwd=cwd, check=True,
                          stdout=subprocess.PIPE, text=True)
    return float(proc.stdout.split()[-1]) - launch


def full_job(cwd: Path) -> tuple[float, float, float]:
    """(total wall s, fit s from metrics.json, launch -> fit starts s) of one default job."""
    launch, total, run_dir = run_job([], cwd)
    fit = json.loads((run_dir / "metrics.json").read_text())["wall_s"]
    return total, fit, events(run_dir / "tb")[0].wall_time - launch


def mnist_jobs(cwd: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds of the whole one-epoch MNIST MLP job through nnrun and of the hand-written
    script, alternating, one intra-op thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nnrun, hand = [], []
    for i in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnrun", *MNIST_JOB,
                        f"hydra.run.dir={cwd / f'mnist{i}'}"], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        nnrun.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", HAND_MNIST], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        hand.append(time.perf_counter() - start)
    return nnrun, hand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="launches of each command")
    parser.add_argument("--full", action="store_true",
                        help="also time one full default job (20-80 s more)")
    parser.add_argument("--mnist", action="store_true",
                        help="also time a whole one-epoch MNIST MLP job against a hand-written "
                        "script (needs NNRUN_DATA_ROOT)")
    args = parser.parse_args()
    py = sys.executable
    commands = {"python -c pass": [py, "-c", "pass"],
                "python -c 'import torch'": [py, "-c", "import torch"],
                "nnrun --cfg job": [py, "-m", "nnrun", "--cfg", "job"]}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nnrun-startup-") as tmp:
        cwd = Path(tmp)
        for cmd in commands.values():  # warm the file cache, not timed
            launch_seconds(cmd, cwd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(launch_seconds(cmd, cwd))
        imported = heavy_imports(cwd)
        steps: list[tuple[float, float]] = []
        bare: list[float] = []
        for _ in range(args.repeats):
            steps.append(first_step(cwd))
            bare.append(bare_first_step(cwd))
        full = full_job(cwd) if args.full else None
        mnist = mnist_jobs(cwd, args.repeats) if args.mnist else None

    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs; {py}")
    print(f"(a) start-up, median of {args.repeats} launches")
    print(f"{'':28}{'median s':>9}{'min s':>8}{'max s':>8}")
    for name, ts in times.items():
        print(f"{name:28}{statistics.median(ts):9.3f}{min(ts):8.3f}{max(ts):8.3f}")
    cfg_s = statistics.median(times["nnrun --cfg job"])
    torch_s = statistics.median(times["python -c 'import torch'"])
    print(f"nnrun --cfg job / import torch: {cfg_s / torch_s:.2f}; "
          f"target < 1 s: {'met' if cfg_s < 1 else 'NOT met'}")
    print(f"heavy modules imported by `nnrun --cfg job`: {', '.join(imported) or 'none'} "
          f"(torch {'IMPORTED' if 'torch' in imported else 'not imported'})")

    print(f"\n(b) default job (LSTM on sine), launch to first training step, median of "
          f"{args.repeats} (trainer.log_every=1 trainer.max_steps=1)")
    first = statistics.median(f for _, f in steps)
    print(f"{'':36}{'median s':>9}{'min s':>8}{'max s':>8}")
    for name, ts in [("nnrun: launch -> fit starts", [s for s, _ in steps]),
                     ("nnrun: launch -> first step done", [f for _, f in steps]),
                     ("bare torch: launch -> first step", bare)]:
        print(f"{name:36}{statistics.median(ts):9.3f}{min(ts):8.3f}{max(ts):8.3f}")
    print(f"first step, nnrun / bare torch: {first / statistics.median(bare):.2f} "
          f"({first - statistics.median(bare):+.2f} s)")
    if full is not None:
        total, fit, fit_start = full
        print("full default job, one run (no overrides):")
        print(f"  total wall {total:.3f} s = fit {fit:.3f} s (metrics.json wall_s) + "
              f"{total - fit:.3f} s outside fit; launch -> fit starts {fit_start:.3f} s")
    if mnist is not None:
        jobs, hand = mnist
        print(f"\n(c) one-epoch MNIST MLP, launch to exit, {args.repeats} of each, alternating, "
              f"OMP_NUM_THREADS=1")
        print(f"{'':36}{'median s':>9}{'min s':>8}{'max s':>8}")
        for name, ts in [("nnrun (the whole run directory)", jobs),
                         ("hand-written script", hand)]:
            print(f"{name:36}{statistics.median(ts):9.3f}{min(ts):8.3f}{max(ts):8.3f}")
        ratio = statistics.median(jobs) / statistics.median(hand)
        print(f"nnrun / hand-written: {ratio:.3f} (target at most 1.10: "
              f"{'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
