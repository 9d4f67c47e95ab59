"""One run on several processes: data-parallel training on `torch.distributed`.

`torchrun --nproc_per_node=N -m nnrun ...` starts N processes (ranks), each with its own copy of
the model; `DistributedDataParallel` averages their gradients in the backward pass, so every rank
takes the same optimizer step. nnrun's part is what a run around that needs:

- one run directory, chosen by rank 0 and handed to the others before Hydra creates a folder
  (`Group.agree_run_dir`); rank 0 alone writes the run's files and its console;
- each global batch of an epoch's seeded order split between the ranks (`Shard`), so the
  global batch is N x `data.batch_size` and no sample is seen twice in an epoch;
- evaluation batches dealt out between the ranks and the tasks' summed statistics added up
  (`Group.sum_stats`), so the metrics are those of the whole split;
- decisions every rank must take together (a refusal, a stop on a signal) agreed where the
  ranks talk anyway: before anything is written, and when the loss buffer is logged.

`Solo` is the same interface for a process on its own, where each of these is nothing at all,
so the trainer reads the same either way. `current()` is this process's.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.errors import ConfigError, NnrunError
from nnrun.launch import Launch


class Solo:
    """A run in one process: every split is its own, every statistic is already the total."""

    rank, size, main, restarted = 0, 1, True, False

    def shard(self, batches: Batches) -> Batches:
        return batches

    def deal(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        return batches

    def sum_stats(self, totals: dict[str, Any]) -> dict[str, Any]:
        return totals

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model

    def agree(self, error: NnrunError | None) -> None:
        if error is not None:
            raise error

    def gather(self, value: Any) -> list[Any]:
        return [value]

    def started(self, run_dir: str) -> None:
        pass

    def finish(self) -> None:
        pass


class Group(Solo):
    """This process as one rank of a data-parallel run (`start` makes it)."""

    def __init__(self, launch: Launch, store: Any, timeout: datetime.timedelta) -> None:
        import torch.distributed as dist

        self.launch, self.timeout = launch, timeout
        self.rank, self.size, self.main = launch.rank, launch.size, launch.main
        self.restarted = False  # set by agree_run_dir: torchrun restarted this run
        self.store = dist.PrefixStore("nnrun", store)  # torchrun's outlives a restart
        self.attempt = dist.PrefixStore(f"nnrun/{launch.restart}", store)  # this start's
        self.device_group: Any = None  # the group gradients and losses go through (`wrap`)

    # ---- before a run starts ----------------------------------------------------------------

    def agree_run_dir(self, proposed: str) -> str:
        """The run directory every rank uses: rank 0's `hydra.run.dir` as it resolved there
        (`${now:...}` and all); after a torchrun restart (`--max-restarts`) of a run that had
        started, the directory it started in, which torchrun's store keeps across restarts
        (`restarted` is then True: the run continues from its last checkpoint)."""
        if self.main:
            restarted = self.launch.restart > 0 and self.store.check(["started"])
            run_dir = self.store.get("started").decode() if restarted else proposed
            self.attempt.set("run_dir", run_dir)
            self.attempt.set("restarted", "1" if restarted else "0")
        self.attempt.wait(["run_dir", "restarted"], self.timeout)
        self.restarted = self.attempt.get("restarted") == b"1"
        return self.attempt.get("run_dir").decode()

    def started(self, run_dir: str) -> None:
        """The run has started in `run_dir` (rank 0 wrote its record): a restart continues it."""
        if self.main:
            self.store.set("started", run_dir)

    def agree(self, error: NnrunError | None) -> None:
        """Every rank's verdict on its start, shared: if any rank refused, all refuse with the
        lowest such rank's error (rank 0 says it; the others exit quietly with its status)."""
        import torch.distributed as dist

        verdicts: list[Any] = [None] * self.size
        dist.all_gather_object(verdicts, error)
        refused = next(((r, e) for r, e in enumerate(verdicts) if e is not None), None)
        if refused is None:
            return
        rank, err = refused
        if rank != 0 and len(err.args) == 1:
            err = type(err)(f"rank {rank}: {err}")
        err.agreed = True  # every rank raises it; rank 0 says it (`cli.said_by_rank_0`)
        raise err

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model in DistributedDataParallel, over the device's backend: NCCL for CUDA, gloo
        for the CPU. Its construction gives every rank rank 0's weights."""
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.device_group = dist.new_group(backend="nccl" if device.type == "cuda" else "gloo",
                                           timeout=self.timeout)
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.device_group)

    # ---- while it trains --------------------------------------------------------------------

    def shard(self, batches: Batches) -> Batches:
        return Shard(batches, self.rank, self.size)

    def deal(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Every `size`-th evaluation batch, from this rank's place: each batch is evaluated on
        one rank, and `sum_stats` adds up what they found."""
        return itertools.islice(batches, self.rank, None, self.size)

    def sum_stats(self, totals: dict[str, Any]) -> dict[str, Any]:
        """The task's summable statistics (counts, sums of losses) added up over the ranks, in
        rank order, on the CPU: the same numbers on every rank. Evaluation only."""
        import torch.distributed as dist

        here = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in totals.items()}
        every: list[Any] = [None] * self.size
        dist.all_gather_object(every, here)
        summed: dict[str, Any] = {}
        for part in every:
            for key, value in part.items():
                summed[key] = summed[key] + value if key in summed else value
        return summed

    def mean_losses(self, losses: Tensor, stop: bool) -> tuple[Tensor, bool]:
        """The buffered training losses averaged over the ranks, and whether any rank has been
        asked to stop (a signal): one all-reduce when the buffer is logged, never per step."""
        import torch.distributed as dist

        flag = torch.full((1,), float(stop), device=losses.device, dtype=losses.dtype)
        both = torch.cat([losses, flag])
        dist.all_reduce(both, group=self.device_group)
        return both[:-1] / self.size, bool(both[-1] > 0)

    def finish(self) -> None:
        """Wait until every rank has ended its run, rank 0's records written: a rank that
        ended first could have torchrun stop rank 0 mid-write (a lost rank is not waited for)."""
        import torch.distributed as dist

        try:
            dist.barrier()
        except RuntimeError:
            pass

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on rank 0 (the others get [])."""
        import torch.distributed as dist

        every: list[Any] = [None] * self.size if self.main else []
        dist.gather_object(value, every if self.main else None, dst=0)
        return every

    def lost(self, err: Exception) -> str:
        """After a collective failed on this rank: which rank stopped the run. Each surviving
        rank says so in the store; rank 0 waits a moment for them, then names the ranks that
        did not (their process ended: killed, out of memory) or that failed with an error of
        their own."""
        said = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        keys = [f"said/{r}" for r in range(self.size)]
        try:
            self.attempt.set(keys[self.rank], f"{type(err).__name__}: {said}")
            if not self.main:
                return said
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not self.attempt.check(keys):
                time.sleep(0.05)
            silent = [r for r in range(1, self.size) if not self.attempt.check([keys[r]])]
            if silent:
                return (f"rank {', '.join(map(str, silent))} stopped: its process ended without "
                        "a word (killed, or out of memory; torchrun's report says how)")
            for r in range(self.size):
                text = self.attempt.get(keys[r]).decode()
                if not communication(text):
                    return f"rank {r} failed: {text}"
        except Exception:  # the store went with the rank that hosted it
            pass
        return f"the ranks lost each other ({said})"


def communication(text: str) -> bool:
    """Whether an error's text is a collective failing because another rank went away."""
    return any(word in text for word in ("gloo", "Connection", "NCCL", "DistBackendError",
                                         "DistNetworkError", "timed out", "Timeout"))


class Shard:
    """This rank's part of a training split: the split is batched by `size` x its
    `batch_size` (the global batch, in the same seeded order on every rank), and rank r takes
    the r-th of `size` equal slices of each global batch. One process at batch size `size` x B
    sees the very batches that `size` processes at B see together.

    A last global batch that does not divide evenly is sliced into near-equal parts, and
    `last_weight` is this rank's share of it (its samples x `size` / the batch's samples), by
    which the trainer scales that step's loss: averaged over the ranks, the gradient is the
    batch's mean, as in one process. A last batch of fewer samples than ranks is left out (a
    rank would have none).
    """

    def __init__(self, batches: Batches, rank: int, size: int) -> None:
        if not isinstance(getattr(batches, "batch_size", None), int):
            raise ConfigError(f"its training split ({type(batches).__name__}) is not batched "
                              "by data.batch_size, so it cannot be split between processes")
        self.part, self.rank, self.size = batches, rank, size
        self.whole = copy.copy(batches)
        self.whole.batch_size = batches.batch_size * size
        one = copy.copy(batches)
        one.batch_size = 1
        samples, self.batches = len(one), len(self.whole)
        last = min(self.whole.batch_size, samples - (self.batches - 1) * self.whole.batch_size)
        if 0 < last < size:
            self.batches -= 1
            last = self.whole.batch_size
        mine = np.array_split(np.arange(last), size)[rank].size
        self.last_weight = mine * size / last if last else 1.0

    def __len__(self) -> int:
        return self.batches

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        for batch in itertools.islice(self.whole.epoch(generator, skip), self.batches - skip):
            yield tuple(t.tensor_split(self.size)[self.rank] for t in batch)

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> Shard:
        return Shard(self.part.to(device, moved), self.rank, self.size)


ALONE = Solo()  # a process on its own
_current: Solo = ALONE


def current() -> Solo:
    """This process's place: a `Group` once `start` has run, else `Solo`."""
    return _current


def start(launch: Launch, timeout_s: float) -> Group:
    """Join the run's process group: connect to the rendezvous store (torchrun's agent's, or
    rank 0's), and set up gloo for the messages between ranks; each collective gives up after
    `timeout_s`, so a lost rank cannot hang the others. The model's own group (NCCL on CUDA)
    comes with `Group.wrap`, once the device is known."""
    global _current
    import torch.distributed as dist

    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ConfigError(f"trainer.collective_timeout_s={timeout_s} must be a number of "
                          "seconds > 0, e.g. trainer.collective_timeout_s=300")
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(launch.master_addr, launch.master_port, launch.size,
                          is_master=launch.main and not launch.agent_store, timeout=timeout)
    dist.init_process_group("gloo", store=dist.PrefixStore(f"pg/{launch.restart}", store),
                            rank=launch.rank, world_size=launch.size, timeout=timeout)
    _current = Group(launch, store, timeout)
    return _current

