"""Character windows of a text file, split by position, with a sorted vocabulary."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from nnrun.data.text import char_text, vocabulary
from nnrun.run import validate
from tests.helpers import make_config


def test_vocabulary_is_sorted_and_stable(text_corpus, data_root):
    assert vocabulary("hello world") == " dehlorw"
    root, text = text_corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5)
    assert data.vocabularies["chars"] == "".join(sorted(set(text)))
    assert data.sizes == Sizes(vocab_size=len(set(text)))
    dlfs = char_text("text/dlfs_input.txt", root=str(data_root))
    assert dlfs.vocabularies["chars"] == ("\n !',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "abcdefghijklmnopqrstuvwxyz")
    assert len(dlfs.vocabularies["chars"]) == 62  # the book's vocabulary (seed-003 L6158)


def test_windows_are_shifted_by_one_and_split_by_position(text_corpus):
    root, text = text_corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5, val_fraction=0.25,
                     batch_size=4, stride=1, shuffle=False)
    vocab = data.vocabularies["chars"]
    decode = lambda row: "".join(vocab[int(i)] for i in row)  # noqa: E731
    n_train = round(len(text) * 0.75)
    x, y = next(data.train.epoch())
    assert x.shape == y.shape == (4, 5)
    assert [decode(r) for r in x] == [text[i:i + 5] for i in range(4)]  # offset by one char
    assert [decode(r) for r in y] == [text[i + 1:i + 6] for i in range(4)]  # shifted target
    train = torch.cat([b[0] for b in data.train.epoch()])
    assert len(train) == n_train - 5
    val = torch.cat([b[0] for b in data.val.epoch()])  # non-overlapping, after the train text
    assert [decode(r) for r in val[:2]] == [text[n_train:n_train + 5],
                                            text[n_train + 5:n_train + 10]]
    strided = char_text("text/tiny.txt", root=str(root), seq_len=5, stride=5, shuffle=False)
    assert decode(next(strided.train.epoch())[0][1]) == text[5:10]
    shuffled = char_text("text/tiny.txt", root=str(root), seq_len=5, val_fraction=0.25,
                         batch_size=1000)
    rows = next(shuffled.train.epoch(torch.Generator().manual_seed(0)))[0]
    assert len(rows) == len(train) and not torch.equal(rows, train)  # the same windows, reordered
    assert sorted(map(decode, rows)) == sorted(map(decode, train))


def test_tinyshakespeare_default_job_composes(data_root):
    cfg = make_config("model=char_lstm", "data=tinyshakespeare", f"data.root={data_root}")
    validate(cfg)
    assert cfg.task._target_ == "nnrun.tasks.next_char.NextCharacter"
    data = instantiate(cfg.data)
    assert data.sizes == Sizes(vocab_size=65)
