"""Building blocks several model families share: activations by name, dropout with the book's
unscaled variant, and the initialisations the documents use."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.errors import ConfigError


def make_activation(name: str) -> nn.Module:
    """An activation by its torch.nn class name: ReLU, Tanh, Sigmoid, GELU, ..."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model.activation={name!r} is not a torch.nn class; use e.g. ReLU, Tanh")
    return cls()


class Dropout(nn.Module):
    """Dropout of a share `p` of the units.

    `rescale=True` is standard (inverted) dropout, `nn.Dropout(p)`: training divides the kept
    units by 1 - p, evaluation is the identity. `rescale=False` is Deep Learning from Scratch's
    (L4088-4104): training multiplies by the 0/1 mask only, evaluation multiplies by the keep
    probability 1 - p. The two agree in expectation and differ in training dynamics.
    """

    def __init__(self, p: float = 0.0, rescale: bool = True) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"model.dropout={p} must be in [0, 1): the share of units dropped")
        self.p, self.rescale = p, rescale

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0:
            return x
        if self.rescale:
            return F.dropout(x, self.p, self.training)
        keep = 1 - self.p
        if not self.training:
            return x * keep
        return x * torch.bernoulli(torch.full_like(x, keep))

    def extra_repr(self) -> str:
        return f"p={self.p}, rescale={self.rescale}"


INITS = ("torch", "standard_normal", "dlfs_glorot", "glorot_normal")


def _fans(layer: nn.Linear | nn.Conv2d, receptive_field: bool) -> tuple[int, int]:
    """(fan_in, fan_out): features for a Linear layer; channels for a convolution, times the
    kernel's size with `receptive_field`."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    out_channels, in_channels, *kernel = layer.weight.shape
    k = math.prod(kernel) if receptive_field else 1
    return in_channels * k, out_channels * k


@torch.no_grad()
def init_(layer: nn.Linear | nn.Conv2d, init: str, numpy_seed: int | None = None,
          key: str = "model.init") -> nn.Linear | nn.Conv2d:
    """Initialise a Linear or Conv2d layer's weight and bias in place; returns it.

    `torch`: PyTorch's default (uniform in ±1/sqrt(fan_in)). `standard_normal`: weight and
    bias from N(0, 1), Deep Learning from Scratch's "standard" init (catalog/003a E6, G24).
    `dlfs_glorot`: N(0, s²) with s = 2 / (fan_in + fan_out), the book's "glorot" (L4017-4020),
    which takes Glorot's variance for the standard deviation; a convolution's fans are its
    channels, as the book's repository has it (catalog/003b E5.1). `glorot_normal`: std
    sqrt(2 / (fan_in + fan_out)), a convolution's fans counting its receptive field: the
    corrected form.

    `numpy_seed` (Linear only) draws the weight as an (in, out) array and then the bias from
    numpy's `RandomState(numpy_seed)`, reseeded for every layer, exactly as the book's `Dense`
    does (`np.random.seed(seed)` in `_setup_layer`, G28); null draws from torch's generator.
    `key` names the option in errors.
    """
    if init not in INITS:
        raise ConfigError(f"{key}={init!r} must be one of {', '.join(INITS)}")
    if init == "torch":
        if numpy_seed is not None:
            raise ConfigError("model.numpy_seed needs model.init=standard_normal, dlfs_glorot or "
                              "glorot_normal (torch's own init draws from torch)")
        return layer
    std = {"standard_normal": 1.0,
           "dlfs_glorot": 2 / sum(_fans(layer, receptive_field=False)),
           "glorot_normal": math.sqrt(2 / sum(_fans(layer, receptive_field=True)))}[init]
    if numpy_seed is not None:
        assert isinstance(layer, nn.Linear), "the book's numpy draws are for Dense layers"
        rng = np.random.RandomState(numpy_seed)
        fan_out, fan_in = layer.weight.shape
        layer.weight.copy_(torch.from_numpy(rng.normal(0.0, std, (fan_in, fan_out)).T))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(rng.normal(0.0, std, (1, fan_out))[0]))
        return layer
    for p in (layer.weight, layer.bias):
        if p is not None:
            p.normal_(0.0, std)
    return layer
