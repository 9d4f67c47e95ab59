"""Batch sources the datasets build their splits from.

Data that fits in memory lives as tensors on the training device and is batched by indexing
with a seeded permutation (`TensorBatches`), or is one batch holding the whole split
(`FullBatch`, e.g. a graph with the mask of its split): no per-sample Python in the loop.
`LoaderBatches` wraps a `torch.utils.data.DataLoader` for data that does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from nnrun.data import Batch


def move_once(t: Tensor, device: torch.device, moved: dict[int, Tensor]) -> Tensor:
    """Move `t` once: splits that share a tensor (a graph's features) keep sharing it."""
    if id(t) not in moved:
        moved[id(t)] = t.to(device)
    return moved[id(t)]


class TensorBatches:
    """Mini-batches over tensors that share their first dimension.

    Args:
        *tensors: inputs, targets, ...; row i of each belongs to sample i.
        batch_size: samples per batch; the last batch may be smaller unless `drop_last`.
        shuffle: draw a new order each epoch from the generator the trainer passes in.
        drop_last: leave out the last, smaller batch.
    """

    def __init__(self, *tensors: Tensor, batch_size: int, shuffle: bool = True,
                 drop_last: bool = False) -> None:
        assert tensors and all(len(t) == len(tensors[0]) for t in tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        n, bs = len(self.tensors[0]), self.batch_size
        order = None
        if self.shuffle and generator is not None:
            order = torch.randperm(n, generator=generator).to(self.tensors[0].device)
        for i in range(skip, len(self)):
            if order is None:
                yield tuple(t[i * bs:(i + 1) * bs] for t in self.tensors)
            else:
                idx = order[i * bs:(i + 1) * bs]
                yield tuple(t[idx] for t in self.tensors)

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> TensorBatches:
        tensors = (move_once(t, device, moved) for t in self.tensors)
        return TensorBatches(*tensors, batch_size=self.batch_size, shuffle=self.shuffle,
                             drop_last=self.drop_last)


class FullBatch:
    """A single batch holding the whole split, e.g. a graph with the mask of its split."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return 1

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        if skip == 0:
            yield self.tensors

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> FullBatch:
        return FullBatch(*(move_once(t, device, moved) for t in self.tensors))


class LoaderBatches:
    """A DataLoader, for data that does not fit in memory; batches move to the device as they come.

    Each epoch's order is one permutation drawn from the trainer's generator, exactly as in
    `TensorBatches`, so shuffling stays seeded and a resumed run sees the same batches.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool = True,
                 num_workers: int = 0, device: torch.device | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.num_workers, self.device = num_workers, device

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        n = len(self.dataset)
        shuffled = self.shuffle and generator is not None
        order = torch.randperm(n, generator=generator) if shuffled else torch.arange(n)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
            sampler=order[skip * self.batch_size:].tolist(),
            pin_memory=self.device is not None and self.device.type == "cuda")
        for batch in loader:
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> LoaderBatches:
        return LoaderBatches(self.dataset, self.batch_size, self.shuffle, self.num_workers, device)
