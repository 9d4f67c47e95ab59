"""Translation: CER, WER and BLEU on hand-checked examples, greedy decoding, and a small model
that learns a toy corpus."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnrun.data.translation import (
    EOS,
    SOS,
    translation,
)
from nnrun.models.transformer import (
    Transformer,
)
from nnrun.run import run
from nnrun.tasks.translation import (
    Translation,
    greedy_decode,
    text_metrics,
    text_stats,
)
from tests.helpers import make_config, toy_corpus


def levenshtein(a, b) -> int:
    """The textbook dynamic programme, to check the library's distances against."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_edit_distance_cer_and_wer():
    assert text_stats("sitting", "kitten")["char_edits"] == 3
    assert text_stats("", "a b")["word_edits"] == 2
    stats = text_stats("the cat sat", "the cat sat on")
    assert (stats["word_edits"], stats["words"]) == (1, 4)   # WER 1/4
    assert (stats["char_edits"], stats["chars"]) == (3, 14)  # " on" is missing: CER 3/14
    metrics = text_metrics(stats)
    assert metrics["wer"] == pytest.approx(0.25) and metrics["cer"] == pytest.approx(3 / 14)
    # corpus CER/WER: summed edits over summed reference lengths
    both = {k: v + text_stats("sitting", "kitten")[k] for k, v in stats.items()}
    assert text_metrics(both)["cer"] == pytest.approx((3 + 3) / (14 + 6))


def test_edit_counts_are_the_levenshtein_distances_of_characters_and_words():
    g = torch.Generator().manual_seed(0)
    words = ["кот", "пёс", "спит", "a", "the", ".", "ест"]
    for _ in range(50):
        hyp, ref = (" ".join(words[int(i)] for i in torch.randint(0, 7, (int(n),), generator=g))
                    for n in torch.randint(0, 9, (2,), generator=g))
        stats = text_stats(hyp, ref)
        assert stats["char_edits"] == levenshtein(hyp, ref)
        assert stats["word_edits"] == levenshtein(hyp.split(), ref.split())


def test_bleu_on_hand_checked_examples():
    same = text_stats("a b c d e", "a b c d e")
    assert text_metrics(same)["bleu"] == pytest.approx(1.0)
    # precisions 5/6 (the is clipped to 1), 3/5, 2/4, 1/3; equal lengths: no brevity penalty
    stats = text_stats("the cat sat on the mat", "the cat sat on a mat")
    assert [stats[f"match{n}"] for n in range(1, 5)] == [5, 3, 2, 1]
    assert [stats[f"total{n}"] for n in range(1, 5)] == [6, 5, 4, 3]
    assert text_metrics(stats)["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert text_metrics(stats)["bleu"] == pytest.approx(0.53728, abs=1e-5)
    # every n-gram matches, but the hypothesis is one word short: exp(1 - 6/5)
    short = text_stats("the cat sat on the", "the cat sat on the mat")
    assert text_metrics(short)["bleu"] == pytest.approx(math.exp(-0.2))
    # no 4-gram in common: BLEU without smoothing is 0
    assert text_metrics(text_stats("the cat is on the mat",
                                   "there is a cat on the mat"))["bleu"] == 0.0


class Scripted(nn.Module):
    """A stand-in model that emits a fixed token sequence per sentence, counting decode calls."""

    def __init__(self, scripts: list[list[int]], seq_len: int = 10, vocab_size: int = 12) -> None:
        super().__init__()
        self.scripts, self.seq_len, self.vocab_size, self.calls = scripts, seq_len, vocab_size, 0

    def encode(self, src, src_mask):
        return torch.zeros(len(src), src.shape[1], 1)

    def decode(self, memory, src_mask, tgt, tgt_mask):
        self.calls += 1
        return tgt.unsqueeze(-1).float()  # the project step reads the position from its length

    def project(self, hidden):
        t = self.calls - 1
        logits = torch.zeros(len(hidden), self.vocab_size)
        for i, script in enumerate(self.scripts):
            logits[i, script[t] if t < len(script) else 11] = 1.0
        return logits


def test_greedy_decoding_stops_at_eos():
    model = Scripted([[5, 6, EOS, 7, 8], [9, EOS]])
    src = torch.tensor([[SOS, 4, EOS], [SOS, 4, EOS]])
    assert greedy_decode(model, src) == [[5, 6], [9]]
    assert model.calls == 3  # stopped once every sentence had its [EOS]
    endless = Scripted([[5] * 20])
    assert greedy_decode(endless, src[:1], max_len=4) == [[5, 5, 5]]  # 4 positions with [SOS]


def test_validation_metrics_do_not_depend_on_the_batch_size(tmp_path):
    """Evaluation adds up statistics over batches: corpus CER/WER/BLEU and per-token loss come
    out the same whether the validation pairs come one at a time or all at once."""
    torch.manual_seed(0)
    path = toy_corpus(tmp_path / "c.jsonl")
    results = []
    for batch_size in (1, 5, 100):
        data = translation(str(path), seq_len=8, batch_size=batch_size)
        if not results:
            model = Transformer(data.sizes.vocab_size, data.sizes.out_features, seq_len=8,
                                d_model=16, layers=1, heads=2, d_ff=16).eval()
        task, totals = Translation(), {}
        task.setup(data)
        with torch.no_grad():
            for batch in data.val.epoch():
                for key, value in task.eval_stats(model, batch).items():
                    totals[key] = totals[key] + value if key in totals else value
        results.append(task.metrics(totals))
    for other in results[1:]:
        assert other == pytest.approx(results[0])
    assert results[0]["cer"] > 0  # an untrained model: the comparison is not between zeros


def test_a_small_transformer_learns_the_toy_corpus(tmp_path):
    """300 steps of teacher forcing, then greedy decoding translates the 12 held-out pairs
    (word combinations never seen in training) almost without error."""
    path = toy_corpus(tmp_path / "corpus.jsonl")
    cfg = make_config("model=transformer_small", "model.d_model=64", "model.layers=2",
                      "model.heads=4", "model.d_ff=128", "data=opus_books", f"data.path={path}",
                      "data.seq_len=8", "data.batch_size=16", "optimizer.lr=3e-3",
                      "trainer.max_steps=300", "trainer.epochs=1000", "trainer.eval_every=1000",
                      "trainer.progress=false", "device=cpu")
    result = run(cfg, tmp_path / "run")
    assert result["val/cer"] < 0.05 and result["val/wer"] < 0.1
    assert result["val/bleu"] > 0.8
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("val/translations/text_summary")[-1].tensor_proto.string_val[0]
    assert "| source | reference | translation |" in text.decode()
