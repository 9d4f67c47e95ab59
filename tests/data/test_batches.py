"""Batch sources: the DataLoader wrapper follows the same seeded order."""

from __future__ import annotations

import torch

from nnrun.data.batches import LoaderBatches, TensorBatches


def test_dataloader_batches_follow_the_same_seeded_order():
    x, y = torch.arange(50.0).unsqueeze(1), torch.arange(50)
    in_memory = TensorBatches(x, y, batch_size=8)
    loader = LoaderBatches(torch.utils.data.TensorDataset(x, y), batch_size=8)
    a = [b[1] for b in in_memory.epoch(torch.Generator().manual_seed(3))]
    b = [b[1] for b in loader.epoch(torch.Generator().manual_seed(3))]
    assert len(a) == len(in_memory) == len(loader) == 7
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    skipped = [b[1] for b in loader.epoch(torch.Generator().manual_seed(3), skip=5)]
    assert all(torch.equal(p, q) for p, q in zip(a[5:], skipped))
