"""Stacked recurrent next-character models (Deep Learning from Scratch ch. 6-7), stateful or not."""

from __future__ import annotations

import pytest
import torch

from nnrun.errors import ConfigError
from nnrun.models.charnets import CharRNN

MIXED = [{"cell": "gru", "hidden_size": 12, "output_size": 7},
         {"cell": "lstm", "hidden_size": 10, "output_size": None}]


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
