"""A parallel corpus for translation (the KFU textbook's chapter 9, seed-001 L2484-2562,
catalog/001 E11): a word-level tokenizer and the book's padded id rows, from a file in the
opus_books JSON layout (`data=tatoeba`, `data=opus_books`).

Every vocabulary gives the special tokens the same ids ([UNK] 0, [PAD] 1, [SOS] 2, [EOS] 3, as
the book's tokenizers do), so source and target share them (catalog/001 pitfall 39).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from nnrun.data import Batch, Data, Sizes, data_root
from nnrun.data.batches import move_once
from nnrun.errors import DataError

SPECIALS = ("[UNK]", "[PAD]", "[SOS]", "[EOS]")
UNK, PAD, SOS, EOS = range(4)
_WORD = re.compile(r"\w+|[^\w\s]+")


def pretokenize(text: str) -> list[str]:
    """Words and runs of punctuation, as the `tokenizers` library's `Whitespace` pre-tokenizer
    splits them (`\\w+|[^\\w\\s]+`): "Hello, world!" -> ["Hello", ",", "world", "!"]."""
    return _WORD.findall(text)


class WordTokenizer(Sequence[str]):
    """A word-level vocabulary: the four specials first, then the words (the book's
    `WordLevel` tokenizer, L2484-2497). A sequence of its tokens by id, which is what a model
    is given (an object, not a list, so that Hydra hands it over without copying it into a
    config node, which takes seconds for a vocabulary of tens of thousands of words).

    Args:
        tokens: the tokens by id; the first four must be `SPECIALS`.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}; got {tuple(tokens[:4])}")
        self.tokens = tuple(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def train(cls, sentences: Iterable[str], min_frequency: int = 2) -> WordTokenizer:
        """Every word seen at least `min_frequency` times, most frequent first (ties in
        alphabetical order, so the vocabulary is the same on every run)."""
        counts = Counter(word for sentence in sentences for word in pretokenize(sentence))
        words = sorted((w for w, c in counts.items() if c >= min_frequency and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:  # slice: a tuple of tokens
        return self.tokens[i]

    def __contains__(self, token: object) -> bool:
        return token in self.ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, [UNK] for unknown words; no [SOS]/[EOS]."""
        return [self.ids.get(word, UNK) for word in pretokenize(text)]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Tokens joined by single spaces, special tokens left out unless `skip_special` is
        false."""
        return " ".join(self.tokens[i] for i in ids if not (skip_special and i in (PAD, SOS, EOS)))


def read_pairs(path: Path, src_lang: str, tgt_lang: str) -> list[tuple[str, str]]:
    """(source, target) sentences from a file in the opus_books layout: one JSON object per line
    (JSON Lines, what `datasets.Dataset.to_json` writes, the book's `data.json`, L2556) or one
    JSON list of such objects, each `{"translation": {"en": ..., "ru": ...}}` (other keys, such
    as `id`, are ignored)."""
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(r["translation"][src_lang], r["translation"][tgt_lang]) for r in records]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"data.path={path}: expected JSON Lines or a JSON list of "
                        f'{{"translation": {{"{src_lang}": ..., "{tgt_lang}": ...}}}} records '
                        f"({type(err).__name__}: {err})") from None


def _pad(ids: list[int], length: int) -> list[int]:
    return ids + [PAD] * (length - len(ids))


def _codes(texts: Sequence[str]) -> Tensor:
    """Texts as a (N, longest) tensor of Unicode code points, -1 after each text's end."""
    codes = torch.full((len(texts), max(map(len, texts), default=0)), -1, dtype=torch.int32)
    for i, text in enumerate(texts):
        codes[i, :len(text)] = torch.tensor([ord(c) for c in text], dtype=torch.int32)
    return codes


def codes_to_text(codes: Tensor) -> str:
    """One row of `_codes` back to its text."""
    return "".join(map(chr, codes[codes >= 0].tolist()))


def translation(path: str, root: str | None = None, src_lang: str = "en", tgt_lang: str = "ru",
                seq_len: int = 350,
                max_pairs: int | None = None, min_frequency: int = 2, vocab_from: str = "train",
                val_fraction: float = 0.1, batch_size: int = 8, seed: int = 0) -> Data:
    """A parallel corpus for translation, tokenised and padded to `seq_len` as the book's
    `TranslatorDataset` does (L2505-2545).

    Train batches are (source, decoder input, label) id tensors, each (B, seq_len):
    `[SOS] src [EOS] [PAD]...`, `[SOS] tgt [PAD]...` and `tgt [EOS] [PAD]...`. Validation
    batches add the reference sentence (its pre-tokenised words joined by spaces) as Unicode
    code points, which CER, WER and BLEU compare the decoded translation against.

    Args:
        path: the corpus (`read_pairs`: JSON Lines or a JSON list in the opus_books layout),
            relative to `root` unless absolute.
        root: the data root (`data_root`).
        src_lang, tgt_lang: the keys of the two languages in each record.
        seq_len: the longest sequence with its special tokens; longer pairs are left out (the
            book raises "sentence too long" instead, L2518).
        max_pairs: use only the first pairs of the file (the book's `data_count`); null = all.
        min_frequency: a word needs this many occurrences to enter a vocabulary.
        vocab_from: the sentences the vocabularies are built from: `train` (the training
            split), or `all` (both splits, as the book does, L2557-2558: the validation words
            leak into the vocabulary).
        val_fraction: the share of pairs, drawn at random with `seed`, that validate.
        batch_size: pairs per batch, for training and validation.
    """
    file = data_root(root) / Path(path).expanduser()  # an absolute path stays as it is
    if not file.is_file():
        raise DataError(f"data.path={file} does not exist; put a parallel corpus in the "
                        "opus_books layout there (JSON Lines of {\"translation\": {\"en\": ..., "
                        "\"ru\": ...}}, as datasets' load_dataset('opus_books', 'en-ru')"
                        ".to_json() writes)")
    if vocab_from not in ("train", "all"):
        raise DataError(f"data.vocab_from={vocab_from!r} must be train or all")
    if not 0 < val_fraction < 1:
        raise DataError(f"data.val_fraction={val_fraction} must be in (0, 1), e.g. 0.1")
    pairs = read_pairs(file, src_lang, tgt_lang)[:max_pairs]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = int((1 - val_fraction) * len(pairs))  # the book's int(0.9 * len), L2559
    train_pairs = [pairs[i] for i in order[:n_train]]
    val_pairs = [pairs[i] for i in order[n_train:]]
    fit = train_pairs if vocab_from == "train" else pairs
    src_tok = WordTokenizer.train((s for s, _ in fit), min_frequency)
    tgt_tok = WordTokenizer.train((t for _, t in fit), min_frequency)

    def tensors(split: list[tuple[str, str]]) -> tuple[list[Tensor], list[str]]:
        rows, refs = [], []
        for src, tgt in split:
            s, t = src_tok.encode(src), tgt_tok.encode(tgt)
            if len(s) + 2 > seq_len or len(t) + 1 > seq_len:
                continue
            rows.append(([SOS, *s, EOS], [SOS, *t], [*t, EOS]))
            refs.append(" ".join(pretokenize(tgt)))
        if not rows:
            raise DataError(f"data.path={file}: no pair of a split fits data.seq_len={seq_len} "
                            f"(of {len(split)}); raise data.seq_len")
        # padded to the longest row rather than to seq_len: TokenBatches cuts every batch to
        # its own longest row anyway
        longest = max(len(ids) for row in rows for ids in row)
        return [torch.tensor([_pad(row[i], longest) for row in rows]) for i in range(3)], refs

    if not train_pairs or not val_pairs:
        raise DataError(f"data.val_fraction={val_fraction} of {len(pairs)} pairs leaves a split "
                        "empty")
    train, _ = tensors(train_pairs)
    val, refs = tensors(val_pairs)
    return Data(train=TokenBatches(train, batch_size=batch_size),
                val=TokenBatches(val, [_codes(refs)], batch_size=batch_size, shuffle=False),
                sizes=Sizes(out_features=len(tgt_tok), vocab_size=len(src_tok), seq_len=seq_len),
                vocabularies={"source": src_tok, "target": tgt_tok})


class TokenBatches:
    """Rows of token ids padded with [PAD] at their ends, batched like `TensorBatches` (the same
    seeded order), each batch's id tensors cut to the longest row in it.

    The positions cut off are padding in every row of the batch, which the attention masks and
    the loss ignore, so a model computes the same outputs on fewer positions, up to float
    rounding (the matrix products change shape, 1e-7 in the logits); dropout's random draws
    differ, having fewer elements to draw for. The book pads every row to
    seq_len = 350 (L2527-2533); most sentences are a tenth of that. The rows' lengths stay on
    the CPU, so cutting a batch never waits for the device.

    Args:
        tokens: (N, L) id tensors (source, decoder input, label), padded with [PAD].
        extra: (N, ...) tensors passed along whole, after the ids (the validation references).
        batch_size: rows per batch; the last batch may be smaller.
        shuffle: a new order every epoch from the trainer's generator; False = in order.
        lengths: each id tensor's row lengths, (N,) on the CPU; None = count them.
    """

    def __init__(self, tokens: Sequence[Tensor], extra: Sequence[Tensor] = (), *,
                 batch_size: int, shuffle: bool = True,
                 lengths: Sequence[Tensor] | None = None) -> None:
        assert all(len(t) == len(tokens[0]) for t in (*tokens, *extra))
        self.tokens, self.extra = tuple(tokens), tuple(extra)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.lengths = tuple(lengths) if lengths is not None else tuple(
            (t != PAD).sum(1).cpu() for t in tokens)

    def __len__(self) -> int:
        return math.ceil(len(self.tokens[0]) / self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        n, bs = len(self.tokens[0]), self.batch_size
        order = torch.randperm(n, generator=generator) if self.shuffle and generator is not None \
            else torch.arange(n)                                             # on the CPU
        device = self.tokens[0].device
        for i in range(skip, len(self)):
            rows = order[i * bs:(i + 1) * bs]
            widths = [int(lengths[rows].max()) for lengths in self.lengths]  # no device sync
            index = rows.to(device)
            yield (*(t[index, :w] for t, w in zip(self.tokens, widths)),   # (B, width) each
                   *(t[index] for t in self.extra))

    def to(self, device: torch.device, moved: dict[int, Tensor]) -> TokenBatches:
        return TokenBatches([move_once(t, device, moved) for t in self.tokens],
                            [move_once(t, device, moved) for t in self.extra],
                            batch_size=self.batch_size, shuffle=self.shuffle,
                            lengths=self.lengths)
