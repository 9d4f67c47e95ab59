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
    """Graph convolutional network (Kipf & Welling) from PyTorch Geometric's GCNConv layers.

    Args:
        hidden_sizes: widths of the hidden layers.
        dropout: dropout before every layer, or, with `input_dropout=false`, before every
            layer but the first (on the hidden features only, as PyG's introduction example
            and the KFU textbook do).
    """

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (16,), dropout: float = 0.5,
                 input_dropout: bool = True) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv  # heavy import, only where a GCN is built

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


class ExampleCNN(nn.Module):
    """The CNN of PyTorch's MNIST example (the KFU textbook's Fig.73): two unpadded 3x3 convs,
    one 2x2 max-pool, dropout, a hidden linear layer and the output layer; 1,199,882 parameters
    for 1x28x28 images and 10 classes.

    Returns logits: the book's `log_softmax` + `nll_loss` is exactly the classification task's
    cross-entropy on logits.

    Args:
        channels: output channels of the two convs.
        hidden_size: width of the hidden linear layer.
        conv_dropout: dropout after the pool; dropout: dropout after the hidden layer.
    """

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (32, 64), hidden_size: int = 128,
                 conv_dropout: float = 0.25, dropout: float = 0.5) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ConfigError(f"model.channels={list(channels)} must name the two convs' "
                              "output channels, e.g. [32, 64]")
        c, h, w = in_shape
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(conv_dropout), nn.Flatten())
        flat = c2 * ((h - 4) // 2) * ((w - 4) // 2)  # 64 * 12 * 12 = 9216 for 28x28
        self.head = nn.Sequential(nn.Linear(flat, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden_size, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)


class DenseGCN(nn.Module):
    """The KFU textbook's from-scratch graph network (Fig.84, seed-001 L2034-2055): each layer
    is sigmoid(Linear(A @ h)) with A the dense, unnormalised adjacency matrix plus self-loops
    (a node sums its neighbours' features and its own).

    Args:
        hidden_sizes: widths of the hidden layers.
        sigmoid_output: apply the sigmoid after the last layer too, as the book does; off, the
            last layer returns logits for the classification loss.
    """

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


class AnalyticLinear(torch.autograd.Function):
    """y = x Wᵀ + b with its backward written out by hand, as the lecture derives it
    (seed-002 L173-184): for MSE, dJ/dw = 2/N · Σ (w·x - y) · x, the loss's factor
    dJ/dy = 2/N · (y_pred - y) arriving as `grad_y` and this layer's local derivative
    dy/dw = x applied here. Autograd records the call, not the matmul inside it."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = x @ weight.T                      # (B, in) @ (in, out) -> (B, out)
        return y + bias if bias is not None else y

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        x, weight = ctx.saved_tensors
        # dJ/dW[o, i] = Σ_b dJ/dy[b, o] · x[b, i]: each product first, then the sum over the
        # batch, as the lecture's ((2 * (y_pred - y)).unsqueeze(1) * x).mean(dim=0) does
        grad_weight = (grad_y.unsqueeze(2) * x.unsqueeze(1)).sum(0)  # (B, out, in) -> (out, in)
        grad_x = grad_y @ weight if ctx.needs_input_grad[0] else None  # dy/dx = W
        grad_bias = grad_y.sum(0) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias


class LinearRegression(nn.Module):
    """y = x Wᵀ (+ b) on flattened inputs, the weights starting at zero (the lecture's
    w = [0, 0], seed-002 L161; the least-squares loss is convex, so the start only sets the path).

    Args:
        in_shape, out_features: from the data.
        bias: learn an intercept b (the lecture's f = X w has none).
        gradient: how the weights' gradient is computed. `autograd`: torch differentiates the
            matmul (the lecture's `l.backward()`, L787-864). `analytic`: the hand-derived
            formula in `AnalyticLinear.backward` (the lecture's `gradient(x, y, y_pred)`,
            L173-184); `tests/test_lecture2_candle.py` checks it against finite differences.
    """

    GRADIENTS = ("autograd", "analytic")

    def __init__(self, in_shape: Sequence[int], out_features: int, bias: bool = False,
                 gradient: str = "autograd") -> None:
        super().__init__()
        if gradient not in self.GRADIENTS:
            raise ConfigError(f"model.gradient={gradient!r} must be one of "
                              f"{', '.join(self.GRADIENTS)}")
        self.gradient = gradient
        self.weight = nn.Parameter(torch.zeros(out_features, math.prod(in_shape)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)                                    # (B, in)
        if self.gradient == "analytic":
            return AnalyticLinear.apply(x, self.weight, self.bias)
        return nn.functional.linear(x, self.weight, self.bias)  # (B, out_features)


class SimpleConvNet(nn.Module):
    """The candle article's MNIST network (seed-004 L118): unpadded convs each followed by ReLU
    (by default six 5x5 convs, 1→5→10→20→20→20→10 channels, 28→24→...→4 pixels), then Flatten,
    Linear(10·4·4 = 160 → 20), ReLU, Linear(20 → 10); 34,890 parameters.

    Args:
        in_shape, out_features: from the data.
        channels: output channels of the convs, in order.
        kernel_size: of every conv (stride 1, no padding).
        hidden_size: width of the hidden linear layer.
        init: `kaiming`: He-normal weights for ReLU and zero biases, which keep the signal's
            scale through the eight ReLU layers, so plain SGD at the article's lr 1e-3 learns.
            `torch`: each layer's PyTorch default, under which the mean square of the signal
            shrinks about sixfold per layer; at lr 1e-3 the loss then sits at ln 10 ≈ 2.30.
        freeze_convs: the article's bug, kept to show why its network "does not learn"
            (L119): its SGD.step, zero_grad and loss backward touch only layers whose type name
            is 'Linear' (L97, L101), so the convs keep their random weights.
    """

    INITS = ("kaiming", "torch")

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (5, 10, 20, 20, 20, 10), kernel_size: int = 5,
                 hidden_size: int = 20, init: str = "kaiming", freeze_convs: bool = False) -> None:
        super().__init__()
        if init not in self.INITS:
            raise ConfigError(f"model.init={init!r} must be one of {', '.join(self.INITS)}")
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, kernel_size), nn.ReLU()]
            c, h, w = c_out, h - kernel_size + 1, w - kernel_size + 1
        if h < 1 or w < 1:
            raise ConfigError(f"model: {len(channels)} unpadded {kernel_size}x{kernel_size} convs "
                              f"do not fit images of {tuple(in_shape)}; use fewer model.channels")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden_size), nn.ReLU(),
                                  nn.Linear(hidden_size, out_features))
        if init == "kaiming":
            for layer in self.modules():
                if isinstance(layer, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        self.features.requires_grad_(not freeze_convs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)
