"""Overhead of nnrun's `Trainer.fit` against a hand-written PyTorch loop doing the same work.

Workload: MLP 784-89-10 (ReLU, `nnrun.models.mlp.MLP(hidden_sizes=[89])`) on in-memory random
MNIST-shaped data (`--train-size` train samples, 60,000 as in MNIST by default, + 1,200 val
samples of shape (1, 28, 28), 10 classes, fixed seed), batch 60 (1,000 steps an epoch at
60,000), plain SGD lr 0.1, `--steps` optimizer steps, CPU.

Both sides do, and both timings include:
  * a seeded `randperm` per epoch, batches by indexing the tensors, forward, cross-entropy,
    `zero_grad(set_to_none=True)`, backward, step;
  * at each epoch end (and at the end of a last, partial epoch) a validation pass over the
    1,200 val samples (summed cross-entropy and accuracy), and a checkpoint of model and
    optimizer state to `last.pt`, plus `best.pt` when the val loss improved.

Only nnrun does, so its timing includes it as overhead:
  * the real `TensorBoardLogger`: train/loss and lr every `--log-every` steps (nnrun's
    default, 50; one host sync each), epoch time and val metrics per epoch; `close()`, which
    flushes the event file, is timed;
  * a disabled `ProgressBar`, the `constant` schedule's hooks, the loss buffer;
  * its checkpoint format: data-order RNG state and metadata, written atomically with fsync
    (the baseline uses a plain `torch.save`).

Not timed on either side: building the data, the model and the optimizer. Both runs start from
the same seeded weights and draw the same data order, so they must end on the same val loss;
the script checks that. The two are warmed up once, then alternated `--repeats` times; the
table shows the median and the spread of the timed runs, in wall time and in process CPU time
(all threads, TensorBoard's writer thread included).

Where the difference goes (cProfile and A/B runs on 2 CPUs): the loop itself is within about
1% of the hand-written one; the rest is TensorBoard (without TensorFlow installed, its writer
opens, appends to and closes the event file for every record; nnrun's logger hands scalars
over in bursts, which costs far less than one at a time between steps) and the checkpoints,
written atomically with fsync (best.pt is a hard link to last.pt when both fall on one step).
On a shared machine the medians move by +-5% from run to run; the minima are steadier.

    python benchmarks/trainer_overhead.py [--steps 2000] [--repeats 9] [--threads 1]
                                         [--log-every 50] [--train-size 60000]
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from nnrun.console import ProgressBar
from nnrun.data import Data, Sizes
from nnrun.data.batches import TensorBatches
from nnrun.logger import TensorBoardLogger
from nnrun.models.mlp import MLP
from nnrun.optim.schedules import constant
from nnrun.tasks.classification import Classification
from nnrun.trainer import Trainer, TrainerConfig

N_VAL, BATCH, LR, SEED = 1_200, 60, 0.1, 0
Split = tuple[torch.Tensor, torch.Tensor]
Result = tuple[tuple[float, float], float]  # (wall s, CPU s), final val loss


def make_data(n_train: int) -> tuple[Split, Split]:
    """Random MNIST-shaped images and labels, (train, val)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n_train + N_VAL, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n_train + N_VAL,), generator=g)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def make_model() -> tuple[MLP, torch.optim.SGD]:
    torch.manual_seed(SEED)
    model = MLP((1, 28, 28), 10, hidden_sizes=[89])
    return model, torch.optim.SGD(model.parameters(), lr=LR)


def run_nnrun(steps: int, train: Split, val: Split, out: Path, log_every: int = 50) -> Result:
    """nnrun's real Trainer; `log_every` as `trainer.log_every` (nnrun's default is 50)."""
    model, optimizer = make_model()
    data = Data(train=TensorBatches(*train, batch_size=BATCH),
                val=TensorBatches(*val, batch_size=BATCH, shuffle=False),
                sizes=Sizes((1, 28, 28), 10))
    epochs = math.ceil(steps / len(data.train))
    cfg = TrainerConfig(epochs=epochs, max_steps=steps, log_every=log_every, progress=False)
    trainer = Trainer(cfg, model, Classification(), data, optimizer, constant(optimizer, steps),
                      out, torch.device("cpu"), seed=SEED, config={"benchmark": True})
    logger = TensorBoardLogger(out / "tb")
    progress = ProgressBar(False, trainer.total_steps, 0, epochs)
    start, cpu = time.perf_counter(), time.process_time()
    result = trainer.fit(logger, progress)
    logger.close()
    seconds = (time.perf_counter() - start, time.process_time() - cpu)
    assert result["status"] == "completed" and result["steps"] == steps, result
    return seconds, result["val/loss"]


def run_baseline(steps: int, train: Split, val: Split, out: Path) -> Result:
    """The same work as a hand-written loop."""
    model, optimizer = make_model()
    (x, y), (xv, yv) = train, val
    g = torch.Generator().manual_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    step, best, val_loss = 0, math.inf, math.nan
    while step < steps:
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
        model.eval()
        with torch.no_grad():
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.long)
            for i in range(0, len(xv), BATCH):
                logits = model(xv[i:i + BATCH])
                loss_sum += F.cross_entropy(logits, yv[i:i + BATCH], reduction="sum").double()
                correct += (logits.argmax(1) == yv[i:i + BATCH]).sum()
        model.train()
        val_loss, _acc = float(loss_sum) / len(xv), float(correct) / len(xv)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        torch.save(state, out / "last.pt")
        if val_loss < best:
            best = val_loss
            torch.save(state, out / "best.pt")
    return (time.perf_counter() - start, time.process_time() - cpu), val_loss


def timed(fn: Callable[[int, Split, Split, Path], Result], steps: int, train: Split,
          val: Split) -> Result:
    """One run of `fn` in a fresh temporary directory."""
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="nnrun-bench-") as tmp:
        return fn(steps, train, val, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of each, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both")
    parser.add_argument("--log-every", type=int, default=50,
                        help="nnrun's trainer.log_every (default 50, as in conf/trainer)")
    parser.add_argument("--train-size", type=int, default=60_000,
                        help="training samples (60,000 = MNIST; fewer = shorter epochs, so the "
                        "per-epoch validation and checkpoints weigh more)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, val = make_data(args.train_size)
    runs = {"baseline": run_baseline,
            "nnrun": functools.partial(run_nnrun, log_every=args.log_every)}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    for fn in runs.values():  # warm-up, not timed
        timed(fn, min(args.steps, 400), train, val)
    for _ in range(args.repeats):
        for name, fn in runs.items():
            (seconds, cpu_seconds), losses[name] = timed(fn, args.steps, train, val)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    if not math.isclose(losses["nnrun"], losses["baseline"], rel_tol=1e-6):
        raise SystemExit(f"the runs did different work: final val loss {losses}")

    epochs = math.ceil(args.steps / math.ceil(args.train_size / BATCH))
    print(f"MLP 784-89-10, {args.train_size} samples, batch {BATCH}, SGD lr {LR}, {args.steps} "
          f"steps ({epochs} epochs, "
          f"val + checkpoint each), torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.repeats} interleaved repeats")
    print(f"nnrun: trainer.log_every={args.log_every}; load average before/after: "
          f"{load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"final val loss: baseline {losses['baseline']:.6f}, nnrun {losses['nnrun']:.6f} "
          "(same work)")
    print(f"{'':10}{'wall median s':>14}{'min':>8}{'max':>8}{'us/step':>9}{'CPU median s':>14}")
    for name in runs:
        median = statistics.median(wall[name])
        print(f"{name:10}{median:14.3f}{min(wall[name]):8.3f}{max(wall[name]):8.3f}"
              f"{median / args.steps * 1e6:9.1f}{statistics.median(cpu[name]):14.3f}")
    ratio = statistics.median(wall["nnrun"]) / statistics.median(wall["baseline"])
    best_ratio = min(wall["nnrun"]) / min(wall["baseline"])
    cpu_ratio = statistics.median(cpu["nnrun"]) / statistics.median(cpu["baseline"])
    print(f"ratio nnrun/baseline, wall medians: {ratio:.3f}  (target <= 1.05: "
          f"{'met' if ratio <= 1.05 else 'NOT met'})")
    print(f"ratio nnrun/baseline, wall minima:  {best_ratio:.3f}  (least disturbed by other load)")
    print(f"ratio nnrun/baseline, CPU medians:  {cpu_ratio:.3f}  (process CPU time, all threads)")


if __name__ == "__main__":
    main()
