"""Data options (`data=...`): each is a function in a module of this package (`images`, `series`,
`text`, ...) that returns a `Data`; this module holds the interface the runner and the tasks rely
on, and nothing concrete.

- `Data`: the splits, each a `Batches`, and what the data tells the rest of the run:
  `sizes` (a `Sizes`: handed to the model's constructor) and `vocabularies` (the token strings
  a task needs to turn ids back into text).
- `data_root`: where datasets live (`data.root`), and `missing_dataset`, the error for a
  dataset that is not there: helpers for the datasets, not part of the interface (`__all__`,
  what the runner may use).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from nnrun.errors import DataError

__all__ = ["Batch", "Batches", "Data", "Sizes"]

Batch = tuple[Tensor, ...]


class Batches(Protocol):
    """What the trainer needs of a split: its length and one pass over it."""

    def __len__(self) -> int: ...

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        """Yield one pass of batches, shuffled by `generator` if given, less the first `skip`."""
        ...

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> Batches:
        """The same split on `device`; tensors already in `moved` (by id) are shared, not
        copied again."""
        ...


@dataclass(frozen=True)
class Sizes:
    """What a model may need to know of its data. The runner hands each field to the model's
    constructor as a keyword argument of the same name, if the constructor has a parameter of
    that name and the model's YAML does not set it; a class that takes none of them (`Net()`)
    is built as it is.

    A size the data does not give is None; a constructor that needs it (a parameter without a
    default) is refused with a one-line error before anything is written.

    Args:
        in_shape: one sample's input without the batch dimension: (1, 28, 28) for MNIST,
            (window, 1) for a series, (1433,) for Cora's node features; None for token ids,
            whose models take `vocab_size` (and `seq_len`) instead.
        out_features: outputs per sample to learn: the classes, the regression targets, or for
            token outputs the size of the target vocabulary; None where nothing is learned by
            gradient (the patterns a Hopfield memory stores) or where the outputs are the
            input's own tokens (next-character models: `vocab_size`).
        vocab_size: the number of distinct input tokens, for token inputs (characters, source
            words); None for other data.
        seq_len: the longest token sequence, special tokens included; None for other data.
    """

    in_shape: tuple[int, ...] | None = None
    out_features: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None


@dataclass
class Data:
    """The splits of a dataset and what the rest of the run learns of it.

    Args:
        train, val: the splits the trainer fits on and validates on.
        test: the split evaluated once at the end; None for none. It may be `val` itself
            (textbooks that validate on the test set), which the trainer then evaluates once.
        sizes: passed to the model's constructor (`Sizes`).
        vocabularies: for token data, the token strings by id under a name (`chars`, or
            `source` and `target`), so that a task can turn ids into text.
    """

    train: Batches
    val: Batches
    sizes: Sizes
    test: Batches | None = None
    vocabularies: dict[str, Sequence[str]] = field(default_factory=dict)

    def to(self, device: torch.device) -> Data:
        """The splits on `device`; a split that validates and tests stays one object, so the
        trainer can tell it evaluated it already."""
        moved: dict[int, Tensor] = {}
        val = self.val.to(device, moved)
        test = self.test
        if test is self.val:
            test = val
        elif test is not None:
            test = test.to(device, moved)
        return Data(self.train.to(device, moved), val, self.sizes, test, self.vocabularies)


def data_root(root: str | None) -> Path:
    """`data.root` if set, else a per-user cache directory."""
    if root:
        return Path(root).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "nnrun"


def missing_dataset(name: str, root: Path, where: str, download: bool,
                    err: Exception) -> DataError:
    """The error for a dataset that is not under `root/where` and could not be downloaded, or
    whose files there cannot be read."""
    reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    folder = root / where
    if folder.is_dir() and any(folder.iterdir()):
        return DataError(
            f"data.root={root}: the {name} files in {folder} cannot be read ({reason}); replace "
            f"them with intact copies, or delete them and run online with data.download=true")
    tried = "a download failed (offline?)" if download else "data.download=false"
    return DataError(
        f"data.root={root} holds no {name} ({tried}: {reason}); put the "
        f"files in {root / where} or run online with data.download=true to fetch them")
