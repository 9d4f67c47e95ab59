"""Sequence-to-sequence translation (the KFU textbook's chapter 9, seed-001 L2484-2625,
catalog/001 E11): a word-level tokenizer, a parallel corpus in the opus_books JSON layout,
and a task that trains with teacher forcing and label smoothing and evaluates by greedy
decoding with CER, WER and corpus BLEU.

Every vocabulary gives the special tokens the same ids ([UNK] 0, [PAD] 1, [SOS] 2, [EOS] 3, as
the book's tokenizers do), so source and target share them (catalog/001 pitfall 39).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data, TensorBatches, data_root
from nnrun.errors import DataError
from nnrun.tasks import Task
from nnrun.transformer import PAD_ID, causal_mask, padding_mask

SPECIALS = ("[UNK]", "[PAD]", "[SOS]", "[EOS]")
UNK, PAD, SOS, EOS = range(4)
assert PAD == PAD_ID
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


def _text(codes: Tensor) -> str:
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
            rows.append((_pad([SOS, *s, EOS], seq_len), _pad([SOS, *t], seq_len),
                         _pad([*t, EOS], seq_len)))
            refs.append(" ".join(pretokenize(tgt)))
        if not rows:
            raise DataError(f"data.path={file}: no pair of a split fits data.seq_len={seq_len} "
                            f"(of {len(split)}); raise data.seq_len")
        return [torch.tensor(column) for column in zip(*rows)], refs

    if not train_pairs or not val_pairs:
        raise DataError(f"data.val_fraction={val_fraction} of {len(pairs)} pairs leaves a split "
                        "empty")
    (src, tgt_in, label), _ = tensors(train_pairs)
    (v_src, v_tgt_in, v_label), refs = tensors(val_pairs)
    return Data(train=TensorBatches(src, tgt_in, label, batch_size=batch_size),
                val=TensorBatches(v_src, v_tgt_in, v_label, _codes(refs), batch_size=batch_size,
                                  shuffle=False),
                dims={"src_vocab": src_tok, "tgt_vocab": tgt_tok,
                      "seq_len": seq_len})


# ---- decoding and metrics -------------------------------------------------------------------


@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, max_len: int | None = None) -> list[list[int]]:
    """Translate a (B, S) batch of source ids one token at a time, each time the most likely
    one, from [SOS] until [EOS] or `max_len` decoder positions (default: the model's
    `seq_len`). Returns each sentence's ids without [SOS] and [EOS]."""
    max_len = max_len or model.seq_len
    src_mask = padding_mask(src)
    memory = model.encode(src, src_mask)
    out = torch.full((len(src), 1), SOS, dtype=src.dtype, device=src.device)  # (B, t)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    while out.shape[1] < max_len and not done.all():
        hidden = model.decode(memory, src_mask, out, causal_mask(out.shape[1], src.device))
        step = model.project(hidden[:, -1]).argmax(-1).masked_fill(done, PAD)  # (B,)
        out = torch.cat([out, step[:, None]], dim=1)
        done |= step == EOS
    sentences = []
    for row in out[:, 1:].tolist():
        sentences.append(row[:row.index(EOS)] if EOS in row else row)
    return sentences


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions from a to b."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def text_stats(hypothesis: str, reference: str, max_n: int = 4) -> dict[str, int]:
    """Summable statistics of one translation against its reference: character and word edit
    distances and reference lengths (CER, WER), and for BLEU the words of each and, per n-gram
    order, the clipped matches and the hypothesis's n-grams."""
    hyp, ref = hypothesis.split(), reference.split()
    stats = {"char_edits": edit_distance(hypothesis, reference), "chars": len(reference),
             "word_edits": edit_distance(hyp, ref), "words": len(ref),
             "hyp_len": len(hyp), "ref_len": len(ref)}
    for n in range(1, max_n + 1):
        hyp_grams = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
        ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        stats[f"match{n}"] = sum((hyp_grams & ref_grams).values())
        stats[f"total{n}"] = max(len(hyp) - n + 1, 0)
    return stats


def text_metrics(stats: dict[str, int], max_n: int = 4) -> dict[str, float]:
    """CER and WER (edits over reference length, summed over the corpus) and corpus BLEU-4
    without smoothing (as torchmetrics' CharErrorRate, WordErrorRate and BLEUScore, which the
    book uses, L2574-2587)."""
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    matches = [stats[f"match{n}"] for n in range(1, max_n + 1)]
    totals = [stats[f"total{n}"] for n in range(1, max_n + 1)]
    if min(matches) == 0 or min(totals) == 0:
        bleu = 0.0
    else:
        hyp_len, ref_len = stats["hyp_len"], stats["ref_len"]
        brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
        bleu = brevity * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)
    return {"cer": ratio(stats["char_edits"], stats["chars"]),
            "wer": ratio(stats["word_edits"], stats["words"]), "bleu": bleu}


class Translation(Task):
    """Teacher-forced training with label-smoothed cross-entropy over the target tokens
    ([PAD] ignored); evaluation greedy-decodes every validation sentence and scores it.

    Metrics: `loss` (per target token), `cer`, `wer`, `bleu` (corpus BLEU-4). Sample
    translations go to TensorBoard's TEXT tab as `val/translations`.

    Args:
        label_smoothing: the book's 0.1 (L2610).
        max_len: decoder positions when decoding; null = the model's `seq_len`.
        samples: validation sentences shown in TensorBoard (the book prints 4).
    """

    metric_names = ("loss", "cer", "wer", "bleu")

    def __init__(self, label_smoothing: float = 0.1, max_len: int | None = None,
                 samples: int = 4) -> None:
        self.label_smoothing, self.max_len, self.samples = label_smoothing, max_len, samples

    def _token_loss(self, model: nn.Module, batch: Batch, reduction: str) -> Tensor:
        src, tgt_in, label = batch[:3]
        logits = model(src, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), label.flatten(), ignore_index=PAD,
                               label_smoothing=self.label_smoothing, reduction=reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self._token_loss(model, batch, "mean")

    def translate(self, model: nn.Module, src: Tensor) -> list[str]:
        vocab = model.tgt_vocab
        return [" ".join(vocab[i] for i in ids if i != PAD)
                for ids in greedy_decode(model, src, self.max_len)]

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        label, refs = batch[2], batch[3]
        stats: dict[str, Tensor | int] = {
            "loss": self._token_loss(model, batch, "sum").double(),
            "tokens": int((label != PAD).sum())}
        for hyp, ref in zip(self.translate(model, batch[0]), refs):
            for key, value in text_stats(hyp, _text(ref)).items():
                stats[key] = stats.get(key, 0) + value
        return stats

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        return {"loss": float(stats["loss"]) / max(int(stats["tokens"]), 1),
                **text_metrics(stats)}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """The first `samples` validation sentences: source, reference and translation, as a
        Markdown table (`val/translations`)."""
        model.eval()
        rows, vocab = [], model.src_vocab
        for batch in batches.epoch():
            src, refs = batch[0][:self.samples - len(rows)], batch[3]
            for s, hyp, ref in zip(src.tolist(), self.translate(model, src), refs):
                source = " ".join(vocab[i] for i in s if i not in (PAD, SOS, EOS))
                cells = (text.replace("|", "\\|") for text in (source, _text(ref), hyp))
                rows.append("| " + " | ".join(cells) + " |")
            if len(rows) >= self.samples:
                break
        if not rows:
            return {}
        table = ["| source | reference | translation |", "|---|---|---|", *rows]
        return {"val/translations": "\n".join(table)}
