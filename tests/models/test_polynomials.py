"""The RNN lab manual's polynomial fits (catalog/000 E1-E8, assignment 6.1): the models, the
custom autograd Function, the data, the fit figure and the presets' numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun import checkpoint
from nnrun.data import trig_grid
from nnrun.errors import ConfigError
from nnrun.polynomials import (
    DynamicPolynomial,
    Legendre3,
    LegendrePolynomial3,
    Polynomial,
    PolynomialRegression,
)
from nnrun.run import run, validate

SCALAR = {"in_shape": (1,), "out_features": 1}
CUBIC_FLOOR = 8.8172  # the least-squares cubic's SSE on the grid (catalog/000 §5.19)


def train(tmp_path: Path, preset: str, *overrides: str) -> dict:
    cfg = make_config(f"experiment=rnn_lab/{preset}", "trainer.progress=false", "device=cpu",
                      *overrides)
    return run(cfg, tmp_path / preset)


def least_squares_sse(features: torch.Tensor, y: torch.Tensor) -> float:
    solution = torch.linalg.lstsq(features, y).solution
    return float((features @ solution - y).square().sum())


def sine_grid() -> tuple[torch.Tensor, torch.Tensor]:
    (x, y), = trig_grid().train.epoch()
    return x.double(), y.double()  # (2000, 1) each


# ---- models -------------------------------------------------------------------------------

def check_forward_backward(net: torch.nn.Module, x: torch.Tensor) -> None:
    out = net(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("option", ["poly3", "legendre3", "poly_linear", "dynamic_poly"])
def test_model_options_build_forward_and_backward(option):
    torch.manual_seed(0)
    cfg = make_config(f"model={option}", "data=trig")
    validate(cfg)
    net = instantiate(cfg.model, **instantiate(cfg.data).dims)
    if option == "dynamic_poly":
        net.eval()  # every order at once; a training pass that draws order 3 leaves e unused
    check_forward_backward(net, torch.linspace(-3, 3, 7).unsqueeze(1))


def test_polynomial_is_the_documents_cubic():
    net = Polynomial(**SCALAR, init=[0.5, -1.0, 2.0, 0.25])
    x = torch.tensor([[-2.0], [0.0], [1.5]])
    assert torch.allclose(net(x), 0.5 - x + 2 * x ** 2 + 0.25 * x ** 3)
    assert Polynomial(**SCALAR, degree=5).coefficients.shape == (6,)


def test_polynomial_regression_is_linear_in_the_powers():
    torch.manual_seed(0)
    net = PolynomialRegression(**SCALAR)
    x = torch.tensor([[-2.0], [0.5], [3.0]])
    w, b = net.linear.weight[0], net.linear.bias
    assert torch.allclose(net(x), b + w[0] * x + w[1] * x ** 2 + w[2] * x ** 3)
    several = PolynomialRegression(in_shape=(4,), out_features=2, degree=2)
    assert several(torch.randn(5, 4)).shape == (5, 2) and several.linear.in_features == 8


def test_legendre3_and_its_autograd_function():
    z = torch.linspace(-1.5, 1.5, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LegendrePolynomial3.apply, (z,))
    assert torch.allclose(LegendrePolynomial3.apply(z), (5 * z ** 3 - 3 * z) / 2)
    net = Legendre3(**SCALAR, init=[0.0, -1.0, 0.0, 0.3])
    x = torch.tensor([[-1.0], [2.0]])
    assert torch.allclose(net(x), -0.5 * (5 * (0.3 * x) ** 3 - 3 * (0.3 * x)))


def test_models_refuse_data_that_is_not_one_number_per_sample():
    with pytest.raises(ConfigError, match="in_shape=\\(20, 1\\)"):
        Polynomial(in_shape=(20, 1), out_features=1)
    with pytest.raises(ConfigError, match="model.init"):
        Legendre3(**SCALAR, init=[0.0, 1.0])


def test_dynamic_polynomial_draws_its_order_from_the_seeded_generator():
    torch.manual_seed(0)
    net = DynamicPolynomial(**SCALAR)
    x = torch.tensor([[2.0]])
    base = float((net.coefficients.detach() * x[0, 0] ** torch.arange(4)).sum())
    e = net.e.item()
    # each order 3, 4, 5 comes out of a training forward pass with about equal chances
    outputs = torch.cat([net(x) for _ in range(600)]).flatten().tolist()
    by_order = {3: base, 4: base + e * 16, 5: base + e * (16 + 32)}
    counts = {k: sum(math.isclose(o, v, rel_tol=1e-5) for o in outputs)
              for k, v in by_order.items()}
    assert sum(counts.values()) == 600 and all(150 < c < 250 for c in counts.values()), counts
    # the same seed draws the same orders
    torch.manual_seed(1)
    first = torch.cat([net(x) for _ in range(20)])
    torch.manual_seed(1)
    assert torch.equal(first, torch.cat([net(x) for _ in range(20)]))
    # one weight serves x^4 and x^5: with order 5 drawn, its gradient has both terms
    while (y := net(x)).item() != pytest.approx(by_order[5]):
        pass
    net.zero_grad()
    y.sum().backward()
    assert net.e.grad.item() == pytest.approx(16 + 32)
    # eval mode: the mean over the orders, the same every time, no draw
    net.eval()
    state = torch.get_rng_state()
    assert net(x).item() == pytest.approx(sum(by_order.values()) / 3, rel=1e-6)
    assert torch.equal(torch.get_rng_state(), state)


# ---- data and task ------------------------------------------------------------------------

def test_trig_grid_is_the_documents_grid():
    data = instantiate(make_config("data=trig", "data.A=2.0", "data.B=-0.5").data)
    (x, y), = data.train.epoch()
    assert x.shape == y.shape == (2000, 1) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.linspace(-math.pi, math.pi, 2000))
    assert torch.allclose(y, 2 * torch.cos(x) - 0.5 * torch.sin(x))
    assert data.val.tensors == data.train.tensors and data.test is None  # val = the same grid
    assert data.dims == SCALAR
    assert len(data.train) == 1  # one full batch: a step per epoch
    assert make_config("data=trig").task._target_ == "nnrun.tasks.CurveFit"


# ---- the presets --------------------------------------------------------------------------

def test_cubic_floor_is_the_least_squares_cubic():
    x, y = sine_grid()
    assert least_squares_sse(x.pow(torch.arange(4)), y) == pytest.approx(CUBIC_FLOOR, abs=5e-5)


def test_legendre3_golden(tmp_path):
    """catalog/000 E4: the float32 run prints SSE 209.958 at t=99, 14.878 at t=999, 8.9436 at
    t=1999; nnrun logs t's loss at step t+1."""
    result = train(tmp_path, "legendre3")
    assert result["expected"][0]["verdict"] == "reproduced"
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


def test_save_every_writes_last_pt_every_n_epochs(tmp_path, monkeypatch):
    saved: list[int] = []
    original = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda state, path: (saved.append(state["epoch"]), original(state, path)))
    train(tmp_path, "poly3_sgd", "trainer.epochs=7", "trainer.save_every=3",
          "trainer.eval_every=100")
    assert saved == [3, 6, 7]  # every 3rd epoch, and the end (best.pt there is a link)
