"""Graph networks over a whole graph at once (`data=cora`): PyTorch Geometric's GCN and the KFU
textbook's from-scratch dense one. Both take node features (N, F) and `edge_index` (2, E)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.errors import GRAPH_EXTRA, ConfigError


class GCN(nn.Module):
    """Graph convolutional network (Kipf & Welling) from PyTorch Geometric's GCNConv layers.

    Args:
        hidden_sizes: widths of the hidden layers.
        dropout: dropout before every layer, or, with `input_dropout=false`, before every
            layer but the first (on the hidden features only, as PyG's introduction example
            and the KFU textbook do).
    """

    reads = "graph data: use data=cora"
    reads_graph = True  # NodeClassification passes it the edges

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (16,), dropout: float = 0.5,
                 input_dropout: bool = True) -> None:
        super().__init__()
        try:
            from torch_geometric.nn import GCNConv  # heavy import, only where a GCN is built
        except ImportError:
            raise ConfigError(GRAPH_EXTRA.format(what="model=gcn")) from None

        sizes = [in_shape[0], *hidden_sizes, out_features]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes, sizes[1:]))
        self.dropout = dropout
        self.input_dropout = input_dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            if i > 0 or self.input_dropout:
                x = nn.functional.dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return x  # (num_nodes, out_features)


class DenseGCN(nn.Module):
    """The KFU textbook's from-scratch graph network (Fig.84, seed-001 L2034-2055): each layer
    is sigmoid(Linear(A @ h)) with A the dense, unnormalised adjacency matrix plus self-loops
    (a node sums its neighbours' features and its own).

    Args:
        hidden_sizes: widths of the hidden layers.
        sigmoid_output: apply the sigmoid after the last layer too, as the book does; off, the
            last layer returns logits for the classification loss.
    """

    reads = "graph data: use data=cora"
    reads_graph = True

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (16,), sigmoid_output: bool = False) -> None:
        super().__init__()
        sizes = [in_shape[0], *hidden_sizes, out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.sigmoid_output = sigmoid_output
        self._adj: tuple[Tensor, Tensor] | None = None  # (edge_index, its dense adjacency)

    def adjacency(self, n: int, edge_index: Tensor, dtype: torch.dtype) -> Tensor:
        """The dense (N, N) adjacency with self-loops, built once per graph: every training
        step and evaluation passes the same `edge_index`."""
        if self._adj is None or self._adj[0] is not edge_index:
            adj = torch.eye(n, device=edge_index.device, dtype=dtype)
            adj[edge_index[0], edge_index[1]] = 1  # edge_index (2, E), as PyG gives it
            adj[edge_index[1], edge_index[0]] = 1
            self._adj = (edge_index, adj)
        return self._adj[1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        adj = self.adjacency(len(x), edge_index, x.dtype)
        for i, layer in enumerate(self.layers):
            # layer(adj @ x) = adj @ (x W^T) + b, taken in the cheaper order for wide inputs
            x = torch.addmm(layer.bias, adj, x @ layer.weight.T)
            if i < len(self.layers) - 1 or self.sigmoid_output:
                x = torch.sigmoid(x)
        return x  # (num_nodes, out_features)
