"""The KFU textbook's presets (seed-001): the chapter-2 printouts to every digit, Boston, the
noise ablation, the MNIST CNN, Cora and the Transformer."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun.run import run, validate
from tests.helpers import assert_reproduced, make_config, nnrun, run_preset


def train(tmp_path, preset: str, *overrides: str, name: str = "run") -> dict:
    return run_preset(tmp_path, f"kfu_pytorch/{preset}", *overrides, name=name)


def weight(tmp_path, name: str = "run") -> float:
    state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
    return state["model"]["weight"].item()


# The book's printouts (seed-001 L627-636 and L689-700): epoch, w after that epoch's update,
# the loss computed before it.
NUMPY_PRINTOUT = [(1, "3.600", "67.50000000"), (3, "3.024", "0.10799979"),
                  (5, "3.001", "0.00017279"), (7, "3.000", "0.00000028"),
                  (9, "3.000", "0.00000000"), (11, "3.000", "0.00000000"),
                  (13, "3.000", "0.00000000"), (15, "3.000", "0.00000000")]


AUTOGRAD_PRINTOUT = [(1, "0.900", "67.50000000"), (6, "2.647", "1.90670800"),
                     (11, "2.941", "0.05385974"), (16, "2.990", "0.00152141"),
                     (21, "2.998", "0.00004297"), (26, "3.000", "0.00000121"),
                     (31, "3.000", "0.00000003"), (36, "3.000", "0.00000000"),
                     (41, "3.000", "0.00000000"), (46, "3.000", "0.00000000")]


@pytest.mark.parametrize("preset,epoch,w,loss",
                         [("ch2_linreg_numpy", *line) for line in NUMPY_PRINTOUT]
                         + [("ch2_linreg_autograd", *line) for line in AUTOGRAD_PRINTOUT])
def test_linear_regression_prints_the_books_numbers(tmp_path, preset, epoch, w, loss):
    # `epoch` one-step epochs; with log_every=1, train/loss is the loss of the last step alone
    result = train(tmp_path, preset, f"trainer.epochs={epoch}")
    assert (f"{weight(tmp_path):.3f}", f"{result['train/loss']:.8f}") == (w, loss)


@pytest.mark.parametrize("preset", ["ch2_linreg_numpy", "ch2_linreg_autograd"])
def test_linear_regression_predicts_f5(tmp_path, preset):
    before = train(tmp_path, preset, "trainer.epochs=0", name="before")
    assert f"{5 * weight(tmp_path, 'before'):.3f}" == "0.000"  # L626 and L688
    after = train(tmp_path, preset)
    assert f"{5 * weight(tmp_path):.3f}" == "15.000"           # L636 and L700
    assert before["status"] == after["status"] == "completed"
    assert_reproduced(after, f"kfu_pytorch/{preset}")


@pytest.mark.slow  # ~7 s: the default suite keeps to 15 minutes
def test_boston_mlp_reaches_the_books_r2(tmp_path, data_root):
    result = train(tmp_path, "ch4_boston_mlp", f"data.root={data_root}")
    assert result["steps"] == 300  # one full-batch step per epoch
    assert_reproduced(result, "kfu_pytorch/ch4_boston_mlp")
    # the test split validates; the scatter of predicted against true prices is logged
    assert result["val/r2"] == result["test/r2"]
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["val/scatter"]


def test_noise_ablation_sweeps_four_noise_levels_and_runs_one_without_m(tmp_path):
    quick = ["trainer.epochs=1", "trainer.progress=false", "device=cpu"]
    sweep = nnrun("-m", "experiment=kfu_pytorch/ch6_noise_ablation", *quick,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    noises = []
    for job in range(4):
        config = (tmp_path / "sweep" / str(job) / ".hydra" / "config.yaml").read_text()
        noises += [float(line.split(":")[1]) for line in config.splitlines()
                   if line.startswith("  noise:")]
        metrics = json.loads((tmp_path / "sweep" / str(job) / "metrics.json").read_text())
        assert metrics["status"] == "completed"
    assert noises == [0.0, 0.1, 0.2, 0.3]
    assert not (tmp_path / "sweep" / "4").exists()

    # without -m the sweeper's list is not used: one run at the preset's own noise level
    single = make_config("experiment=kfu_pytorch/ch6_noise_ablation", *quick)
    assert single.data.noise == 0.0
    assert run(single, tmp_path / "single")["status"] == "completed"


@pytest.mark.slow
def test_mnist_cnn_reaches_the_notebooks_accuracy(tmp_path, data_root):
    result = train(tmp_path, "ch7_mnist_cnn", f"data.root={data_root}")
    assert result["epochs"] == 9 and result["steps"] == 9 * 469
    assert_reproduced(result, "kfu_pytorch/ch7_mnist_cnn")


@pytest.mark.slow  # ~30 s on 2 cores: the default suite keeps to 15 minutes
def test_cora_gcn_reaches_the_notebooks_accuracy(tmp_path, data_root):
    result = train(tmp_path, "ch8_cora_gcn", f"data.root={data_root}")
    assert result["steps"] == 2000
    assert_reproduced(result, "kfu_pytorch/ch8_cora_gcn")


def test_the_preset_and_options_compose():
    for overrides in (["experiment=kfu_pytorch/ch9_transformer"],
                      ["model=transformer_small", "data=opus_books"]):
        cfg = make_config(*overrides)
        validate(cfg)
        assert cfg.task._target_ == "nnrun.tasks.translation.Translation"
    cfg = make_config("experiment=kfu_pytorch/ch9_transformer")
    assert cfg.data.path == "tatoeba/en-ru.jsonl" and cfg.data.seq_len == 350
    assert (cfg.model.d_model, cfg.model.layers) == (128, 3)
    # the book's model is one override away
    book = make_config("experiment=kfu_pytorch/ch9_transformer", "model=transformer")
    assert (book.model.d_model, book.model.layers, book.model.heads, book.model.d_ff) == (
        512, 6, 8, 2048)
