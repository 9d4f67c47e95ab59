"""Every option of every config group composes, validates and builds its object."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate

from nnrun.run import validate
from nnrun.trainer import TrainerConfig

CONF = Path(__file__).parents[1] / "conf"
EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_has_its_options():
    assert options("model") == ["char_lstm", "char_rnn", "cnn", "conv_autoencoder", "conv_dense",
                                "dense", "dense_gcn", "dynamic_poly", "elman", "example_cnn",
                                "gcn", "gru", "hopfield", "least_squares", "legendre3", "linreg",
                                "lstm", "mlp", "poly3", "poly_linear", "rmlp", "rnn",
                                "simple_convnet", "state_space", "transformer",
                                "transformer_small"]
    assert options("data") == ["airline", "binary_patterns", "boston", "boston_closed_form", "cora",
                               "dlfs_text", "mnist", "opus_books", "random_regression", "shampoo",
                               "sine", "sine_grid", "single_sample", "tinyshakespeare",
                               "toy_linreg", "trig"]
    assert options("optimizer") == ["adadelta", "adagrad", "adam", "adamw", "gd", "rmsprop", "sgd",
                                    "sgd_velocity"]
    assert options("schedule") == ["constant", "cosine", "exponential", "exponential_decay",
                                   "linear_decay", "onecycle", "plateau", "step"]
    assert options("device") == ["auto", "cpu", "cuda"]


@pytest.mark.parametrize("model,shape", [("lstm", (20, 1)), ("rnn", (20, 1)), ("gru", (20, 1)),
                                         ("mlp", (1, 28, 28)), ("cnn", (1, 28, 28)),
                                         ("gcn", (1433,))])
def test_model_options_build(model, shape):
    cfg = make_config(f"model={model}")
    validate(cfg)
    net = instantiate(cfg.model, in_shape=shape, out_features=3)
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_options_build(name):
    cfg = make_config(f"optimizer={name}")
    validate(cfg)
    opt = instantiate(cfg.optimizer, params=[torch.nn.Parameter(torch.zeros(2))])
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", options("schedule"))
def test_schedule_options_build(name):
    cfg = make_config(f"schedule={name}")
    validate(cfg)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    schedule = instantiate(cfg.schedule, optimizer=opt, total_steps=100)
    assert schedule.interval in ("step", "epoch", "eval")
    schedule.load_state_dict(schedule.state_dict())


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_device_options_build(name):
    device = instantiate(make_config(f"device={name}").device)
    assert isinstance(device, torch.device)


def test_sine_data_builds_windows():
    cfg = make_config("data.n_points=100", "data.window=10", "data.val_fraction=0.2")
    data = instantiate(cfg.data)
    x, y = next(data.train.epoch())
    assert x.shape[1:] == (10, 1) and y.shape[1:] == (1,)
    assert data.dims == {"in_shape": (10, 1), "out_features": 1}
    # windows are chronological: the val split starts where train ends
    n_train = sum(len(b[0]) for b in data.train.epoch())
    n_val = sum(len(b[0]) for b in data.val.epoch())
    assert (n_train, n_val) == (72, 18)


@pytest.mark.parametrize("name,task", [("sine", "Regression"), ("mnist", "Classification"),
                                       ("cora", "NodeClassification")])
def test_data_option_picks_its_task(name, task):
    cfg = make_config(f"data={name}")
    assert cfg.task._target_ == f"nnrun.tasks.{task}"
    validate(cfg)


def test_task_can_be_overridden():
    assert make_config("task=classification").task._target_ == "nnrun.tasks.Classification"


def test_mnist_and_cora_build_from_the_data_root(data_root):
    mnist = instantiate(make_config("data=mnist", f"data.root={data_root}").data)
    assert mnist.dims == {"in_shape": (1, 28, 28), "out_features": 10}
    assert len(mnist.train.tensors[0]) == 55000 and len(mnist.val.tensors[0]) == 5000
    assert len(mnist.test.tensors[0]) == 10000
    cora = instantiate(make_config("data=cora", f"data.root={data_root}").data)
    assert cora.dims == {"in_shape": (1433,), "out_features": 7}
    x, edge_index, y, mask = cora.train.tensors
    assert x.shape == (2708, 1433) and int(mask.sum()) == 140
    # the three splits share one copy of the graph
    assert cora.val.tensors[0] is x and cora.test.tensors[0] is x


def preset_ids() -> list[str]:
    return sorted(str(p.relative_to(EXPERIMENTS).with_suffix("")) for p in
                  EXPERIMENTS.rglob("*.yaml"))


@pytest.mark.parametrize("preset", preset_ids())
def test_every_experiment_preset_composes(preset):
    cfg = make_config(f"experiment={preset}")
    validate(cfg)


def test_trainer_defaults_in_code_match_the_yaml():
    assert instantiate(make_config().trainer) == TrainerConfig()
