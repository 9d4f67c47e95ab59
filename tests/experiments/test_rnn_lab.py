"""The RNN lab manual's presets (seed-000): Legendre P3's golden numbers, the cubic floors, the
Hopfield memory and the airline forecast."""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun import checkpoint
from nnrun.data.synthetic import trig_grid
from nnrun.run import run
from tests.helpers import assert_reproduced, make_config, run_preset

CUBIC_FLOOR = 8.8172  # the least-squares cubic's SSE on the grid (catalog/000 §5.19)


def train(tmp_path, preset: str, *overrides: str) -> dict:
    return run_preset(tmp_path, f"rnn_lab/{preset}", *overrides, name=preset)


def least_squares_sse(features: torch.Tensor, y: torch.Tensor) -> float:
    solution = torch.linalg.lstsq(features, y).solution
    return float((features @ solution - y).square().sum())


def sine_grid() -> tuple[torch.Tensor, torch.Tensor]:
    (x, y), = trig_grid().train.epoch()
    return x.double(), y.double()  # (2000, 1) each


def test_cubic_floor_is_the_least_squares_cubic():
    x, y = sine_grid()
    assert least_squares_sse(x.pow(torch.arange(4)), y) == pytest.approx(CUBIC_FLOOR, abs=5e-5)


def test_legendre3_golden(tmp_path):
    """catalog/000 E4: the float32 run prints SSE 209.958 at t=99, 14.878 at t=999, 8.9436 at
    t=1999; nnrun logs t's loss at step t+1."""
    result = train(tmp_path, "legendre3")
    assert_reproduced(result, "rnn_lab/legendre3")
    acc = EventAccumulator(str(tmp_path / "legendre3" / "tb"),
                           size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert len(loss) == 2000
    assert round(loss[100], 3) == 209.958
    assert round(loss[1000], 3) == 14.878
    assert round(loss[2000], 4) == 8.9436
    assert result["train/loss"] == loss[2000]
    weights = checkpoint.load(tmp_path / "legendre3" / "checkpoints" / "last.pt")["model"]
    assert round(float(weights["b"]), 5) == -2.20853
    assert round(float(weights["d"]), 6) == 0.255486
    assert abs(float(weights["a"])) < 1e-7 and abs(float(weights["c"])) < 1e-7
    # the task's figure: target and fit against x
    image = acc.Images("val/fit")[-1]
    assert image.step == 2000 and image.width > 100


@pytest.mark.parametrize("preset", ["poly3_sgd", "poly_linear", "poly_rmsprop"])
def test_cubic_fits_end_above_the_floor(tmp_path, preset):
    result = train(tmp_path, preset)
    assert result["steps"] == 2000
    # val/sse: the model after its last step on the whole grid
    assert CUBIC_FLOOR < result["val/sse"]
    if preset == "poly_rmsprop":  # RMSprop's steps do not shrink with the gradient: converged
        assert result["val/sse"] < CUBIC_FLOOR * 1.02
    else:  # plain GD at lr 1e-6 leaves its slowest direction short of the optimum
        assert result["val/sse"] < CUBIC_FLOOR * 1.5


def test_trig_fit_ends_above_its_own_floor(tmp_path):
    result = train(tmp_path, "trig_fit", "data.A=1.0", "data.B=1.0")
    x, _ = sine_grid()
    floor = least_squares_sse(x.pow(torch.arange(4)), torch.cos(x) + torch.sin(x))
    assert floor < result["val/sse"] < floor * 1.5


@pytest.mark.slow
def test_dynamic_poly_ends_near_the_floor_of_its_expected_loss(tmp_path):
    """E8 draws order 3, 4 or 5 at each step, so it trains the mean SSE over the three orders,
    whose floor (the weighted least squares over the stacked designs) lies below the cubic's."""
    result = train(tmp_path, "dynamic_poly")
    assert result["steps"] == 30000
    x, y = sine_grid()
    base = x.pow(torch.arange(4))
    designs = [torch.cat([base, extra], 1) for extra in
               (torch.zeros_like(x), x ** 4, x ** 4 + x ** 5)]
    floor = least_squares_sse(torch.cat(designs), torch.cat([y] * 3)) / 3
    assert floor < CUBIC_FLOOR
    weights = checkpoint.load(tmp_path / "dynamic_poly" / "checkpoints" / "last.pt")["model"]
    theta = torch.cat([weights["coefficients"], weights["e"].reshape(1)]).double()
    expected_sse = sum(float((d @ theta - y[:, 0]).square().sum()) for d in designs) / 3
    assert floor < expected_sse < floor * 1.05


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


def test_airline_preset_trains_and_draws_the_forecast(tmp_path, data_root):
    cfg = make_config("experiment=rnn_lab/airline_lstm", f"data.root={data_root}",
                      "trainer.epochs=200", "trainer.progress=false", "device=cpu")
    assert cfg.task._target_ == "nnrun.tasks.forecast.Forecast"
    result = run(cfg, tmp_path / "run")
    assert result["steps"] == 200  # one full-batch step per epoch
    assert result["train/loss"] < 0.02  # scaled units
    # test/rmse is in passengers: the scaled error times the scaler's range, 518
    assert result["test/rmse"] == pytest.approx(math.sqrt(result["test/loss"]) * 518, rel=1e-6)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "val/forecast" in events.Tags()["images"]
