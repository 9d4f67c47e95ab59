"""Graph networks: PyTorch Geometric's GCN and the textbook's dense one."""

from __future__ import annotations

import pytest
import torch

from nnrun.models.graph import GCN, DenseGCN
from tests.helpers import check_forward_backward

GRAPH = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # edge_index of 5 nodes


@pytest.mark.parametrize("build", [
    lambda: GCN(in_shape=(6,), out_features=3, hidden_sizes=[5], dropout=0.0),
    lambda: GCN(in_shape=(6,), out_features=3, input_dropout=False),
    lambda: DenseGCN(in_shape=(6,), out_features=3, sigmoid_output=True),
], ids=["gcn", "gcn_hidden_dropout", "dense_gcn"])
def test_graph_nets_forward_backward(build):
    torch.manual_seed(0)
    check_forward_backward(build(), torch.randn(5, 6), GRAPH, out_shape=(5, 3))


@pytest.mark.parametrize("input_dropout", [True, False])
def test_gcn_parameter_count_and_dropout_placement(input_dropout):
    net = GCN(in_shape=(1433,), out_features=7, input_dropout=input_dropout)
    assert sum(p.numel() for p in net.parameters()) == 23_063  # catalog/001 gotcha 46
    seen = []
    net.convs[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.ones(3, 1433)
    net.train()
    assert net(x, torch.tensor([[0, 1], [1, 0]])).shape == (3, 7)
    # the book's GCN drops out hidden features only; nnrun's default also the input features
    assert torch.equal(seen[0], x) != input_dropout


def test_dense_gcn_is_the_books_layer():
    torch.manual_seed(0)
    net = DenseGCN(in_shape=(3,), out_features=2, hidden_sizes=(4,), sigmoid_output=True)
    x = torch.randn(5, 3)
    edges = torch.tensor([[0, 1], [1, 2], [3, 4]])  # the book's (E, 2) list
    # the book's forward, verbatim (seed-001 L2045-2053)
    adj = torch.eye(len(x))
    adj[edges[:, 0], edges[:, 1]] = 1
    adj[edges[:, 1], edges[:, 0]] = 1
    expected = x
    for layer in net.layers:
        expected = torch.sigmoid(layer(adj @ expected))
    assert torch.allclose(net(x, edges.T), expected, atol=1e-6)
    logits = DenseGCN(in_shape=(3,), out_features=2)(x, edges.T)
    assert ((logits < 0) | (logits > 1)).any()  # no sigmoid on the output by default

