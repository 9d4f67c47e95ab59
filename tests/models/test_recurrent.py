"""Recurrent forecasters: torch's LSTM/GRU/RNN read out from the last step, and the RNN lab
manual's state-space model, Elman network and recurrent MLP (seed-000 section 2)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from nnrun.errors import ConfigError
from nnrun.models.recurrent import ElmanNet, GRUNet, LSTMNet, RecurrentMLP, RNNNet, StateSpaceNet
from nnrun.run import validate
from tests.helpers import check_forward_backward, make_config


@pytest.mark.parametrize("cls", [LSTMNet, GRUNet, RNNNet])
def test_recurrent_nets(cls):
    torch.manual_seed(0)
    net = cls(in_shape=(12, 3), out_features=2, hidden_size=8, num_layers=2, dropout=0.1)
    check_forward_backward(net, torch.randn(5, 12, 3), out_shape=(5, 2))


@pytest.mark.parametrize("make", [
    lambda: ElmanNet((12, 3), 2, hidden_size=8),
    lambda: ElmanNet((12, 3), 2, hidden_size=8, output_activation="Tanh"),
    lambda: StateSpaceNet((12, 3), 2, hidden_size=8, order=1),
    lambda: StateSpaceNet((12, 3), 2, hidden_size=8, order=3, activation="Sigmoid"),
    lambda: RecurrentMLP((12, 3), 2, hidden_sizes=[8]),
    lambda: RecurrentMLP((12, 3), 2, hidden_sizes=[8, 6], output_activation="Tanh"),
], ids=["elman", "elman_tanh_out", "state_space_q1", "state_space_q3", "rmlp_1", "rmlp_2"])
def test_recurrent_architectures_forward_backward(make):
    torch.manual_seed(0)
    check_forward_backward(make(), torch.randn(5, 12, 3), out_shape=(5, 2))


def test_elman_with_a_linear_output_is_torchs_rnn():
    torch.manual_seed(0)
    elman = ElmanNet((7, 3), 2, hidden_size=5)
    rnn, head = torch.nn.RNN(3, 5, batch_first=True), torch.nn.Linear(5, 2)
    with torch.no_grad():
        elman.input.weight.copy_(rnn.weight_ih_l0)
        elman.input.bias.copy_(rnn.bias_ih_l0 + rnn.bias_hh_l0)
        elman.context.weight.copy_(rnn.weight_hh_l0)
        elman.output[0].weight.copy_(head.weight)
        elman.output[0].bias.copy_(head.bias)
    x = torch.randn(4, 7, 3)
    torch.testing.assert_close(elman(x), head(rnn(x)[0][:, -1]))


def test_state_space_model_follows_eqs_7_and_8():
    """x(n+1) = tanh(A [x(n), x(n-1)] + B u(n) + b) through a bank of two unit delays, and the
    forecast y = C x(T+1), written out step by step."""
    torch.manual_seed(0)
    net = StateSpaceNet((6, 2), 1, hidden_size=4, order=2)
    u = torch.randn(3, 6, 2)
    a1, a2 = net.feedback.weight[:, :4], net.feedback.weight[:, 4:]  # on x(n), on x(n-1)
    prev = older = torch.zeros(3, 4)
    for n in range(6):
        prev, older = torch.tanh(net.input(u[:, n]) + prev @ a1.T + older @ a2.T), prev
    torch.testing.assert_close(net(u), prev @ net.output.weight.T)
    assert net.output.bias is None  # eq. 8: y = C x, a linear output layer


def test_recurrent_mlp_closes_every_layer_on_itself():
    torch.manual_seed(0)
    net = RecurrentMLP((5, 2), 1, hidden_sizes=[3])
    (w1, wo), (r1, ro) = net.forward_weights, net.feedback
    u = torch.randn(4, 5, 2)
    x, y = torch.zeros(4, 3), torch.zeros(4, 1)
    for n in range(5):
        x = torch.tanh(w1(u[:, n]) + r1(x))
        y = wo(x) + ro(y)  # the linear output layer, fed back too
    torch.testing.assert_close(net(u), y)


def test_recurrent_models_reject_impossible_sizes():
    with pytest.raises(ConfigError, match="model.order"):
        StateSpaceNet((4, 1), 1, order=0)
    with pytest.raises(ConfigError, match="model.hidden_sizes"):
        RecurrentMLP((4, 1), 1, hidden_sizes=[])


@pytest.mark.parametrize("model", ["elman", "state_space", "rmlp"])
def test_recurrent_options_build_from_yaml(model):
    cfg = make_config(f"model={model}")
    validate(cfg)
    net = instantiate(cfg.model, in_shape=(20, 1), out_features=1)
    assert net(torch.randn(2, 20, 1)).shape == (2, 1)
