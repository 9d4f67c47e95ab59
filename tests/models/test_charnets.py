"""Next-character language modelling (Deep Learning from Scratch ch. 6-7): the text windows, the
stacked recurrent models, the stateful option, the sampler, and the ch. 7 reproduction."""

from __future__ import annotations

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun.charnets import CharRNN
from nnrun.errors import ConfigError
from nnrun.run import run, validate
from nnrun.text import NextCharacter, char_text, vocabulary

MIXED = [{"cell": "gru", "hidden_size": 12, "output_size": 7},
         {"cell": "lstm", "hidden_size": 10, "output_size": None}]


@pytest.fixture
def corpus(tmp_path):
    text = "to be, or not to be: that is the question.\n" * 20
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "tiny.txt").write_text(text)
    return tmp_path, text


def test_vocabulary_is_sorted_and_stable(corpus, data_root):
    assert vocabulary("hello world") == " dehlorw"
    root, text = corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5)
    assert data.train.vocab == "".join(sorted(set(text)))
    assert data.dims == {"vocab_size": len(set(text))}
    dlfs = char_text("text/dlfs_input.txt", root=str(data_root))
    assert dlfs.train.vocab == "\n !',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert len(dlfs.train.vocab) == 62  # the book's vocabulary (seed-003 L6158)


def test_windows_are_shifted_by_one_and_split_by_position(corpus):
    root, text = corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5, val_fraction=0.25,
                     batch_size=4, stride=1, shuffle=False)
    vocab = data.train.vocab
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


@pytest.mark.parametrize("layers", [
    [{"cell": "lstm", "hidden_size": 16}],
    [{"cell": "rnn", "hidden_size": 16, "output_size": 8}, {"cell": "rnn", "hidden_size": 12}],
    MIXED,
])
@pytest.mark.parametrize("stateful", [False, True])
def test_char_models_forward_and_backward(layers, stateful):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=9, layers=layers, stateful=stateful)
    x = torch.randint(0, 9, (3, 6))
    logits = model(x)
    assert logits.shape == (3, 6, 9)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_layer_sizes_are_checked():
    with pytest.raises(ConfigError, match="vocabulary"):
        CharRNN(vocab_size=9, layers=[{"cell": "rnn", "hidden_size": 4, "output_size": 5}])
    with pytest.raises(ConfigError, match="cell"):
        CharRNN(vocab_size=9, layers=[{"cell": "transformer", "hidden_size": 4}])


def test_stateful_carries_the_batch_mean_state_detached():
    torch.manual_seed(0)
    model = CharRNN(vocab_size=5, layers=MIXED, stateful=True)
    x = torch.randint(0, 5, (4, 7))
    logits, final = model.forward_state(x)
    model(x)  # a training step: the carried state becomes the batch mean of the final one
    h_gru, (h_lstm, c_lstm) = final
    torch.testing.assert_close(model.h0_0, h_gru[0].mean(0, keepdim=True))
    torch.testing.assert_close(model.h0_1, h_lstm[0].mean(0, keepdim=True))
    torch.testing.assert_close(model.c0_1, c_lstm[0].mean(0, keepdim=True))
    assert not model.h0_0.requires_grad and model.h0_0.grad_fn is None  # detached
    # the next batch starts from it, so the same input now gives other logits...
    loss = model(x).sum()
    assert not torch.allclose(model.forward_state(x)[0], logits)
    loss.backward()  # ...and backward stops at the carried state (no graph into the last batch)
    # evaluation reads the carried state but leaves it as it is
    model.eval()
    before = model.h0_0.clone()
    model(x)
    assert torch.equal(model.h0_0, before)
    # stateless: every batch starts from zeros
    stateless = CharRNN(vocab_size=5, layers=MIXED)
    stateless.load_state_dict(model.state_dict())
    stateless.train()
    first = stateless(x)
    assert torch.equal(stateless(x), first)


def test_sampler_writes_text_to_tensorboard(tmp_path, data_root):
    cfg = make_config("model=char_lstm", "data=dlfs_text", f"data.root={data_root}",
                      "model.layers=[{cell: lstm, hidden_size: 16, output_size: null}]",
                      "data.epoch_windows=256", "task.sample_every=4", "task.sample_len=50",
                      "trainer.epochs=1", "trainer.progress=false", "device=cpu")
    validate(cfg)
    result = run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["steps"] == 8
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    texts = events.Tensors("samples/text/text_summary")
    assert [t.step for t in texts] == [4, 8, 8]  # every 4 steps, and at the end
    sample = texts[-1].tensor_proto.string_val[0].decode()
    lines = sample.split("\n")
    assert all(line.startswith("    ") for line in lines)  # a Markdown code block
    chars = "\n".join(line[4:] for line in lines)
    assert len(chars) == 1 + 50 and set(chars) <= set(char_text(
        "text/dlfs_input.txt", root=str(data_root)).train.vocab)
    assert {"val/loss", "val/acc", "val/bpc"} <= set(result)


def test_sampling_leaves_the_training_random_state_alone(corpus):
    root, _ = corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5)
    model = CharRNN(vocab_size=data.dims["vocab_size"], layers=MIXED)
    task = NextCharacter(sample_len=20, prime="to be", seed=3)
    state = torch.get_rng_state()
    text = task.views(model, data.val)["samples/text"]
    assert text.startswith("    to be") and len(text) == 4 + 5 + 20 + 4 * text.count("\n")
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        NextCharacter(prime="XYZ").views(model, data.val)


def test_a_prime_the_text_cannot_spell_fails_before_training(tmp_path, data_root):
    cfg = make_config("model=char_lstm", "data=dlfs_text", f"data.root={data_root}",
                      "task.prime='☃'", "trainer.progress=false", "device=cpu")
    with pytest.raises(ConfigError, match="task.prime='☃' has characters outside"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_tinyshakespeare_default_job_composes(data_root):
    cfg = make_config("model=char_lstm", "data=tinyshakespeare", f"data.root={data_root}")
    validate(cfg)
    assert cfg.task._target_ == "nnrun.text.NextCharacter"
    data = instantiate(cfg.data)
    assert data.dims == {"vocab_size": 65}


def test_ch7_char_lstm_reproduces_the_repository_val_loss(tmp_path, data_root):
    """The book's repository: "Validation loss after 1 epochs is 2.331" (catalog/003b E7.3)."""
    cfg = make_config("experiment=dlfs/ch7_char_lstm", f"data.root={data_root}",
                      "trainer.progress=false", "device=cpu")
    result = run(cfg, tmp_path / "run")
    assert result["steps"] == 2499
    assert abs(result["val/loss"] - 2.33) <= 0.25
    assert result["expected"][0]["verdict"] == "reproduced"
