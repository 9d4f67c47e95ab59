"""Recurrent forecasters over windows (B, T, F) -> (B, out_features): torch's LSTM, GRU and RNN
read out from the last step, and the networks the RNN lab manual's section 2 (seed-000 L254-338)
builds from a multilayer perceptron by closing it on itself: the state-space model (Fig. 1,
eqs 7-8), Elman's simple recurrent network (Fig. 2) and the recurrent multilayer perceptron
(Fig. 3).

The lab manual's networks read a window one step at a time and forecast from its last step, so
they run on the same windowed data as the LSTM. Training is back-propagation through time:
autograd through the unrolled loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnrun.errors import ConfigError
from nnrun.models.layers import make_activation


class _Recurrent(nn.Module):
    """A recurrent layer stack over a window, read out from the last time step by a linear head."""

    reads = ("sequences (batch, time, features), or images row by row: use data=sine, airline,"
             " shampoo or mnist")

    cell: type[nn.RNNBase]

    def __init__(self, in_shape: Sequence[int], out_features: int, hidden_size: int = 32,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = self.cell(in_shape[-1], hidden_size, num_layers, batch_first=True,
                             dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:                # images (B, C, H, W), read row by row: (B, C * H, W)
            x = x.flatten(1, 2)
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


class StateSpaceNet(nn.Module):
    """The state-space model: `x(n+1) = σ(A [x(n), ..., x(n-q+1)] + B u(n) + b)` (eq. 7) and
    `y(n) = C x(n)` (eq. 8).

    The hidden layer's output returns to the input layer through a bank of `order` unit delays,
    so the input layer sees the last q states beside the input u(n); q is the model's order.
    The hidden layer is nonlinear and the output layer linear, without a bias, as in eq. 8.
    After the window's last input u(T), `C x(T+1)` forecasts the next value.

    Args:
        in_shape: one window's shape, (T, F).
        out_features: outputs per window.
        hidden_size: state size.
        order: the number of unit delays, q >= 1.
        activation: σ, a torch.nn class name.
    """

    reads = "sequences (batch, time, features): use data=sine, airline or shampoo"

    def __init__(self, in_shape: Sequence[int], out_features: int, hidden_size: int = 16,
                 order: int = 2, activation: str = "Tanh") -> None:
        super().__init__()
        if order < 1:
            raise ConfigError(f"model.order={order} must be >= 1 (the number of unit delays)")
        self.hidden_size, self.order = hidden_size, order
        self.input = nn.Linear(in_shape[-1], hidden_size)                        # B, b
        self.feedback = nn.Linear(order * hidden_size, hidden_size, bias=False)  # A
        self.activation = make_activation(activation)
        self.output = nn.Linear(hidden_size, out_features, bias=False)           # C

    def forward(self, u: Tensor) -> Tensor:
        drive = self.input(u)                                  # (B, T, H)
        delays = u.new_zeros(u.shape[0], self.order * self.hidden_size)  # x(n), ..., x(n-q+1)
        for n in range(u.shape[1]):
            x = self.activation(drive[:, n] + self.feedback(delays))     # x(n+1)
            delays = torch.cat([x, delays[:, :-self.hidden_size]], dim=1)  # shift the bank
        return self.output(x)                                  # (B, out_features)


class ElmanNet(nn.Module):
    """Elman's simple recurrent network: `h(n) = φ(W u(n) + U c(n) + b)`, `y(n) = ψ(C h(n) + d)`.

    The context layer `c(n) = h(n-1)` holds a copy of the hidden layer from one step back (one
    unit delay, no bank of them), and the output layer may be nonlinear (ψ). With ψ the
    identity this is torch's `nn.RNN` followed by a linear layer.

    Args:
        in_shape: one window's shape, (T, F).
        out_features: outputs per window.
        hidden_size: hidden (and context) units.
        activation: φ, a torch.nn class name.
        output_activation: ψ; `Identity` for a linear output layer.
    """

    reads = "sequences (batch, time, features): use data=sine, airline or shampoo"

    def __init__(self, in_shape: Sequence[int], out_features: int, hidden_size: int = 16,
                 activation: str = "Tanh", output_activation: str = "Identity") -> None:
        super().__init__()
        self.input = nn.Linear(in_shape[-1], hidden_size)                # W, b
        self.context = nn.Linear(hidden_size, hidden_size, bias=False)   # U
        self.activation = make_activation(activation)
        self.output = nn.Sequential(nn.Linear(hidden_size, out_features),  # C, d
                                    make_activation(output_activation))

    def forward(self, u: Tensor) -> Tensor:
        drive = self.input(u)                                  # (B, T, H)
        h = u.new_zeros(u.shape[0], drive.shape[-1])           # the context starts at zero
        for n in range(u.shape[1]):
            h = self.activation(drive[:, n] + self.context(h))
        return self.output(h)                                  # (B, out_features)


class RecurrentMLP(nn.Module):
    """The recurrent multilayer perceptron: every layer, the output layer included, is closed on
    itself by its own feedback.

    `x_1(n+1) = φ(W_1 u(n) + R_1 x_1(n) + b_1)`,
    `x_l(n+1) = φ(W_l x_{l-1}(n+1) + R_l x_l(n) + b_l)` for the further hidden layers, and
    `y(n+1) = ψ(W_o x_L(n+1) + R_o y(n) + b_o)`.

    Args:
        in_shape: one window's shape, (T, F).
        out_features: outputs per window.
        hidden_sizes: one entry per hidden layer.
        activation: φ, a torch.nn class name.
        output_activation: ψ; `Identity` for a linear output layer.
    """

    reads = "sequences (batch, time, features): use data=sine, airline or shampoo"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (16, 16), activation: str = "Tanh",
                 output_activation: str = "Identity") -> None:
        super().__init__()
        if not hidden_sizes:
            raise ConfigError("model.hidden_sizes is empty; give at least one hidden layer")
        sizes = [in_shape[-1], *hidden_sizes, out_features]
        self.forward_weights = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.feedback = nn.ModuleList(nn.Linear(b, b, bias=False) for b in sizes[1:])
        self.activations = nn.ModuleList([*(make_activation(activation) for _ in hidden_sizes),
                                          make_activation(output_activation)])

    def forward(self, u: Tensor) -> Tensor:
        states = [u.new_zeros(u.shape[0], layer.out_features) for layer in self.forward_weights]
        for n in range(u.shape[1]):
            signal = u[:, n]
            for i, (w, r, act) in enumerate(zip(self.forward_weights, self.feedback,
                                                self.activations)):
                states[i] = signal = act(w(signal) + r(states[i]))
        return states[-1]                                      # (B, out_features)
