"""Stacked recurrent character models, after Deep Learning from Scratch chapters 6 and 7.

Each layer of the book's stack is a recurrent cell with its own hidden size followed by a dense
projection to its own output size (the book's `RNNLayer(hidden_size, output_size)`, seed-003
L6154-6164; the PyTorch `LSTMLayer` = `nn.LSTM` + `DenseLayer`, L6827-6870); the next layer reads
that output, so cells mix freely (RNN->RNN, GRU->LSTM). The cells are torch's: their update is
the book's (GRU: `H_out = u*H_in + (1-u)*h_bar`, L6010).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.errors import ConfigError

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

State = list[Tensor | tuple[Tensor, Tensor]]  # one entry per layer: h, or (h, c) for an LSTM


class CharRNN(nn.Module):
    """Next-character model: one-hot characters (B, T) -> logits (B, T, vocab_size).

    Args:
        vocab_size: characters in the vocabulary (from the data).
        layers: the stack, bottom first; each a mapping with `cell` (rnn, gru or lstm),
            `hidden_size`, and `output_size` (the dense projection after the cell; null = the
            vocabulary, which the last layer must output).
        stateful: the book's persistent hidden state (seed-003 L5709, L6863-6870): each
            layer's initial state is the batch mean of its final state from the previous
            training batch, detached. Evaluation and sampling read it and leave it as it is,
            so they are repeatable. False (the default): every window starts from zeros.
    """

    reads = "character windows: use data=tinyshakespeare or dlfs_text"

    def __init__(self, vocab_size: int, layers: Sequence[Mapping[str, Any]] = (
                 {"cell": "lstm", "hidden_size": 256, "output_size": None},),
                 stateful: bool = False) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("model.layers is empty; give at least one, e.g. "
                              "[{cell: lstm, hidden_size: 256, output_size: null}]")
        self.vocab_size, self.stateful = vocab_size, stateful
        self.cells, self.dense = nn.ModuleList(), nn.ModuleList()
        size = vocab_size
        for i, spec in enumerate(layers):
            unknown = set(spec) - {"cell", "hidden_size", "output_size"}
            if unknown or spec.get("cell") not in CELLS or "hidden_size" not in spec:
                raise ConfigError(f"model.layers[{i}]={dict(spec)} must have cell (one of "
                                  f"{', '.join(CELLS)}), hidden_size and optionally output_size")
            hidden = spec["hidden_size"]
            out = spec.get("output_size") or vocab_size
            self.cells.append(CELLS[spec["cell"]](size, hidden, batch_first=True))
            self.dense.append(nn.Linear(hidden, out))
            # The persistent state (used when `stateful`); a buffer, so it moves with the model
            # and a checkpoint restores it.
            self.register_buffer(f"h0_{i}", torch.zeros(1, hidden))
            if spec["cell"] == "lstm":
                self.register_buffer(f"c0_{i}", torch.zeros(1, hidden))
            size = out
        if size != vocab_size:
            raise ConfigError(f"model.layers[-1].output_size={size} must be the vocabulary size "
                              f"{vocab_size} (or null)")

    def initial_state(self, batch_size: int) -> State:
        """Each layer's start: the carried state if `stateful`, else zeros."""
        state: State = []
        for i, cell in enumerate(self.cells):
            names = [f"h0_{i}", f"c0_{i}"] if isinstance(cell, nn.LSTM) else [f"h0_{i}"]
            # (1, B, H), as torch's cells take it; a copy, never the buffer itself, which the
            # next training step overwrites while this one's graph may still hold it
            starts = [getattr(self, name).expand(batch_size, -1).unsqueeze(0).clone()
                      for name in names]
            if not self.stateful:
                starts = [torch.zeros_like(s) for s in starts]
            state.append(tuple(starts) if len(starts) == 2 else starts[0])
        return state

    def forward_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits (B, T, vocab) for characters `x` (B, T) from `state` (default: the initial
        one), and the final state: what a sampler feeds back one character at a time."""
        if state is None:
            state = self.initial_state(x.shape[0])
        signal = F.one_hot(x, self.vocab_size).float()
        final: State = []
        for cell, dense, start in zip(self.cells, self.dense, state):
            hidden, end = cell(signal, start)
            signal = dense(hidden)
            final.append(end)
        return signal, final

    def forward(self, x: Tensor) -> Tensor:
        logits, final = self.forward_state(x)
        if self.stateful and self.training:
            with torch.no_grad():
                for i, end in enumerate(final):
                    h, c = end if isinstance(end, tuple) else (end, None)
                    getattr(self, f"h0_{i}").copy_(h[0].mean(0, keepdim=True))
                    if c is not None:
                        getattr(self, f"c0_{i}").copy_(c[0].mean(0, keepdim=True))
        return logits
