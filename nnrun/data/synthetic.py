"""Small data made on the spot, as the documents make it: curves to fit, random tensors, a toy
linear regression, a single image, random binary patterns."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nnrun.data import Data, Sizes
from nnrun.data.batches import FullBatch
from nnrun.errors import DataError


def trig_grid(n_points: int = 2000, A: float = 0.0, B: float = 1.0) -> Data:
    """y = A cos x + B sin x on `n_points` evenly spaced x from -pi to pi, as (N, 1) tensors:
    the curve the RNN lab manual fits polynomials to (sin x, seed-000 L500-502; A cos x +
    B sin x in its assignment 6.1, L1720-1726). A and B keep the document's names.

    One full batch trains. There is nothing to hold out (the document fits the curve itself),
    so validation evaluates the same grid: `val/mse` is the fit's error after the last step.
    """
    if n_points < 2:
        raise DataError(f"data.n_points={n_points} must be >= 2, e.g. data.n_points=2000")
    x = torch.linspace(-math.pi, math.pi, n_points)
    y = A * torch.cos(x) + B * torch.sin(x)
    grid = FullBatch(x.unsqueeze(1), y.unsqueeze(1))  # (N, 1), (N, 1)
    return Data(train=grid, val=grid, sizes=Sizes((1,), 1))


def random_regression(n_samples: int = 64, in_features: int = 1000, out_features: int = 10,
                      seed: int = 0) -> Data:
    """Standard-normal inputs and targets with no relation between them (PyTorch's "Learning
    PyTorch with Examples" tensors), one full batch; validation evaluates the same samples:
    a network can only memorise them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, in_features, generator=g)
    y = torch.randn(n_samples, out_features, generator=g)
    batch = FullBatch(x, y)
    return Data(train=batch, val=batch, sizes=Sizes((in_features,), out_features))


def toy_linreg(x: Sequence[Sequence[float]], weights: Sequence[float]) -> Data:
    """Noise-free linear targets y = x · weights for a given design matrix: the lecture's toy
    regression (seed-002 L108-152; `conf/data/toy_linreg.yaml` holds its variant 2, 4 samples
    whose 2nd feature is much larger than the 1st; variant 1 is x=[[1,0],[2,0],[3,0],[4,0]],
    weights=[2,0]).

    float32, as the lecture. One full batch trains; there is nothing to hold out, so validation
    evaluates the same samples after the last step.
    """
    if not x or len(weights) == 0 or any(len(row) != len(weights) for row in x):
        raise DataError(f"data.x must be a non-empty list of rows of {len(weights)} numbers, one "
                        f"per entry of data.weights={list(weights)}; got data.x={list(x)}")
    features = torch.tensor([[float(v) for v in row] for row in x])  # (N, F)
    targets = features @ torch.tensor([float(v) for v in weights])   # (N,)
    batch = FullBatch(features, targets.unsqueeze(1))                # (N, F), (N, 1)
    return Data(train=batch, val=batch, sizes=Sizes((len(weights),), 1))


def single_sample(image: Sequence[Sequence[float]], label: int, num_classes: int) -> Data:
    """One image and its class, to overfit: the candle article's 5x5 "dog image" with the
    one-hot target [1, 0] (seed-004 L67), i.e. class 0 of 2, in `conf/data/single_sample.yaml`.

    The one sample is the one batch that trains and validates.
    """
    if not 0 <= label < num_classes:
        raise DataError(f"data.label={label} must be in [0, data.num_classes={num_classes})")
    x = torch.tensor([[float(v) for v in row] for row in image]).unsqueeze(0)  # (1, H, W)
    batch = FullBatch(x, torch.tensor([label]))
    return Data(train=batch, val=batch,
                sizes=Sizes(tuple(x.shape[1:]), num_classes))


def binary_patterns(n_neurons: int = 100, n_patterns: int = 10, noise: float = 0.1,
                    probes_per_pattern: int = 10, seed: int = 0) -> Data:
    """Random ±1 patterns to store, and noisy copies of them to recall from.

    Each probe is a stored pattern with exactly `round(noise * n_neurons)` bits flipped, at
    random; validation and test draw their probes independently. Batches are
    `(probe, stored pattern)`; the training split is the patterns themselves, once each, which
    `model=hopfield` stores (`HopfieldNetwork.fit`).

    Args:
        n_neurons: N, the length of a pattern.
        n_patterns: M, the patterns to store; the capacity is about N / (2 ln N).
        noise: the share of bits each probe flips, in [0, 1].
        probes_per_pattern: probes drawn from each pattern, per split.
        seed: draws the patterns and the probes.
    """
    if n_neurons < 2 or n_patterns < 1 or probes_per_pattern < 1:
        raise DataError(f"data.n_neurons={n_neurons}, data.n_patterns={n_patterns} and "
                        f"data.probes_per_pattern={probes_per_pattern} must be >= 2, 1, 1")
    if not 0 <= noise <= 1:
        raise DataError(f"data.noise={noise} must be a share of bits in [0, 1]")
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (n_patterns, n_neurons), generator=g).float() * 2 - 1
    n_flips = round(noise * n_neurons)

    def probes() -> FullBatch:
        stored = patterns.repeat_interleave(probes_per_pattern, dim=0)  # (M * k, N)
        flips = torch.rand(stored.shape, generator=g).argsort(dim=1)[:, :n_flips]
        return FullBatch(stored.scatter(1, flips, -stored.gather(1, flips)), stored)

    return Data(train=FullBatch(patterns, patterns), val=probes(), test=probes(),
                sizes=Sizes((n_neurons,)))
