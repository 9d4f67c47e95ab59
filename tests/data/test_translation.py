"""A parallel corpus: the word tokenizer, both file layouts, the book's id rows and vocabularies."""

from __future__ import annotations

import json

import pytest
import torch

from nnrun.data.batches import TensorBatches
from nnrun.data.translation import (
    EOS,
    PAD,
    SOS,
    SPECIALS,
    UNK,
    TokenBatches,
    WordTokenizer,
    pretokenize,
    read_pairs,
    translation,
)
from nnrun.errors import DataError
from tests.helpers import toy_corpus


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
    # [SOS] The big cat sleeps . [EOS]; [SOS] Кот большой спит .; Кот большой спит . [EOS]: every
    # pair has the same length, so no batch needs [PAD] (the book pads each row to seq_len)
    assert src.shape == (108, 7) and tgt_in.shape == label.shape == (108, 5)
    assert (src[:, 0] == SOS).all() and (src[:, 6] == EOS).all()
    assert (tgt_in[:, 0] == SOS).all() and (tgt_in != PAD).all()
    assert torch.equal(label[:, :4], tgt_in[:, 1:5]) and (label[:, 4] == EOS).all()
    v_src, _, _, refs = next(data.val.epoch())
    assert len(v_src) == 12 and refs.shape[0] == 12
    assert data.sizes.seq_len == 8
    assert data.vocabularies["source"][:4] == SPECIALS == data.vocabularies["target"][:4]
    # the same split and vocabulary on every build
    again = translation(str(path), seq_len=8, batch_size=200, val_fraction=0.1)
    assert torch.equal(next(again.train.epoch())[0], src)
    with pytest.raises(DataError, match="seq_len"):  # no pair fits
        translation(str(path), seq_len=6)


def test_batches_are_cut_to_their_longest_row():
    """Each batch keeps only the positions some row of it uses; the rows come in the same seeded
    order as `TensorBatches` gives."""
    rows = torch.tensor([[SOS, 4, 5, 6, EOS, PAD], [SOS, 4, EOS, PAD, PAD, PAD],
                         [SOS, 7, 8, EOS, PAD, PAD], [SOS, EOS, PAD, PAD, PAD, PAD]])
    extra = torch.arange(4)
    batches = TokenBatches([rows], [extra], batch_size=2, shuffle=False)
    assert [tuple(b[0].shape) for b in batches.epoch()] == [(2, 5), (2, 4)]
    assert torch.equal(torch.cat([b[1] for b in batches.epoch()]), extra)
    shuffled = TokenBatches([rows], [extra], batch_size=2)
    order = torch.cat([b[1] for b in shuffled.epoch(torch.Generator().manual_seed(3))])
    reference = TensorBatches(rows, extra, batch_size=2)
    assert torch.equal(order, torch.cat([b[1] for b in reference.epoch(
        torch.Generator().manual_seed(3))]))
    for src, index in shuffled.epoch(torch.Generator().manual_seed(3)):
        assert torch.equal(src, rows[index][:, :src.shape[1]])        # nothing but padding cut
        assert (rows[index][:, src.shape[1]:] == PAD).all()
        assert (src[:, -1] != PAD).any()                               # and all of it
    assert [tuple(b[0].shape) for b in shuffled.epoch(skip=1)] == [(2, 4)]


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
    assert "common" in data.vocabularies["source"] and "rare" not in data.vocabularies["source"]
    book = translation(str(path), vocab_from="all", val_fraction=0.5, seq_len=8, seed=seed)
    assert "rare" in book.vocabularies["source"] and "редкий" in book.vocabularies["target"]


def test_a_missing_corpus_names_its_path(tmp_path):
    with pytest.raises(DataError, match="opus_books/en-ru.jsonl does not exist"):
        translation("opus_books/en-ru.jsonl", root=str(tmp_path))
