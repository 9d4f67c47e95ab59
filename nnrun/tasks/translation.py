"""Translation (the KFU textbook's chapter 9, seed-001 L2563-2625, catalog/001 E11): teacher-forced
training with label smoothing; evaluation by greedy decoding with CER, WER and corpus BLEU. The
data is `nnrun.data.translation`'s, the model `model=transformer`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data
from nnrun.data.translation import EOS, PAD, SOS, WordTokenizer, codes_to_text
from nnrun.errors import ConfigError
from nnrun.models.transformer import causal_mask, padding_mask
from nnrun.tasks import Task


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


def text_stats(hypothesis: str, reference: str, max_n: int = 4) -> dict[str, int]:
    """Summable statistics of one translation against its reference: character and word edit
    distances and reference lengths (CER, WER), and for BLEU the words of each and, per n-gram
    order, the clipped matches and the hypothesis's n-grams."""
    hyp, ref = hypothesis.split(), reference.split()
    stats = {"char_edits": Levenshtein.distance(hypothesis, reference), "chars": len(reference),
             "word_edits": Levenshtein.distance(hyp, ref), "words": len(ref),
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
        self.source: Sequence[str] = ()
        self.target: Sequence[str] = ()

    def setup(self, data: Data) -> None:
        """Take the data's source and target vocabularies, to turn ids into text."""
        if not {"source", "target"} <= set(data.vocabularies):
            raise ConfigError("task=translation needs a parallel corpus (`source` and `target` "
                              "vocabularies), such as data=tatoeba or data=opus_books")
        self.source, self.target = data.vocabularies["source"], data.vocabularies["target"]

    def _token_loss(self, model: nn.Module, batch: Batch, reduction: str) -> Tensor:
        src, tgt_in, label = batch[:3]
        logits = model(src, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), label.flatten(), ignore_index=PAD,
                               label_smoothing=self.label_smoothing, reduction=reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self._token_loss(model, batch, "mean")

    def translate(self, model: nn.Module, src: Tensor) -> list[str]:
        """Greedy translations of a (B, S) batch of source ids, as text."""
        return [" ".join(self.target[i] for i in ids if i != PAD)
                for ids in greedy_decode(model, src, self.max_len)]

    def generate(self, model: nn.Module, prompts: list[str],
                 vocabularies: dict[str, Sequence[str]], **options: Any) -> list[str]:
        """Each prompt translated greedily, tokenised with the run's own source vocabulary
        (a word it never saw is [UNK], as in training)."""
        source = WordTokenizer(vocabularies["source"])
        self.target = vocabularies["target"]
        rows = [[SOS, *source.encode(text), EOS] for text in prompts]
        longest = max(len(row) for row in rows)
        device = next(model.parameters()).device
        src = torch.tensor([row + [PAD] * (longest - len(row)) for row in rows], device=device)
        model.eval()
        return self.translate(model, src)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        label, refs = batch[2], batch[3]
        stats: dict[str, Tensor | int] = {
            "loss": self._token_loss(model, batch, "sum").double(),
            "tokens": int((label != PAD).sum())}
        for hyp, ref in zip(self.translate(model, batch[0]), refs):
            for key, value in text_stats(hyp, codes_to_text(ref)).items():
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
        rows = []
        for batch in batches.epoch():
            src, refs = batch[0][:self.samples - len(rows)], batch[3]
            for s, hyp, ref in zip(src.tolist(), self.translate(model, src), refs):
                source = " ".join(self.source[i] for i in s if i not in (PAD, SOS, EOS))
                cells = (text.replace("|", "\\|") for text in (source, codes_to_text(ref), hyp))
                rows.append("| " + " | ".join(cells) + " |")
            if len(rows) >= self.samples:
                break
        if not rows:
            return {}
        table = ["| source | reference | translation |", "|---|---|---|", *rows]
        return {"val/translations": "\n".join(table)}
