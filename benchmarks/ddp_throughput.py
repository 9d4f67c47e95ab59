"""Data-parallel training against one process, on the real CLI: what 2 processes cost or gain.

One epoch of MNIST with the MLP (`--model`) at the same global batch, so both do the same work:

  * one process: `nnrun model=mlp data=mnist data.batch_size=2B`, with as many intra-op
    threads as processes in the other (`OMP_NUM_THREADS=2`: the same cores);
  * two processes: `torchrun --standalone --nproc_per_node=2 -m nnrun ... data.batch_size=B`,
    one thread each (torchrun's default), gradients all-reduced by gloo every step.

The figure is training throughput: training samples per second of the run's own `wall_s`
(the trainer's loop, evaluations included; start-up left out), and beside it the whole
command from launch to exit. The two alternate, `--repeats` times each; medians are compared.
On a 2-core CPU little gain is to be expected (one process already uses both cores); the point
is what the all-reduce and a second process cost.

    python benchmarks/ddp_throughput.py [--repeats 3] [--batch 64] [--processes 2] [--model cnn]

`--model cnn` gives the same for the convolutional net, whose steps hold more computation for
each gradient all-reduced.

Needs the MNIST files under $NNRUN_DATA_ROOT (or data.root's default cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN_SAMPLES = 55_000  # MNIST's 60,000 less the 5,000 validation images


def timed(command: list[str], env: dict[str, str], run_dir: Path) -> tuple[float, float]:
    """Seconds from launch to exit, and the run's own training wall time (metrics.json)."""
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    return took, json.loads((run_dir / "metrics.json").read_text())["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", default="mlp", help="an option of the model group")
    options = parser.parse_args()
    n = options.processes
    job = [f"model={options.model}", "data=mnist", "trainer.epochs=1", "trainer.progress=false"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    runs = {
        "one process": ([sys.executable, "-m", "nnrun", *job,
                         f"data.batch_size={options.batch * n}"],
                        {**env, "OMP_NUM_THREADS": str(n)}),
        f"{n} processes": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={n}", "-m", "nnrun", *job,
                            f"data.batch_size={options.batch}"], {**env, "OMP_NUM_THREADS": "1"}),
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    trains: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(options.repeats):
            for name, (command, run_env) in runs.items():
                run_dir = Path(workdir, f"{name.replace(' ', '_')}-{repeat}")
                took, train = timed([*command, f"hydra.run.dir={run_dir}"], run_env, run_dir)
                walls[name].append(took)
                trains[name].append(train)
                print(f"  {name:12s} run {repeat + 1}: {took:6.1f} s in all, {train:6.1f} s "
                      "training", flush=True)
    print(f"one MNIST epoch with model={options.model}, global batch {options.batch * n}, "
          f"{os.cpu_count()} cores, medians of {options.repeats}:")
    medians = {}
    for name in runs:
        wall, train = statistics.median(walls[name]), statistics.median(trains[name])
        medians[name] = train
        print(f"  {name:12s} {TRAIN_SAMPLES / train:8.0f} samples/s training  ({train:5.1f} s; "
              f"{wall:5.1f} s launch to exit)")
    one, many = medians["one process"], medians[f"{n} processes"]
    print(f"  throughput of {n} processes against one: {one / many:.2f}x")


if __name__ == "__main__":
    main()
