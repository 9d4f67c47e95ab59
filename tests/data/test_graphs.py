"""Cora through PyTorch Geometric: one graph, split by masks."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from nnrun.data.graphs import cora
from nnrun.errors import DataError
from tests.helpers import make_config


def test_cora_builds_from_the_data_root_with_one_shared_graph(data_root):
    data = instantiate(make_config("data=cora", f"data.root={data_root}").data)
    assert data.sizes == Sizes((1433,), 7)
    x, edge_index, y, mask = data.train.tensors
    assert x.shape == (2708, 1433) and edge_index.shape == (2, 10556)
    assert [int(s.tensors[3].sum()) for s in (data.train, data.val, data.test)] == [140, 500, 1000]
    # the three splits share one copy of the graph, also on the device
    assert data.val.tensors[0] is x and data.test.tensors[0] is x
    moved = data.to(torch.device("cpu"))
    assert moved.val.tensors[0] is moved.train.tensors[0]
    # normalised features: every row sums to 1 (rows without a word stay 0)
    assert torch.allclose(x.sum(1)[x.sum(1) > 0], torch.ones(1))


def test_a_missing_cora_names_its_folder(tmp_path):
    with pytest.raises(DataError, match="Cora/raw"):
        cora(root=str(tmp_path), download=False)
