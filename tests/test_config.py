"""Every option of every config group composes, validates and builds its object; data options
pick their task; a model gets exactly the sizes it asks for."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from nnrun.cli import group_options
from nnrun.data import Sizes
from nnrun.errors import ConfigError
from nnrun.run import run, size_arguments, validate
from nnrun.trainer import TrainerConfig
from tests.helpers import build_model, make_config


def test_every_group_has_its_options():
    assert group_options("model") == [
        "char_lstm", "char_rnn", "cnn", "conv_autoencoder", "conv_dense", "dense", "dense_gcn",
        "dynamic_poly", "elman", "example_cnn", "gcn", "gru", "hopfield", "least_squares",
        "legendre3", "linreg", "lstm", "mlp", "poly3", "poly_linear", "rmlp", "rnn",
        "simple_convnet", "state_space", "transformer", "transformer_small"]
    assert group_options("data") == [
        "airline", "binary_patterns", "boston", "cora", "dlfs_text", "mnist", "opus_books",
        "random_regression", "shampoo", "sine", "sine_grid", "single_sample", "tatoeba",
        "tinyshakespeare", "toy_linreg", "trig"]
    assert group_options("optimizer") == ["adadelta", "adagrad", "adam", "adamw", "gd",
                                          "rmsprop", "sgd", "sgd_velocity"]
    assert group_options("schedule") == ["constant", "cosine", "exponential", "exponential_decay",
                                         "linear_decay", "onecycle", "plateau", "step"]
    assert group_options("device") == ["auto", "cpu", "cuda"]


@pytest.mark.parametrize("model,inputs", [
    ("lstm", lambda: (torch.zeros(2, 20, 1),)), ("rnn", lambda: (torch.zeros(2, 20, 1),)),
    ("gru", lambda: (torch.zeros(2, 20, 1),)), ("mlp", lambda: (torch.zeros(2, 1, 28, 28),)),
    ("cnn", lambda: (torch.zeros(2, 1, 28, 28),)),
    ("gcn", lambda: (torch.zeros(2, 1433), torch.tensor([[0, 1], [1, 0]])))])
def test_model_options_build(model, inputs):
    args = inputs()
    net = build_model(Sizes(tuple(args[0].shape[1:]), 3), f"model={model}")
    assert net(*args).shape == (2, 3)


def test_a_model_gets_only_the_sizes_its_constructor_takes():
    sizes = Sizes((12,), 5, vocab_size=40, seq_len=12)
    assert size_arguments(make_config("model=mlp").model, sizes) == {"in_shape": (12,),
                                                                     "out_features": 5}
    assert size_arguments(make_config("model=char_lstm").model, sizes) == {"vocab_size": 40}
    assert size_arguments(make_config("model=transformer").model, sizes) == {
        "vocab_size": 40, "out_features": 5, "seq_len": 12}
    with pytest.raises(ConfigError, match="needs the data's vocab_size, which this data does "
                                          "not give"):
        size_arguments(make_config("model=char_lstm").model, Sizes((12,), 5))
    # a size the model's YAML sets itself is not overridden by the data's
    assert size_arguments(make_config("model=mlp", "+model.out_features=2").model,
                          sizes) == {"in_shape": (12,)}


@pytest.mark.parametrize("overrides,missing", [
    (["data=binary_patterns", "model=mlp"], "out_features"),  # nothing to learn by gradient
    (["data=dlfs_text", "model=mlp"], "in_shape"),            # token ids, not features
    (["data=sine", "model=char_lstm"], "vocab_size")])
def test_a_model_the_data_cannot_feed_is_refused_before_anything_is_written(overrides, missing,
                                                                            tmp_path):
    cfg = make_config(*overrides, "trainer.progress=false", "device=cpu")
    with pytest.raises(ConfigError, match=f"needs the data's {missing}"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", group_options("optimizer"))
def test_optimizer_options_build(name):
    cfg = make_config(f"optimizer={name}")
    validate(cfg)
    opt = instantiate(cfg.optimizer, params=[torch.nn.Parameter(torch.zeros(2))])
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", group_options("schedule"))
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


@pytest.mark.parametrize("data,task", [
    ("sine", "regression.Regression"), ("mnist", "classification.Classification"),
    ("cora", "classification.NodeClassification"), ("airline", "forecast.Forecast"),
    ("shampoo", "forecast.Forecast"), ("binary_patterns", "recall.AssociativeRecall"),
    ("dlfs_text", "next_char.NextCharacter"), ("tatoeba", "translation.Translation")])
def test_data_option_picks_its_task(data, task):
    cfg = make_config(f"data={data}")
    assert cfg.task._target_ == f"nnrun.tasks.{task}"
    validate(cfg)


def test_task_can_be_overridden():
    assert make_config("task=classification").task._target_ == \
        "nnrun.tasks.classification.Classification"


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_every_experiment_preset_composes(preset):
    validate(make_config(f"experiment={preset}"))


def test_trainer_defaults_in_code_match_the_yaml():
    assert instantiate(make_config().trainer) == TrainerConfig()
