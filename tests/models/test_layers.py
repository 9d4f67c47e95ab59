"""Shared layers: the documents' initialisations and dropout with the book's unscaled variant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnrun.errors import ConfigError
from nnrun.models.layers import Dropout, init_
from nnrun.models.mlp import MLP


def test_ch4_standard_init_gives_a_pre_activation_variance_of_785():
    # L3982-3988: with N(0, 1) weights and bias, Var(x W + b) = 784 + 1 for unit-variance inputs.
    torch.manual_seed(0)
    layers = [init_(torch.nn.Linear(784, 89), "standard_normal") for _ in range(20)]
    x = torch.randn(500, 784)
    out = torch.cat([layer(x) for layer in layers])
    assert out.var().item() == pytest.approx(785, rel=0.03)


@pytest.mark.parametrize("init,std_in,std_out", [("standard_normal", 1.0, 1.0),
                                                 ("dlfs_glorot", 2 / 873, 2 / 99),
                                                 ("glorot_normal", math.sqrt(2 / 873),
                                                  math.sqrt(2 / 99))])
def test_inits_draw_weights_and_biases_with_the_books_std(init, std_in, std_out):
    # G24: the book's "glorot" is std 2/(fan_in+fan_out): 0.00229 for 784->89, 0.0202 for 89->10.
    torch.manual_seed(0)
    model = MLP((784,), 10, hidden_sizes=[89], activation="Tanh", init=init)
    first, last = model.net[1], model.net[3]
    assert first.weight.std().item() == pytest.approx(std_in, rel=0.02)
    assert last.weight.std().item() == pytest.approx(std_out, rel=0.1)
    assert first.bias.std().item() == pytest.approx(std_in, rel=0.3)  # 89 draws


def test_numpy_seed_draws_as_the_books_dense_layers():
    # lincoln's Dense._setup_layer: np.random.seed(seed), W = normal(0, s, (in, out)), then b;
    # every layer reseeded with the same seed (G28).
    model = MLP((784,), 10, hidden_sizes=[89], activation="Tanh", init="dlfs_glorot",
                     numpy_seed=20190119)
    for layer, (n_in, n_out) in [(model.net[1], (784, 89)), (model.net[3], (89, 10))]:
        np.random.seed(20190119)
        scale = 2 / (n_in + n_out)
        w, b = np.random.normal(0, scale, (n_in, n_out)), np.random.normal(0, scale, (1, n_out))
        np.testing.assert_allclose(layer.weight.detach().numpy(), w.T, rtol=1e-6)
        np.testing.assert_allclose(layer.bias.detach().numpy(), b[0], rtol=1e-6)
    with pytest.raises(ConfigError, match="numpy_seed"):
        MLP((13,), 1, numpy_seed=1)


def test_unknown_init_is_a_config_error():
    with pytest.raises(ConfigError, match="model.init"):
        MLP((13,), 1, init="xavier")


def test_the_books_dropout_does_not_rescale_in_training_and_scales_at_inference():
    # L4088-4104: train x * mask (no 1/keep); inference x * keep. The book's dropout=0.8 keeps 0.8.
    torch.manual_seed(0)
    drop = Dropout(0.2, rescale=False)
    x = torch.ones(200, 100)
    out = drop(x)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert out.mean().item() == pytest.approx(0.8, abs=0.01)
    drop.eval()
    torch.testing.assert_close(drop(x), 0.8 * x)


def test_rescaled_dropout_is_torchs():
    x = torch.randn(200, 100)
    torch.manual_seed(0)
    out = Dropout(0.2)(x)
    torch.manual_seed(0)
    assert torch.equal(out, torch.nn.Dropout(0.2)(x))
    drop = Dropout(0.2).eval()
    assert torch.equal(drop(x), x)
    assert Dropout(0.0)(x) is x
    with pytest.raises(ConfigError, match="model.dropout"):
        Dropout(1.0)


def test_conv_init_scales():
    torch.manual_seed(0)
    conv = init_(torch.nn.Conv2d(1, 32, 5, bias=False), "dlfs_glorot")
    assert conv.weight.std().item() == pytest.approx(2 / 33, rel=0.1)  # channels, no sqrt
    conv = init_(torch.nn.Conv2d(16, 8, 5), "standard_normal")
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.1)
    with pytest.raises(ConfigError, match="model.conv_init"):
        init_(torch.nn.Conv2d(1, 2, 3), "he", key="model.conv_init")
