"""A plain text file as windows of characters for next-character language modelling (the
`next_char` task, with its sampler).

After Deep Learning from Scratch chapters 6 and 7 (seed-003 L6116-6175, L6814-6926): the text is
one long sequence of character ids; a window of `seq_len` characters is the input and the same
window shifted by one character is the target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from nnrun.data import Batch, Data, Sizes, data_root
from nnrun.data.batches import move_once
from nnrun.errors import DataError


def vocabulary(text: str) -> str:
    """The characters of `text`, sorted: the same ids in every run (the book's repository
    builds it from `set(text)`, whose order changes between processes; catalog/003b G15)."""
    return "".join(sorted(set(text)))


class CharWindows:
    """Windows of `seq_len + 1` characters cut from one id sequence on demand: a batch is
    gathered from the start positions, so no window is stored twice.

    Args:
        ids: the character ids, (N,) int64.
        starts: the first position of every window, (W,).
        seq_len: input characters per window (the target is the window shifted by one).
        batch_size: windows per batch; the last batch may be smaller.
        shuffle: a new order of the windows every epoch; False = in text order.
        epoch_windows: windows per epoch, a fresh draw each epoch when shuffled (the first ones
            in text order when not); None = all.
    """

    def __init__(self, ids: Tensor, starts: Tensor, seq_len: int, batch_size: int,
                 shuffle: bool = True, epoch_windows: int | None = None) -> None:
        self.ids, self.starts, self.seq_len = ids, starts, seq_len
        self.batch_size, self.shuffle = batch_size, shuffle
        self.epoch_windows = min(epoch_windows or len(starts), len(starts))
        self.offsets = torch.arange(seq_len + 1, device=ids.device)

    def __len__(self) -> int:
        return math.ceil(self.epoch_windows / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        starts, bs = self.starts, self.batch_size
        if self.shuffle and generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator).to(starts.device)]
        starts = starts[:self.epoch_windows]
        for i in range(skip, len(self)):
            windows = self.ids[starts[i * bs:(i + 1) * bs, None] + self.offsets]  # (B, T + 1)
            yield windows[:, :-1], windows[:, 1:]

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> CharWindows:
        return CharWindows(move_once(self.ids, device, moved),
                           move_once(self.starts, device, moved), self.seq_len, self.batch_size,
                           self.shuffle, self.epoch_windows)


def char_text(path: str, root: str | None = None, seq_len: int = 25, val_fraction: float = 0.2,
              batch_size: int = 32, stride: int = 1, shuffle: bool = True,
              epoch_windows: int | None = None) -> Data:
    """A text file as next-character windows, split by position: the first `1 - val_fraction`
    of the characters train, the rest validate.

    Args:
        path: the file, relative to `root` (e.g. `text/dlfs_input.txt`).
        root: the data root; null = a per-user cache directory.
        seq_len: characters per window.
        stride: characters between the starts of consecutive training windows: 1 = every
            window (the book's repository: batches of windows offset by one character), seq_len
            = non-overlapping. Validation windows never overlap.
        shuffle: a new order of the training windows every epoch; False = text order.
        epoch_windows: training windows per epoch, a fresh random draw from all of them each
            epoch (a short epoch on a large file); null = all.

    Sizes: `vocab_size`, the number of distinct characters. The ids are the sorted
    vocabulary's (`vocabulary`), which goes to the task as `vocabularies["chars"]`.
    """
    file = data_root(root) / path
    if not file.is_file():
        raise DataError(f"data.root={data_root(root)} holds no {path}; put the text file there "
                        "or set data.path")
    text = file.read_text(encoding="utf-8")
    vocab = vocabulary(text)
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.int64)
    if not 0 < val_fraction < 1:
        raise DataError(f"data.val_fraction={val_fraction} must be in (0, 1), e.g. 0.2")
    if seq_len < 1 or stride < 1:
        raise DataError(f"data.seq_len={seq_len} and data.stride={stride} must be >= 1")
    n_train = round(len(ids) * (1 - val_fraction))
    train, val = ids[:n_train], ids[n_train:]
    if min(len(train), len(val)) <= seq_len:
        raise DataError(f"data.seq_len={seq_len} is longer than a split of {path} "
                        f"({len(train)} train, {len(val)} val characters)")
    train_starts = torch.arange(0, len(train) - seq_len, stride)
    val_starts = torch.arange(0, len(val) - seq_len, seq_len)
    if epoch_windows is not None and epoch_windows < 1:
        raise DataError(f"data.epoch_windows={epoch_windows} must be >= 1 or null")
    return Data(train=CharWindows(train, train_starts, seq_len, batch_size, shuffle,
                                  epoch_windows),
                val=CharWindows(val, val_starts, seq_len, batch_size, shuffle=False),
                sizes=Sizes(vocab_size=len(vocab)),
                vocabularies={"chars": vocab})
