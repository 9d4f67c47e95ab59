"""The shared trainer, run in-process through `run(cfg, run_dir)` on real configs."""

from __future__ import annotations

import json

import pytest
import torch

from nnrun import checkpoint
from nnrun.errors import ConfigError
from nnrun.run import run
from tests.helpers import TINY_SINE, make_config, run_preset

TINY_MLP = [o for o in TINY_SINE if not o.startswith("model.")] + ["model=mlp"]


def train(tmp_path, *overrides: str, name: str = "run") -> dict:
    return run(make_config(*overrides), tmp_path / name)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_default_job_learns_the_sine(tmp_path):
    result = train(tmp_path, "trainer.progress=false")
    assert result["status"] == "completed"
    assert result["epochs"] == 20 and result["steps"] == 20 * 25
    assert result["val/r2"] > 0.9
    # noise 0.1 bounds the achievable error from below
    assert 0.005 < result["val/mse"] < 0.03
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["val/loss"] == result["val/loss"]
    assert saved["best/val/loss"] <= saved["val/loss"]


@pytest.mark.parametrize("model,steps,floor", [("mlp", 300, 0.85), ("cnn", 150, 0.8)])
def test_image_classification(tmp_path, data_root, model, steps, floor):
    result = train(tmp_path, f"model={model}", "data=mnist", f"data.root={data_root}",
                   f"trainer.max_steps={steps}", "trainer.progress=false")
    assert result["steps"] == steps and result["epochs"] == 0  # stopped inside epoch 1
    assert result["val/acc"] > floor and result["test/acc"] > floor


def test_node_classification_on_cora(tmp_path, data_root):
    result = train(tmp_path, "model=gcn", "data=cora", f"data.root={data_root}",
                   "optimizer.lr=0.01", "optimizer.weight_decay=5e-4", "trainer.epochs=100",
                   "trainer.eval_every=10", "trainer.progress=false")
    assert result["steps"] == 100  # one full-graph step per epoch
    assert result["test/acc"] > 0.75


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = train(tmp_path, *TINY_SINE, name="a")
    b = train(tmp_path, *TINY_SINE, name="b")
    c = train(tmp_path, *TINY_SINE, "seed=1", name="c")
    wa, wb, wc = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["val/loss"] == b["val/loss"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa) and c["val/loss"] != a["val/loss"]


def test_max_steps_and_eval_every_steps(tmp_path):
    result = train(tmp_path, *TINY_SINE, "trainer.epochs=10", "trainer.max_steps=7",
                   "trainer.eval_every_steps=3")
    assert result["steps"] == 7 and result["status"] == "completed"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 7 and state["batch_in_epoch"] == 2  # 5 batches an epoch


def test_early_stopping(tmp_path):
    # Watching val/loss for a *maximum* while it falls: no evaluation after the first improves.
    result = train(tmp_path, *TINY_SINE, "trainer.epochs=10", "trainer.mode=max",
                   "trainer.patience=2", "optimizer.lr=0.01")
    assert result["status"] == "stopped_early"
    assert result["epochs"] == 3  # best at epoch 1, then two evaluations without improvement


@pytest.mark.parametrize("clip", ["clip_grad_value", "clip_grad_norm"])
def test_gradient_clipping_bounds_every_update(tmp_path, clip):
    limit, lr, steps = 1e-4, 0.5, 10
    common = [*TINY_SINE, "optimizer=sgd", f"optimizer.lr={lr}", "trainer.epochs=1",
              f"trainer.max_steps={steps}"]
    train(tmp_path, *common, "trainer.epochs=0", name="start")
    train(tmp_path, *common, f"trainer.{clip}={limit}", name="clipped")
    train(tmp_path, *common, name="free")
    start, clipped = weights(tmp_path / "start"), weights(tmp_path / "clipped")
    free = weights(tmp_path / "free")
    moved = torch.cat([(clipped[k] - start[k]).flatten() for k in start])
    bound = steps * lr * limit
    assert (moved.abs().max() if clip == "clip_grad_value" else moved.norm()) <= bound * 1.001
    assert max((free[k] - start[k]).abs().max() for k in start) > 10 * bound


@pytest.mark.parametrize("schedule,overrides,expected", [
    ("step", ["schedule.step_size=1", "schedule.gamma=0.5"], 0.1 * 0.5 ** 2),
    ("exponential", ["schedule.gamma=0.5"], 0.1 * 0.5 ** 2),
    ("cosine", ["schedule.eta_min=0.001"], 0.001),
    ("onecycle", [], None),
    ("constant", [], 0.1),
])
def test_schedules_set_the_rate(tmp_path, schedule, overrides, expected):
    train(tmp_path, *TINY_SINE, "optimizer=sgd", "optimizer.lr=0.1", f"schedule={schedule}",
          *[f"{o}" for o in overrides])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    lr = state["optimizer"]["param_groups"][0]["lr"]
    if expected is None:  # one-cycle ends far below its peak, optimizer.lr
        assert lr < 0.1 / 10
    else:
        assert lr == pytest.approx(expected, rel=1e-6)


def test_plateau_schedule_drops_the_rate_when_the_metric_stalls(tmp_path):
    train(tmp_path, *TINY_SINE, "optimizer=sgd", "optimizer.lr=0.1", "schedule=plateau",
          "schedule.patience=0", "schedule.factor=0.5", "schedule.mode=max", "trainer.epochs=3")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)


def test_bf16_autocast_and_deterministic_mode(tmp_path):
    result = train(tmp_path, *TINY_MLP, "trainer.bf16=true",
                   "trainer.deterministic=true")
    assert result["status"] == "completed" and result["val/loss"] < 1.0
    torch.use_deterministic_algorithms(False)


def test_torch_compile_switch(tmp_path):
    result = train(tmp_path, *TINY_MLP, "trainer.compile=true", "trainer.epochs=1")
    assert result["status"] == "completed"
    assert not any(k.startswith("_orig_mod") for k in weights(tmp_path / "run"))


def test_expected_targets_get_a_verdict(tmp_path):
    targets = ("expected=[{metric: val/r2, value: 1.0, tolerance: 2.0, source: a},"
               "{metric: val/mse, value: 100.0, tolerance: 0.1, source: b},"
               "{metric: test/acc, value: 0.9, tolerance: 0.1, source: c}]")
    result = train(tmp_path, *TINY_SINE, targets)
    verdicts = [(c["source"], c["verdict"]) for c in result["expected"]]
    assert verdicts == [("a", "reproduced"), ("b", "outside tolerance"), ("c", "missing")]
    assert result["expected"][0]["measured"] == result["val/r2"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["expected"] == result["expected"]


def test_a_malformed_target_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected"):
        train(tmp_path, *TINY_SINE, "expected=[{metric: val/r2, value: 1.0}]")


def test_save_every_writes_last_pt_every_n_epochs(tmp_path, monkeypatch):
    saved: list[int] = []
    original = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda state, path: (saved.append(state["epoch"]), original(state, path)))
    run_preset(tmp_path, "rnn_lab/poly3_sgd", "trainer.epochs=7", "trainer.save_every=3",
               "trainer.eval_every=100")
    assert saved == [3, 6, 7]  # every 3rd epoch, and the end (best.pt there is a link)
