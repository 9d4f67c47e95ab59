"""Next-character language modelling on a plain text file: windows of characters (data), the
cross-entropy task, and a sampler that writes generated text to TensorBoard.

After Deep Learning from Scratch chapters 6 and 7 (seed-003 L6116-6175, L6814-6926): the text is
one long sequence of character ids; a window of `seq_len` characters is the input and the same
window shifted by one character is the target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Data, _move, data_root
from nnrun.errors import ConfigError, DataError
from nnrun.tasks import Task, _check_reduction


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
        vocab: the vocabulary, id -> character (for samplers).
        batch_size: windows per batch; the last batch may be smaller.
        shuffle: a new order of the windows every epoch; False = in text order.
        epoch_windows: windows per epoch, a fresh draw each epoch when shuffled (the first ones
            in text order when not); None = all.
    """

    def __init__(self, ids: Tensor, starts: Tensor, seq_len: int, vocab: str, batch_size: int,
                 shuffle: bool = True, epoch_windows: int | None = None) -> None:
        self.ids, self.starts, self.seq_len, self.vocab = ids, starts, seq_len, vocab
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
        return CharWindows(_move(self.ids, device, moved), _move(self.starts, device, moved),
                           self.seq_len, self.vocab, self.batch_size, self.shuffle,
                           self.epoch_windows)


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

    Model dims: `vocab_size`. The ids are the sorted vocabulary's (`vocabulary`).
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
    return Data(train=CharWindows(train, train_starts, seq_len, vocab, batch_size, shuffle,
                                  epoch_windows),
                val=CharWindows(val, val_starts, seq_len, vocab, batch_size, shuffle=False),
                dims={"vocab_size": len(vocab)})


class NextCharacter(Task):
    """Predict every next character of a window: cross-entropy per character; loss, accuracy
    and bits per character on evaluation; generated text in TensorBoard.

    Args:
        reduction: the training loss over a batch's characters: `mean`, or `sum` (the book's
            repository sums over batch, time and classes, catalog/003b G17).
        sample_every: steps between samples written to TensorBoard (`samples/text`); one is
            always written at the end of the run.
        sample_len: characters per sample.
        temperature: divides the logits before sampling (1 = the model's distribution).
        prime: the text the sample starts from; null = the first character of the
            validation text.
        seed: seeds the sampler's own generator, so sampling never moves the training's
            random state.
    """

    metric_names = ("loss", "acc", "bpc")

    def __init__(self, reduction: str = "mean", sample_every: int | None = None,
                 sample_len: int = 200, temperature: float = 1.0, prime: str | None = None,
                 seed: int = 0) -> None:
        self.reduction = _check_reduction(reduction)
        if sample_every is not None and sample_every <= 0:
            raise ConfigError(f"task.sample_every={sample_every} must be positive or null")
        if temperature <= 0:
            raise ConfigError(f"task.temperature={temperature} must be > 0")
        self.views_every, self.sample_len = sample_every, sample_len
        self.temperature, self.prime = temperature, prime
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction=self.reduction)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        x, y = batch
        logits = model(x).flatten(0, 1).float()
        return {"n": y.numel(),
                "loss": F.cross_entropy(logits, y.flatten(), reduction="sum").double(),
                "correct": (logits.argmax(1) == y.flatten()).sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        n = float(stats["n"])
        loss = float(stats["loss"]) / n
        return {"loss": loss, "acc": float(stats["correct"]) / n, "bpc": loss / math.log(2)}

    def _prime(self, batches: CharWindows) -> str:
        """The text a sample starts from; a ConfigError if the vocabulary lacks any of it."""
        prime = self.prime or batches.vocab[int(batches.ids[0])]
        missing = sorted(set(prime) - set(batches.vocab))
        if missing:
            raise ConfigError(f"task.prime={prime!r} has characters outside the vocabulary: "
                              f"{missing}")
        return prime

    def check(self, data: Data) -> None:
        """A prime the text cannot spell fails now, not at the first sample."""
        self._prime(data.val)

    @torch.no_grad()
    def views(self, model: nn.Module, batches: CharWindows) -> dict:
        """`samples/text`: `sample_len` characters drawn one at a time from the model's softmax,
        starting from `prime` and feeding the recurrent state forward (`model.forward_state`);
        indented as a Markdown code block, so TensorBoard keeps the line breaks."""
        vocab = batches.vocab
        prime = self._prime(batches)
        model.eval()
        x = torch.tensor([[vocab.index(c) for c in prime]], device=batches.ids.device)
        logits, state = model.forward_state(x)
        out = []
        for _ in range(self.sample_len):
            probs = torch.softmax(logits[0, -1].float().cpu() / self.temperature, dim=-1)
            i = int(torch.multinomial(probs, 1, generator=self.generator))
            out.append(vocab[i])
            logits, state = model.forward_state(x.new_tensor([[i]]), state)
        text = prime + "".join(out)
        return {"samples/text": "\n".join("    " + line for line in text.split("\n"))}
