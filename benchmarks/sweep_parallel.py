"""A sweep of short jobs side by side against one after another, on the real CLI.

Eight default jobs (LSTM on sine) run for `--epochs` epochs (60: about 4 s a job on 2 cores;
the default 20 take about 1.4 s, where the sweep's start-up, paid once either way, weighs
more), swept over `seed=1..8`:

  * one after another: `nnrun -m seed=1,...,8 ...` (Hydra's basic launcher: one process, the
    jobs in turn, torch's default threads);
  * side by side: the same plus `hydra/launcher=joblib hydra.launcher.n_jobs=2` (nnrun's
    launcher: a forked process per job, two at a time, the cores shared between them).

Each is timed from launch to exit, start-up included (both import torch once). The two
alternate, `--repeats` times each, and the figure is the throughput ratio: the median
sequential time over the median parallel time. On 2 cores the target is 1.6 or more.

    python benchmarks/sweep_parallel.py [--repeats 3] [--epochs 60] [--jobs 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(args: list[str], workdir: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "OMP_NUM_THREADS")}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnrun", "-m", *args], cwd=workdir, env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"nnrun failed:\n{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=8)
    options = parser.parse_args()
    seeds = ",".join(str(i) for i in range(1, options.jobs + 1))
    sweep = [f"seed={seeds}", f"trainer.epochs={options.epochs}", "trainer.progress=false"]
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(options.repeats):
            for name, extra in (("sequential", []), ("parallel", parallel)):
                sweep_dir = os.path.join(workdir, f"{name}-{repeat}")
                took = timed([*extra, *sweep, f"hydra.sweep.dir={sweep_dir}"], workdir)
                times[name].append(took)
                print(f"  {name:10s} run {repeat + 1}: {took:6.1f} s", flush=True)
    sequential, side_by_side = (statistics.median(times[k]) for k in ("sequential", "parallel"))
    print(f"{options.jobs} jobs of {options.epochs} epochs, {os.cpu_count()} cores, "
          f"medians of {options.repeats}:")
    print(f"  one after another  {sequential:6.1f} s  ({sequential / options.jobs:.2f} s a job)")
    print(f"  two side by side   {side_by_side:6.1f} s")
    print(f"  throughput ratio   {sequential / side_by_side:.2f}x   (target >= 1.6x on 2 cores)")


if __name__ == "__main__":
    main()
