"""The discrete Hopfield network (seed-000 section 1): Hebbian storage, recall, energy, capacity."""

from __future__ import annotations

import pytest
import torch

from nnrun.data.synthetic import binary_patterns
from nnrun.errors import ConfigError, DataError
from nnrun.models.hopfield import HopfieldNetwork, capacity
from nnrun.tasks.recall import AssociativeRecall


def memory(n_patterns: int, noise: float = 0.1, update: str = "async", n_neurons: int = 100):
    """A network that has stored the training split of `binary_patterns`, and that data."""
    data = binary_patterns(n_neurons, n_patterns, noise, probes_per_pattern=10, seed=0)
    net = HopfieldNetwork((n_neurons,), update=update)
    net.fit(data.train)
    return net, data


def stored(data) -> torch.Tensor:
    """The patterns of the training split, (M, N)."""
    return next(data.train.epoch())[1]


def recall_metrics(net: HopfieldNetwork, data) -> dict[str, float]:
    task = AssociativeRecall()
    return task.metrics(task.eval_stats(net, next(data.val.epoch())))


def test_hebbian_weights_are_symmetric_with_a_zero_diagonal():
    net, data = memory(5)
    p = stored(data)
    w = net.weight
    assert not w.requires_grad  # set by the Hebbian rule, never by a gradient
    torch.testing.assert_close(w, w.T)
    assert (w.diagonal() == 0).all()
    expected = p.T @ p / 100
    expected.fill_diagonal_(0)
    torch.testing.assert_close(w, expected)
    assert round(capacity(100), 3) == 10.857  # N / (2 ln N), seed-000 L201-204


@pytest.mark.parametrize("update", ["async", "sync"])
def test_recalls_stored_patterns_below_capacity(update):
    torch.manual_seed(0)
    net, data = memory(5, update=update)  # well below the capacity of 10.9
    patterns = stored(data)
    assert torch.equal(net(patterns.clone()), patterns)  # every stored pattern is a fixed point
    metrics = recall_metrics(net, data)
    assert metrics["probe_overlap"] == pytest.approx(0.8)  # 10 of 100 bits flipped
    assert metrics["recall"] == 1.0 and metrics["overlap"] == 1.0 and metrics["loss"] == 0.0


def test_energy_never_rises_during_asynchronous_recall():
    torch.manual_seed(0)
    net, _ = memory(15)  # above capacity: long recalls and spurious attractors
    s = torch.randint(0, 2, (20, 100)).float() * 2 - 1
    energy, drops = net.energy(s), 0
    for _ in range(10):
        for i in torch.randperm(100).tolist():
            net.update_(s, i)
            new = net.energy(s)
            assert (new <= energy + 1e-5).all()
            drops += int((new < energy - 1e-5).sum())
            energy = new
    assert drops > 0
    assert torch.equal(net.sweep(s), s)  # settled: a fixed point of the dynamics
    # forward() runs the same updates to a fixed point, from which no update lowers the energy
    probes = torch.randint(0, 2, (20, 100)).float() * 2 - 1
    settled = net(probes)
    assert (net.energy(settled) <= net.energy(probes) + 1e-5).all()
    assert torch.equal(net.sweep(settled), settled)


def test_recall_degrades_well_above_capacity():
    torch.manual_seed(0)
    below = recall_metrics(*memory(5))
    above = recall_metrics(*memory(40))  # 3.7 times N / (2 ln N)
    assert below["recall"] == 1.0
    assert above["recall"] < 0.1 and above["overlap"] < 0.7
    assert above["overlap"] < above["probe_overlap"]  # recall leaves the probes worse off


def test_hopfield_options_are_checked():
    with pytest.raises(ConfigError, match="model.update"):
        memory(5, update="parallel")
    with pytest.raises(DataError, match="data.noise"):
        binary_patterns(noise=1.5)
    with pytest.raises(ConfigError, match="no gradient training"):
        AssociativeRecall().loss(None, ())
