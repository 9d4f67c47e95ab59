"""The textbook's Transformer (nnrun.transformer) and translation (nnrun.seq2seq): every block,
the masks, the tokenizer and corpus, CER/WER/BLEU on hand-checked examples, greedy decoding,
and a small model that learns a toy EN->RU corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_config
from torch import nn

from nnrun.errors import DataError
from nnrun.run import run, validate
from nnrun.seq2seq import (
    EOS,
    PAD,
    SOS,
    SPECIALS,
    UNK,
    Translation,
    WordTokenizer,
    edit_distance,
    greedy_decode,
    pretokenize,
    read_pairs,
    text_metrics,
    text_stats,
    translation,
)
from nnrun.transformer import (
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForwardBlock,
    InputEmbedding,
    MultiHeadAttention,
    NormalizationLayer,
    PositionalEncoding,
    ResidualConnection,
    Transformer,
    causal_mask,
    padding_mask,
    target_mask,
)

ADJ = {"big": "большой", "small": "маленький", "red": "красный", "old": "старый"}
NOUN = {"cat": "кот", "dog": "пёс", "bird": "птенец", "fox": "лис", "bear": "медведь",
        "wolf": "волк"}
VERB = {"sleeps": "спит", "runs": "бежит", "eats": "ест", "sings": "поёт", "jumps": "прыгает"}


def toy_corpus(path: Path, as_list: bool = False) -> Path:
    """120 pairs "The big cat sleeps." -> "Кот большой спит." in the opus_books layout: every
    word maps to one word, the adjective moves after the noun."""
    records = [{"id": str(i), "translation": {
        "en": f"The {a} {n} {v}.", "ru": f"{NOUN[n].capitalize()} {ADJ[a]} {VERB[v]}."}}
        for i, (a, n, v) in enumerate((a, n, v) for a in ADJ for n in NOUN for v in VERB)]
    if as_list:
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    return path


def vocab(size: int) -> list[str]:
    return [*SPECIALS, *(f"w{i}" for i in range(size - len(SPECIALS)))]


def small_model(**kwargs) -> Transformer:
    args = {"d_model": 16, "layers": 2, "heads": 4, "d_ff": 32, "dropout": 0.1, **kwargs}
    return Transformer(vocab(11), vocab(13), seq_len=12, **args)


def assert_every_parameter_has_a_gradient(module: nn.Module) -> None:
    missing = [name for name, p in module.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


# ---- blocks ---------------------------------------------------------------------------------


def test_normalization_layer_is_the_books_formula():
    torch.manual_seed(0)
    norm = NormalizationLayer(6)
    with torch.no_grad():
        norm.alpha.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 6, requires_grad=True)
    y = norm(x)
    # unbiased std (n - 1), eps outside the square root (seed-001 L2246)
    mean, std = x.mean(-1, keepdim=True), (x - x.mean(-1, keepdim=True)).square().sum(
        -1, keepdim=True).div(5).sqrt()
    assert torch.allclose(y, norm.alpha * (x - mean) / (std + 1e-6) + norm.bias, atol=1e-6)
    y.square().sum().backward()
    assert_every_parameter_has_a_gradient(norm)


def test_positional_encoding_values():
    pe = PositionalEncoding(d_model=8, seq_len=5, dropout=0.0)
    out = pe(torch.zeros(1, 5, 8))
    pos = torch.arange(5.0)
    assert torch.allclose(out[0, :, 0], torch.sin(pos))                    # i = 0
    assert torch.allclose(out[0, :, 1], torch.cos(pos))
    assert torch.allclose(out[0, :, 2], torch.sin(pos / 10000 ** (2 / 8)))  # i = 1
    assert torch.allclose(out[0, :, 7], torch.cos(pos / 10000 ** (6 / 8)))  # i = 3
    assert pe(torch.zeros(2, 3, 8)).shape == (2, 3, 8)  # shorter sequences use the first rows


def test_input_embedding_is_scaled_by_sqrt_d_model():
    emb = InputEmbedding(d_model=16, vocab_size=7)
    ids = torch.tensor([[1, 2, 6]])
    assert torch.allclose(emb(ids), emb.embedding.weight[ids] * 4)


@pytest.mark.parametrize("block,call", [
    (FeedForwardBlock(8, 16, 0.1), lambda m, x, mem, sm, tm: m(x)),
    (InputEmbedding(8, 10), lambda m, x, mem, sm, tm: m(torch.tensor([[1, 2, 3, 9]]))),
    (ResidualConnection(8, 0.1), lambda m, x, mem, sm, tm: m(x, nn.Tanh())),
    (MultiHeadAttention(8, 2, 0.1), lambda m, x, mem, sm, tm: m(x, mem, mem, sm)),
    (EncoderBlock(8, 2, 16, 0.1), lambda m, x, mem, sm, tm: m(mem, sm)),
    (Encoder([EncoderBlock(8, 2, 16, 0.1) for _ in range(2)], 8),
     lambda m, x, mem, sm, tm: m(mem, sm)),
    (DecoderBlock(8, 2, 16, 0.1), lambda m, x, mem, sm, tm: m(x, mem, sm, tm)),
    (Decoder([DecoderBlock(8, 2, 16, 0.1) for _ in range(2)], 8),
     lambda m, x, mem, sm, tm: m(x, mem, sm, tm)),
], ids=["feed_forward", "embedding", "residual", "attention", "encoder_block", "encoder",
        "decoder_block", "decoder"])
def test_block_forward_backward(block, call):
    torch.manual_seed(0)
    x, memory = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    src_mask = padding_mask(torch.tensor([[5, 6, 7, PAD, PAD], [5, 6, 7, 8, 9]]))
    tgt_mask = target_mask(torch.tensor([[SOS, 5, 6, PAD], [SOS, 5, 6, 7]]))
    out = call(block, x, memory, src_mask, tgt_mask)
    assert out.shape[-1] == 8 and torch.isfinite(out).all()
    out.square().sum().backward()
    assert_every_parameter_has_a_gradient(block)


def test_attention_heads_split_and_merge_and_keep_their_weights():
    attention = MultiHeadAttention(d_model=8, heads=2, dropout=0.0)
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    out = attention(q, kv, kv, None)
    assert out.shape == (3, 4, 8)
    assert attention.attention_scores.shape == (3, 2, 4, 6)
    assert torch.allclose(attention.attention_scores.sum(-1), torch.ones(3, 2, 4))


# ---- masks ----------------------------------------------------------------------------------


def test_mask_shapes_and_values():
    tokens = torch.tensor([[SOS, 5, PAD], [SOS, 5, 6]])
    assert padding_mask(tokens).shape == (2, 1, 1, 3)
    assert causal_mask(3).tolist() == [[[True, False, False], [True, True, False],
                                         [True, True, True]]]
    mask = target_mask(tokens)
    assert mask.shape == (2, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]


def test_causal_mask_hides_the_future():
    torch.manual_seed(0)
    model = small_model().eval()
    src = torch.tensor([[SOS, 4, 5, 6, EOS]])
    tgt = torch.tensor([[SOS, 4, 5, 6, 7, 8]])
    changed = tgt.clone()
    changed[0, 3:] = torch.tensor([9, 10, 11])  # every token from position 3 on
    a, b = model(src, tgt), model(src, changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)  # positions 0-2 see none of them
    assert not torch.allclose(a[0, 3:], b[0, 3:], atol=1e-3)


def test_padding_changes_no_output():
    torch.manual_seed(0)
    model = small_model().eval()
    src = torch.tensor([[SOS, 4, 5, 6, EOS]])
    tgt = torch.tensor([[SOS, 7, 8]])
    padded_src = torch.tensor([[SOS, 4, 5, 6, EOS, PAD, PAD, PAD]])
    padded_tgt = torch.tensor([[SOS, 7, 8, PAD, PAD]])
    plain = model(src, tgt)
    padded = model(padded_src, padded_tgt)
    assert torch.allclose(plain[0], padded[0, :3], atol=1e-5)
    memory = model.encode(src, padding_mask(src))
    padded_memory = model.encode(padded_src, padding_mask(padded_src))
    assert torch.allclose(memory, padded_memory[:, :5], atol=1e-5)
    # what the encoder leaves at padded positions never reaches the decoder
    noisy = padded_memory.clone()
    noisy[:, 5:] = torch.randn(1, 3, 16)
    mask = padding_mask(padded_src)
    assert torch.allclose(model.decode(noisy, mask, tgt, target_mask(tgt)),
                          model.decode(padded_memory, mask, tgt, target_mask(tgt)), atol=1e-6)


# ---- the model ------------------------------------------------------------------------------


def test_small_model_forward_backward():
    torch.manual_seed(0)
    model = small_model()
    src = torch.tensor([[SOS, 4, 5, EOS, PAD], [SOS, 6, 7, 8, EOS]])
    tgt = torch.tensor([[SOS, 4, 5, PAD], [SOS, 6, 7, 8]])
    logits = model(src, tgt)
    assert logits.shape == (2, 4, 13)
    logits.square().mean().backward()
    assert_every_parameter_has_a_gradient(model)


def test_the_books_model_builds_and_trains_a_step():
    """512 wide, 6 layers, 8 heads, d_ff 2048: 44,103,680 parameters besides the embeddings
    and the projection (catalog/001 E11: "roughly 44.1M")."""
    torch.manual_seed(0)
    cfg = make_config("experiment=kfu_pytorch/ch9_transformer")
    from hydra.utils import instantiate

    v_src, v_tgt = 20, 30
    model = instantiate(cfg.model, src_vocab=vocab(v_src), tgt_vocab=vocab(v_tgt), seq_len=350)
    total = sum(p.numel() for p in model.parameters())
    assert total - 512 * (v_src + 2 * v_tgt) - v_tgt == 44_103_680
    src = torch.tensor([[SOS, 4, 5, 6, EOS, PAD]])
    tgt = torch.tensor([[SOS, 7, 8, 9]])
    model(src, tgt).logsumexp(-1).sum().backward()
    assert_every_parameter_has_a_gradient(model)


# ---- tokenizer and corpus -------------------------------------------------------------------


def test_pretokenize_splits_words_and_punctuation():
    assert pretokenize("'But I can't go,' thought she.") == [
        "'", "But", "I", "can", "'", "t", "go", ",'", "thought", "she", "."]
    assert pretokenize("Но я не могу идти, -- думала") == [
        "Но", "я", "не", "могу", "идти", ",", "--", "думала"]


def test_tokenizer_specials_min_frequency_and_round_trip():
    tok = WordTokenizer.train(["a cat .", "a dog .", "a cat !"], min_frequency=2)
    assert tok.tokens[:4] == ("[UNK]", "[PAD]", "[SOS]", "[EOS]")
    assert (UNK, PAD, SOS, EOS) == (0, 1, 2, 3)
    assert tok.tokens[4:] == ("a", ".", "cat")  # most frequent first; dog and ! seen once
    ids = tok.encode("a cat .")
    assert ids == [4, 6, 5] and tok.decode(ids) == "a cat ."
    assert tok.encode("a dog !") == [4, UNK, UNK]
    assert tok.decode([SOS, 4, 6, EOS, PAD]) == "a cat"
    assert tok.decode([SOS, 4, EOS], skip_special=False) == "[SOS] a [EOS]"
    assert WordTokenizer(tok.tokens).encode("cat a") == [6, 4]
    with pytest.raises(ValueError):
        WordTokenizer(["a", "b"])


@pytest.mark.parametrize("as_list", [False, True], ids=["jsonl", "json_list"])
def test_read_pairs_reads_both_layouts(tmp_path, as_list):
    pairs = read_pairs(toy_corpus(tmp_path / "c.json", as_list), "en", "ru")
    assert len(pairs) == 120 and pairs[0] == ("The big cat sleeps.", "Кот большой спит.")


def test_translation_data_is_the_books_layout(tmp_path):
    path = toy_corpus(tmp_path / "c.jsonl")
    data = translation(str(path), seq_len=8, batch_size=200, val_fraction=0.1)
    src, tgt_in, label = next(data.train.epoch())
    assert src.shape == tgt_in.shape == label.shape == (108, 8)
    # [SOS] The big cat sleeps . [EOS] [PAD]; [SOS] Кот большой спит . [PAD]...
    assert (src[:, 0] == SOS).all() and (src[:, 6] == EOS).all() and (src[:, 7] == PAD).all()
    assert (tgt_in[:, 0] == SOS).all() and (tgt_in[:, 5:] == PAD).all()
    assert torch.equal(label[:, :4], tgt_in[:, 1:5]) and (label[:, 4] == EOS).all()
    v_src, _, _, refs = next(data.val.epoch())
    assert len(v_src) == 12 and refs.shape[0] == 12
    assert data.dims["seq_len"] == 8
    assert data.dims["src_vocab"][:4] == SPECIALS == data.dims["tgt_vocab"][:4]
    # the same split and vocabulary on every build
    again = translation(str(path), seq_len=8, batch_size=200, val_fraction=0.1)
    assert torch.equal(next(again.train.epoch())[0], src)
    with pytest.raises(DataError, match="seq_len"):  # no pair fits
        translation(str(path), seq_len=6)


def test_vocabularies_long_pairs_and_vocab_from(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = ([{"translation": {"en": f"w{i % 5} common", "ru": f"v{i % 5} общий"}}
             for i in range(20)]
            + [{"translation": {"en": "rare rare", "ru": "редкий редкий"}},
               {"translation": {"en": " ".join(["long"] * 9), "ru": "длинный"}}])
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))

    def references(data) -> list[str]:
        return ["".join(chr(c) for c in row.tolist() if c >= 0)
                for batch in data.val.epoch() for row in batch[3]]

    for seed in range(20):  # a split that puts the rare pair into validation
        data = translation(str(path), vocab_from="train", val_fraction=0.5, seq_len=8,
                           batch_size=100, seed=seed)
        if "редкий редкий" in references(data):
            break
    else:
        pytest.fail("no seed put the rare pair into validation")
    n_pairs = len(next(data.train.epoch())[0]) + len(references(data))
    assert n_pairs == 21  # the 9-word pair does not fit seq_len 8 and is left out
    assert "common" in data.dims["src_vocab"] and "rare" not in data.dims["src_vocab"]
    book = translation(str(path), vocab_from="all", val_fraction=0.5, seq_len=8, seed=seed)
    assert "rare" in book.dims["src_vocab"] and "редкий" in book.dims["tgt_vocab"]


def test_a_missing_corpus_names_its_path(tmp_path):
    with pytest.raises(DataError, match="opus_books/en-ru.jsonl does not exist"):
        translation("opus_books/en-ru.jsonl", root=str(tmp_path))


# ---- metrics --------------------------------------------------------------------------------


def test_edit_distance_cer_and_wer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    stats = text_stats("the cat sat", "the cat sat on")
    assert (stats["word_edits"], stats["words"]) == (1, 4)   # WER 1/4
    assert (stats["char_edits"], stats["chars"]) == (3, 14)  # " on" is missing: CER 3/14
    metrics = text_metrics(stats)
    assert metrics["wer"] == pytest.approx(0.25) and metrics["cer"] == pytest.approx(3 / 14)
    # corpus CER/WER: summed edits over summed reference lengths
    both = {k: v + text_stats("sitting", "kitten")[k] for k, v in stats.items()}
    assert text_metrics(both)["cer"] == pytest.approx((3 + 3) / (14 + 6))


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


# ---- greedy decoding ------------------------------------------------------------------------


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
            model = Transformer(data.dims["src_vocab"], data.dims["tgt_vocab"], seq_len=8,
                                d_model=16, layers=1, heads=2, d_ff=16).eval()
        task, totals = Translation(), {}
        with torch.no_grad():
            for batch in data.val.epoch():
                for key, value in task.eval_stats(model, batch).items():
                    totals[key] = totals[key] + value if key in totals else value
        results.append(task.metrics(totals))
    for other in results[1:]:
        assert other == pytest.approx(results[0])
    assert results[0]["cer"] > 0  # an untrained model: the comparison is not between zeros


# ---- configs and learning -------------------------------------------------------------------


def test_the_preset_and_options_compose():
    for overrides in (["experiment=kfu_pytorch/ch9_transformer"],
                      ["model=transformer_small", "data=opus_books"]):
        cfg = make_config(*overrides)
        validate(cfg)
        assert cfg.task._target_ == "nnrun.seq2seq.Translation"
    cfg = make_config("experiment=kfu_pytorch/ch9_transformer")
    assert (cfg.model.d_model, cfg.model.layers, cfg.data.seq_len) == (512, 6, 350)
    assert (cfg.optimizer.lr, cfg.optimizer.eps, cfg.data.batch_size) == (1e-4, 1e-9, 8)


def test_a_small_transformer_learns_the_toy_corpus(tmp_path):
    """300 steps of teacher forcing, then greedy decoding translates the 12 held-out pairs
    (word combinations never seen in training) almost without error."""
    path = toy_corpus(tmp_path / "corpus.jsonl")
    cfg = make_config("model=transformer_small", "data=opus_books", f"data.path={path}",
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
