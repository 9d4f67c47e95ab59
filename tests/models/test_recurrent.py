"""The RNN lab manual's recurrent models (seed-000 sections 1, 2 and 5): the MLP-based recurrent
architectures, the Hopfield memory, and the airline/shampoo series the LSTM forecasts."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun.errors import ConfigError, DataError
from nnrun.hopfield import AssociativeRecall, HopfieldNetwork, binary_patterns, capacity
from nnrun.recurrent import ElmanNet, RecurrentMLP, StateSpaceNet
from nnrun.run import run, validate
from nnrun.timeseries import Forecast, MinMaxScaler, csv_series, read_series, sliding_windows

AIRLINE, SHAMPOO = "timeseries/airline-passengers.csv", "timeseries/shampoo.csv"


def check_forward_backward(net: torch.nn.Module, x: torch.Tensor, out_shape: tuple) -> None:
    out = net(x)
    assert out.shape == out_shape and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


# ---- section 2: state-space model, Elman network, recurrent MLP --------------------------------

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


# ---- section 1: the Hopfield network -----------------------------------------------------------

def memory(n_patterns: int, noise: float = 0.1, update: str = "async", n_neurons: int = 100):
    data = binary_patterns(n_neurons, n_patterns, noise, probes_per_pattern=10, seed=0)
    return HopfieldNetwork((n_neurons,), data.dims["patterns"], update=update), data


def recall_metrics(net: HopfieldNetwork, data) -> dict[str, float]:
    task = AssociativeRecall()
    return task.metrics(task.eval_stats(net, next(data.val.epoch())))


def test_hebbian_weights_are_symmetric_with_a_zero_diagonal():
    net, data = memory(5)
    p = data.dims["patterns"]
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
    patterns = data.dims["patterns"]
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


def test_hopfield_preset_takes_no_step_and_logs_the_recall_figure(tmp_path):
    cfg = make_config("experiment=rnn_lab/hopfield_memory", "trainer.epochs=5",
                      "trainer.progress=false", "device=cpu")
    result = run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["steps"] == 0  # whatever epochs says
    assert result["val/recall"] >= 0.95 and result["test/recall"] >= 0.95
    assert result["val/probe_overlap"] == pytest.approx(0.8)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "val/recall" in events.Tags()["images"]


# ---- section 5: the airline and shampoo series -------------------------------------------------

def test_read_series_parses_the_quoted_crlf_csvs(data_root):
    airline = read_series(str(data_root / AIRLINE))
    assert len(airline) == 144 and airline[0] == 112 and airline[-1] == 432
    assert airline.sum() == 40363 and airline.min() == 104 and airline.max() == 622
    shampoo = read_series(str(data_root / SHAMPOO))
    assert len(shampoo) == 36 and shampoo[0] == 266.0 and shampoo[-1] == 646.9
    assert shampoo.sum().item() == pytest.approx(11253.6)


def test_min_max_scaler_maps_to_the_unit_interval_and_back():
    values = torch.tensor([112.0, 104.0, 622.0, 300.0], dtype=torch.float64)
    scaler = MinMaxScaler.fit(values)
    scaled = scaler.transform(values)
    assert scaled.min() == 0 and scaled.max() == 1
    torch.testing.assert_close(scaler.inverse(scaled), values)
    assert MinMaxScaler.fit(torch.ones(3)).span == 1.0  # a constant series, as scikit-learn


def test_sliding_windows_and_the_books_missing_window():
    series = torch.arange(10.0)
    x, y = sliding_windows(series, 4)
    assert x.shape == (6, 4) and torch.equal(x[0], series[:4]) and y[0] == 4 and y[-1] == 9
    x, y = sliding_windows(series, 4, drop_last_window=True)  # range(len(data) - 4 - 1)
    assert x.shape == (5, 4) and y[-1] == 8


@pytest.mark.parametrize("file,book,n_windows,n_train", [
    (AIRLINE, True, 139, 93), (AIRLINE, False, 140, 93),
    (SHAMPOO, True, 31, 20), (SHAMPOO, False, 32, 21)])
def test_series_split_sizes(data_root, file, book, n_windows, n_train):
    data = csv_series(file, root=str(data_root), window=4, train_fraction=0.67,
                      scaler_fit="all" if book else "train", drop_last_window=book)
    x, y, lo, span, test_mask = data.test.tensors
    assert x.shape == (n_windows, 4, 1) and y.shape == (n_windows, 1)
    assert int((~test_mask).sum()) == n_train and test_mask[n_train:].all()  # chronological
    (train_x, train_y, *_), = data.train.epoch()  # one full batch
    assert len(data.train) == 1 and torch.equal(train_x, x[:n_train])
    assert data.val is data.test and data.dims == {"in_shape": (4, 1), "out_features": 1}
    series = read_series(str(data_root / file))
    # scaled back, window i is values i..i+3 and its target value i+4
    torch.testing.assert_close((x[:, :, 0] * span + lo), series.unfold(0, 4, 1)[:n_windows])
    torch.testing.assert_close((y * span + lo)[:, 0], series[4:4 + n_windows])


def test_scaler_fit_on_the_training_part_or_on_all(data_root):
    series = read_series(str(data_root / AIRLINE))
    book = csv_series(AIRLINE, root=str(data_root), scaler_fit="all", drop_last_window=True)
    *_, lo, span, _ = book.test.tensors
    assert (lo[0].item(), span[0].item()) == (104.0, 518.0)  # min and range of all 144 values
    own = csv_series(AIRLINE, root=str(data_root))
    x, y, lo, span, mask = own.test.tensors
    seen = series[:93 + 4]  # what the 93 training windows see
    assert (lo[0].item(), span[0].item()) == (seen.min().item(), (seen.max() - seen.min()).item())
    assert y[~mask].max() == 1 and y[mask].max() > 1  # the test part rises above the training part


def test_series_options_are_checked(data_root):
    with pytest.raises(DataError, match="data.scaler_fit"):
        csv_series(AIRLINE, root=str(data_root), scaler_fit="test")
    with pytest.raises(DataError, match="data.train_fraction"):
        csv_series(SHAMPOO, root=str(data_root), train_fraction=0.01)
    with pytest.raises(DataError, match="data.root"):
        csv_series("timeseries/missing.csv", root=str(data_root))


def test_forecast_metrics_are_in_original_units():
    x = torch.zeros(4, 3, 1)
    y = torch.tensor([[0.0], [0.5], [1.0], [0.25]])
    lo, span = torch.full((4, 1), 100.0, dtype=torch.float64), torch.full((4, 1), 500.0,
                                                                          dtype=torch.float64)
    mask = torch.tensor([False, True, True, True])

    class Off(torch.nn.Module):  # predicts the target plus 0.1 (scaled): 50 in original units
        def forward(self, x):
            return y[mask] + 0.1

    task = Forecast()
    metrics = task.metrics(task.eval_stats(Off(), (x, y, lo, span, mask)))
    assert metrics["loss"] == pytest.approx(0.01)
    assert metrics["rmse"] == pytest.approx(50.0) and metrics["mae"] == pytest.approx(50.0)


def test_airline_preset_trains_and_draws_the_forecast(tmp_path, data_root):
    cfg = make_config("experiment=rnn_lab/airline_lstm", f"data.root={data_root}",
                      "trainer.epochs=200", "trainer.progress=false", "device=cpu")
    assert cfg.task._target_ == "nnrun.timeseries.Forecast"
    result = run(cfg, tmp_path / "run")
    assert result["steps"] == 200  # one full-batch step per epoch
    assert result["train/loss"] < 0.02  # scaled units
    # test/rmse is in passengers: the scaled error times the scaler's range, 518
    assert result["test/rmse"] == pytest.approx(math.sqrt(result["test/loss"]) * 518, rel=1e-6)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "val/forecast" in events.Tags()["images"]


@pytest.mark.parametrize("data,task", [("airline", "nnrun.timeseries.Forecast"),
                                       ("shampoo", "nnrun.timeseries.Forecast"),
                                       ("binary_patterns", "nnrun.hopfield.AssociativeRecall")])
def test_data_options_pick_their_task(data, task):
    cfg = make_config(f"data={data}")
    assert cfg.task._target_ == task
    validate(cfg)
