"""Deep Learning from Scratch, chapters 1-4 and the chapter-7 Boston model (seed-003,
catalog/003a): the book's golden numbers, its losses, inits, dropout, optimizer and schedules,
and its Boston (default suite) and MNIST (slow) targets through the shared trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_config

from nnrun.dlfs import (
    BookClassification,
    BookRegression,
    DenseNet,
    KeepDropout,
    LeastSquares,
    book_softmax_cross_entropy,
    init_linear_,
    per_observation_mse,
)
from nnrun.errors import ConfigError
from nnrun.optimizers import VelocitySGD
from nnrun.report import ordering_rows
from nnrun.run import run
from nnrun.schedules import exponential_decay, linear_decay

# ---- chapters 1 and 4: numbers printed in the text (catalog/003a §2.2) ----------------------


def test_ch1_gradient_of_sigmoid_of_a_matrix_product():
    # matrix_function_backward_1, L1240-1262: dS/dX of sigmoid(X W), X (1, 3), W (3, 1).
    np.random.seed(190203)
    x, w = np.random.randn(1, 3), np.random.randn(3, 1)
    np.testing.assert_allclose(x.round(4), [[0.4723, 0.6151, -1.7262]])
    x = torch.tensor(x, requires_grad=True)
    torch.sigmoid(x @ torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy().round(4), [[0.0852, -0.0557, -0.1121]])


def test_ch1_gradient_of_a_summed_matrix_function():
    # matrix_function_forward_sum / backward_sum_1, L1484-1533: L = Σ sigmoid(X W).
    np.random.seed(190204)
    x, w = np.random.randn(3, 3), np.random.randn(3, 2)
    np.testing.assert_allclose(x.round(4), [[-1.5775, -0.6664, 0.6391],
                                            [-0.5615, 0.7373, -1.4231],
                                            [-1.4435, -0.3913, 0.1539]])
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.sigmoid(xt @ torch.tensor(w)).sum()
    loss.backward()
    assert round(loss.item(), 4) == 2.3755
    np.testing.assert_allclose(xt.grad.numpy().round(4), [[0.2489, -0.3748, 0.0112],
                                                          [0.126, -0.2781, -0.1395],
                                                          [0.2299, -0.3662, -0.0225]])
    x2 = x.copy()
    x2[0, 0] += 0.001  # the finite-difference check of L1520-1523
    bumped = (1 / (1 + np.exp(-x2 @ w))).sum()
    assert round((bumped - loss.item()) / 0.001, 4) == 0.2489


def test_ch4_softmax_and_normalize():
    # L3486-3497
    x = torch.tensor([5.0, 3.0, 2.0])
    np.testing.assert_allclose((x / x.sum()).numpy(), [0.5, 0.3, 0.2])
    np.testing.assert_allclose(x.softmax(0).numpy().round(2), [0.84, 0.11, 0.04])


def test_ch4_facts_about_activations_and_losses():
    x = torch.linspace(-6, 6, 12001, requires_grad=True)
    torch.sigmoid(x).sum().backward()
    assert round(x.grad.max().item(), 4) == 0.25  # sigmoid's steepest slope (L3631)
    x.grad = None
    torch.tanh(x).sum().backward()
    assert round(x.grad.max().item(), 4) == 1.0  # tanh's (L3631)
    x.grad = None
    torch.relu(x).sum().backward()
    assert x.grad.mean().item() == pytest.approx(0.5, abs=1e-3)  # ReLU's average (L3618)
    u = torch.linspace(0, 1, 2_000_001, dtype=torch.float64)[:-1]  # -log(1 - x) vs x² (L3529)
    assert -torch.log1p(-u).mean().item() == pytest.approx(1.0, abs=1e-3)
    assert u.square().mean().item() == pytest.approx(1 / 3, abs=1e-5)
    assert round(math.sqrt(784 * 10), 2) == 88.54  # 89 hidden units (L3672)


def test_ch4_standard_init_gives_a_pre_activation_variance_of_785():
    # L3982-3988: with N(0, 1) weights and bias, Var(x W + b) = 784 + 1 for unit-variance inputs.
    torch.manual_seed(0)
    layers = [init_linear_(torch.nn.Linear(784, 89), "standard_normal") for _ in range(20)]
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
    model = DenseNet((784,), 10, hidden_sizes=[89], activation="Tanh", init=init)
    first, last = model.net[1], model.net[3]
    assert first.weight.std().item() == pytest.approx(std_in, rel=0.02)
    assert last.weight.std().item() == pytest.approx(std_out, rel=0.1)
    assert first.bias.std().item() == pytest.approx(std_in, rel=0.3)  # 89 draws
    assert round(2 / 873, 5) == 0.00229 and round(2 / 99, 4) == 0.0202


def test_numpy_seed_draws_as_the_books_dense_layers():
    # lincoln's Dense._setup_layer: np.random.seed(seed), W = normal(0, s, (in, out)), then b;
    # every layer reseeded with the same seed (G28).
    model = DenseNet((784,), 10, hidden_sizes=[89], activation="Tanh", init="dlfs_glorot",
                     numpy_seed=20190119)
    for layer, (n_in, n_out) in [(model.net[1], (784, 89)), (model.net[3], (89, 10))]:
        np.random.seed(20190119)
        scale = 2 / (n_in + n_out)
        w, b = np.random.normal(0, scale, (n_in, n_out)), np.random.normal(0, scale, (1, n_out))
        np.testing.assert_allclose(layer.weight.detach().numpy(), w.T, rtol=1e-6)
        np.testing.assert_allclose(layer.bias.detach().numpy(), b[0], rtol=1e-6)
    with pytest.raises(ConfigError, match="numpy_seed"):
        DenseNet((13,), 1, numpy_seed=1)


def test_unknown_init_is_a_config_error():
    with pytest.raises(ConfigError, match="model.init"):
        DenseNet((13,), 1, init="xavier")


# ---- the book's losses ----------------------------------------------------------------------

def test_book_softmax_cross_entropy_value_and_gradient():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10, dtype=torch.float64), torch.randint(0, 10, (6,))
    p = np.clip(torch.softmax(logits, 1).numpy(), 1e-9, 1 - 1e-9)
    onehot = np.eye(10)[y.numpy()]
    book = np.sum(-onehot * np.log(p) - (1 - onehot) * np.log(1 - p)) / 6  # the repo's formula
    assert book_softmax_cross_entropy(logits, y).item() == pytest.approx(book, rel=1e-12)
    assert book > F.cross_entropy(logits, y).item()  # it adds -Σ log(1 - p_j) over wrong classes

    task = BookClassification("book_softmax_ce")
    logits.requires_grad_(True)
    loss = task.loss(lambda x: x, (logits, y))
    assert loss.item() == pytest.approx(book, rel=1e-12)  # the book's value is what is logged
    loss.backward()
    expected_grad = (torch.softmax(logits.detach(), 1) - torch.tensor(onehot)) / 6  # (p - y) / N
    torch.testing.assert_close(logits.grad, expected_grad)


def test_per_observation_mse_sums_over_outputs():
    out, y = torch.full((4, 10), 0.5), torch.tensor([0, 1, 2, 3])
    # each row: 0.25 for the true class, 9 x 0.25 for the others -> 2.5 per observation
    assert per_observation_mse(out, y).item() == pytest.approx(2.5)
    assert per_observation_mse(out, y).item() == pytest.approx(
        10 * F.mse_loss(out, F.one_hot(y, 10).float()).item())  # G21: 10x nn.MSELoss


def test_classification_eval_statistics_use_the_chosen_loss():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    for name, fn in [("cross_entropy", F.cross_entropy),
                     ("book_softmax_ce", book_softmax_cross_entropy),
                     ("mse_per_obs", per_observation_mse)]:
        task = BookClassification(name)
        metrics = task.metrics(task.eval_stats(lambda x: x, (logits, y)))
        assert metrics["loss"] == pytest.approx(fn(logits, y).item(), rel=1e-6)
        assert metrics["acc"] == (logits.argmax(1) == y).float().mean().item()
    with pytest.raises(ConfigError, match="task.loss"):
        BookClassification("hinge")


@pytest.mark.parametrize("loss,scale", [("mse", 1 / 5), ("sse", 1.0), ("half_sse", 0.5)])
def test_chapter2_squared_errors(loss, scale):
    # sse: the gradient -2(y - P) summed (L1843-1878); half_sse: -(y - P) summed (Table 2.1).
    pred = torch.tensor([[1.0], [2.0], [0.0], [4.0], [1.0]], requires_grad=True)
    y = torch.tensor([[0.0], [2.0], [1.0], [1.0], [3.0]])
    value = BookRegression(loss).loss(lambda x: x, (pred, y))
    value.backward()
    assert value.item() == pytest.approx(scale * (pred - y).square().sum().item())
    torch.testing.assert_close(pred.grad, scale * -2 * (y - pred.detach()))


# ---- dropout, models ------------------------------------------------------------------------

def test_keep_probability_dropout_without_rescaling():
    # L4088-4104: train x * mask (no 1/keep); inference x * keep.
    torch.manual_seed(0)
    drop = KeepDropout(0.8, rescale=False)
    x = torch.ones(200, 100)
    out = drop(x)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert out.mean().item() == pytest.approx(0.8, abs=0.01)
    drop.eval()
    torch.testing.assert_close(drop(x), 0.8 * x)


def test_keep_probability_dropout_rescaled_is_torchs():
    drop = KeepDropout(0.8)
    torch.manual_seed(0)
    out = drop(torch.ones(200, 100))
    assert set(out.unique().tolist()) == {0.0, 1.25}
    drop.eval()
    torch.testing.assert_close(drop(torch.ones(3)), torch.ones(3))
    with pytest.raises(ConfigError, match="keep_prob"):
        KeepDropout(0.0)


@pytest.mark.parametrize("kwargs,in_shape,out", [
    ({"hidden_sizes": []}, (13,), 1),
    ({"hidden_sizes": [13, 13], "init": "standard_normal"}, (13,), 1),
    ({"hidden_sizes": [89], "activation": "Tanh", "output_activation": "Sigmoid"}, (1, 28, 28), 10),
    ({"hidden_sizes": [178, 46], "activation": "Tanh", "init": "dlfs_glorot", "keep_prob": 0.8,
      "rescale_dropout": False}, (1, 28, 28), 10),
])
def test_dense_net_forward_backward(kwargs, in_shape, out):
    torch.manual_seed(0)
    model = DenseNet(in_shape, out, **kwargs)
    y = model(torch.randn(7, *in_shape))
    assert y.shape == (7, out) and torch.isfinite(y).all()
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if kwargs.get("output_activation") == "Sigmoid":
        assert ((y > 0) & (y < 1)).all()


def test_least_squares_solves_the_normal_equations():
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 3 + 0.1 * torch.randn(50, 1)
    model = LeastSquares((3,), 1, x, y)
    design = torch.cat([x, torch.ones(50, 1)], 1).double()
    beta = torch.linalg.solve(design.T @ design, design.T @ y.double())
    torch.testing.assert_close(model.weight.double(), beta[:3].T, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.bias.double(), beta[3], atol=1e-5, rtol=0)
    assert model(x).shape == (50, 1)
    assert not any(p.requires_grad for p in model.parameters())  # nothing to learn by gradient


# ---- optimizer and schedules ----------------------------------------------------------------

def test_velocity_sgd_steps_as_the_book():
    # SGDMomentum: v = mu v + lr g; p -= v (L3794-3803), velocities from zero.
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = VelocitySGD([p], lr=0.1, momentum=0.9)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]), torch.tensor([0.0, 1.0])]
    v, ref = torch.zeros(2), torch.tensor([1.0, -1.0])
    for g in grads:
        p.grad = g.clone()
        opt.step()
        v = 0.9 * v + 0.1 * g
        ref = ref - v
        torch.testing.assert_close(p.detach(), ref)


def test_velocity_sgd_matches_torch_at_a_constant_rate_not_under_decay():
    def trajectory(make_opt, decay: bool) -> torch.Tensor:
        p = torch.nn.Parameter(torch.tensor([2.0, -3.0], dtype=torch.float64))
        opt = make_opt([p])
        for _ in range(20):
            p.grad = p.detach() * torch.tensor([1.0, 0.3], dtype=torch.float64)
            opt.step()
            if decay:
                opt.param_groups[0]["lr"] *= 0.9
        return p.detach()

    ours = lambda ps: VelocitySGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    torchs = lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    torch.testing.assert_close(trajectory(ours, False), trajectory(torchs, False))
    assert not torch.allclose(trajectory(ours, True), trajectory(torchs, True))


def _rates(builder, lr: float, epochs: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = builder(opt, total_steps=epochs * 1000, epochs=epochs, final_lr=0.05)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: changes nothing, keeps torch's step order
        schedule.after_epoch()
    return rates


def test_linear_decay_per_epoch_over_epochs_minus_one():
    # L3879-3903: decay_per_epoch = (0.15 - 0.05) / 49 = 0.0020408; epoch 50 uses 0.05.
    rates = _rates(linear_decay, 0.15, 50)
    assert rates[0] == pytest.approx(0.15) and rates[-1] == pytest.approx(0.05)
    assert round(rates[0] - rates[1], 7) == 0.0020408
    assert all(a - b == pytest.approx(0.1 / 49) for a, b in zip(rates, rates[1:]))


def test_exponential_decay_per_epoch_over_epochs_minus_one():
    # L3934-3965: decay_per_epoch = 0.25 ** (1 / 49) = 0.9721047.
    rates = _rates(exponential_decay, 0.2, 50)
    assert rates[0] == pytest.approx(0.2) and rates[-1] == pytest.approx(0.05)
    assert round(rates[1] / rates[0], 7) == 0.9721047
    assert all(b / a == pytest.approx(0.25 ** (1 / 49)) for a, b in zip(rates, rates[1:]))


# ---- the Boston targets (chapters 2, 3; fast) -----------------------------------------------

def run_preset(preset: str, tmp_path, data_root, *overrides: str) -> dict:
    cfg = make_config(f"experiment=dlfs/{preset}", f"data.root={data_root}",
                      "trainer.progress=false", "device=cpu", *overrides)
    return run(cfg, tmp_path / preset)


def assert_targets(result: dict) -> None:
    for check in result["expected"]:
        assert check["verdict"] == "reproduced", check


def test_boston_split_is_the_books(data_root):
    from nnrun.data import boston

    data = boston(str(data_root), test_size=0.3, random_state=80718, scale="all")
    _, y_test = next(iter(data.test.epoch()))
    assert len(y_test) == 152 and len(data.train) == 1  # 354 rows, one full batch
    assert round(y_test.double().mean().item(), 4) == 22.0776  # L2008


def test_ch2_ols_baseline(tmp_path, data_root):
    result = run_preset("ch2_ols_baseline", tmp_path, data_root)
    assert result["steps"] == 0
    assert_targets(result)  # MAE 3.5666, RMSE 5.0482 within 0.001


@pytest.mark.parametrize("preset,steps", [("ch2_linreg_boston", 1000), ("ch2_nn_boston", 10000)])
def test_ch2_from_scratch(preset, steps, tmp_path, data_root):
    result = run_preset(preset, tmp_path, data_root)
    assert result["steps"] == steps  # iterations are batches of 23, the last of a pass has 9
    assert_targets(result)


CH3 = ["ch3_linreg", "ch3_nn", "ch3_deep"]


@pytest.fixture(scope="module")
def ch3(tmp_path_factory, data_root) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("ch3")
    return {p: run_preset(p, tmp, data_root) for p in CH3}


@pytest.mark.parametrize("preset", CH3)
def test_ch3_boston(preset, ch3):
    result = ch3[preset]
    assert result["steps"] == 12 * result["epochs"]  # 11 batches of 32 and one of 2
    assert_targets(result)


def test_ch3_deeper_is_better(ch3):
    # L3343-3390: RMSE 5.01 (linear) > 4.03 (13 sigmoid) > 3.82 (13, 13 sigmoid).
    rmse = [ch3[p]["test/rmse"] for p in CH3]
    assert rmse[0] > rmse[1] > rmse[2]


# ---- the MNIST ladder of chapter 4 (slow: 50-100 epochs of 1000 batches each) ----------------

LADDER = ["ch4_mse", "ch4_softmax_ce", "ch4_momentum", "ch4_linear_decay", "ch4_exp_decay",
          "ch4_glorot_linear", "ch4_glorot_exp", "ch4_dropout"]
DEEP = ["ch4_deep_dropout", "ch4_deep_no_dropout"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory, data_root) -> dict[str, dict]:
    """Every chapter-4 preset, run once in full, on one thread as the reproduction report runs
    them: the thread count changes float32 sums, and the book's early stopping turns that into
    a different stopping epoch for ch4_deep_dropout (see its target's note)."""
    tmp = tmp_path_factory.mktemp("ladder")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p: run_preset(p, tmp, data_root) for p in LADDER + DEEP}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("preset", LADDER + DEEP)
def test_ch4_mnist_targets(preset, ladder):
    assert_targets(ladder[preset])


@pytest.mark.slow
def test_ch4_ladder_each_step_improves(ladder):
    # The report's ordering pairs: mse < softmax CE < momentum < linear decay < exponential
    # decay; each Glorot over its decay; dropout over both; the deep net needs dropout (L4231).
    results = [{"preset": f"dlfs/{p}", **r} for p, r in ladder.items()]
    table = ordering_rows(results)
    assert len(table) == 10
    assert all(row[-1] == "holds" for row in table), table


def test_book_early_stopping_stops_on_an_equal_loss(tmp_path, data_root):
    # lincoln's Trainer stops when a loss is not strictly lower (catalog/003a G-ES): a rate too
    # small to move a float32 weight repeats the epoch-10 loss at epoch 20, and that stops it.
    result = run_preset("ch3_linreg", tmp_path, data_root, "optimizer.lr=1e-30")
    assert result["status"] == "stopped_early" and result["epochs"] == 20
    assert result["val/loss"] == result["best/val/loss"]
