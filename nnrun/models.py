"""Models. Each takes its data-dependent sizes (`in_shape`, `out_features`) from the call site
and its hyperparameters as plain keyword arguments, so one YAML with a `_target_` builds it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.errors import ConfigError


def make_activation(name: str) -> nn.Module:
    """An activation by its torch.nn class name: ReLU, Tanh, Sigmoid, GELU, ..."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model.activation={name!r} is not a torch.nn class; use e.g. ReLU, Tanh")
    return cls()


class _Recurrent(nn.Module):
    """A recurrent layer stack over a window, read out from the last time step by a linear head."""

    cell: type[nn.RNNBase]

    def __init__(self, in_shape: Sequence[int], out_features: int, hidden_size: int = 32,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = self.cell(in_shape[-1], hidden_size, num_layers, batch_first=True,
                             dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)            # (B, T, H)
        return self.head(out[:, -1])    # (B, out_features)


class LSTMNet(_Recurrent):
    """LSTM forecaster: (B, T, F) windows to (B, out_features)."""

    cell = nn.LSTM


class GRUNet(_Recurrent):
    """GRU forecaster: (B, T, F) windows to (B, out_features)."""

    cell = nn.GRU


class RNNNet(_Recurrent):
    """Elman (tanh) RNN forecaster: (B, T, F) windows to (B, out_features)."""

    cell = nn.RNN


class MLP(nn.Module):
    """Flatten, then Linear-activation(-dropout) blocks, then a linear output layer."""

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (128,), activation: str = "ReLU",
                 dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [math.prod(in_shape), *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), make_activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv blocks (conv, ReLU, 2x2 max-pool), then a hidden linear layer and the output layer."""

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (16, 32), kernel_size: int = 3,
                 hidden_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = in_shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, h, w = c_out, h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden_size), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_size, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)


class GCN(nn.Module):
    """Graph convolutional network (Kipf & Welling) from PyTorch Geometric's GCNConv layers."""

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (16,), dropout: float = 0.5) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv  # heavy import, only where a GCN is built

        sizes = [in_shape[0], *hidden_sizes, out_features]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes, sizes[1:]))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = nn.functional.dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return x  # (num_nodes, out_features)
