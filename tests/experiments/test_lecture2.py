"""The lecture on training (seed-002): its loss printout to every digit through three routes."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tests.helpers import LECTURE_W, LECTURE_X, assert_reproduced, scalars

# In [88]'s printout, epochs 0, 5, ..., 25 (seed-002 L221-239), each loss before its update
LECTURE_LOSSES = ["980.00000000", "646.58898926", "427.49359131", "283.42648315",
                  "188.61242676", "126.13953400"]


# In [99] and In [100] print these for epochs 0-20 (L855-863, L953-966): the same loop whose
# 2021 torch summed Xᵀ·grad with fused multiply-adds (see lecture2/linreg_autograd.yaml)
LECTURE_FMA_LOSSES = ["980.00000000", "646.58898926", "427.49307251", "283.42614746",
                      "188.61228943"]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def run_preset(tmp_path, preset: str, *overrides: str) -> tuple[dict, dict[int, float]]:
    """The run's result and its `train/loss` points by step."""
    result = helpers.run_preset(tmp_path, preset, *overrides)
    return result, scalars(tmp_path / preset.replace("/", "_"))


@pytest.fixture(scope="module")
def lecture2_runs(tmp_path_factory) -> dict[str, tuple[dict, dict[int, float], dict]]:
    """The three presets, each run once in full (1001 steps of a 4x2 regression: a second)."""
    runs = {}
    for preset in ("linreg_manual", "linreg_autograd", "linreg_optim"):
        tmp = tmp_path_factory.mktemp(preset)
        result, losses = run_preset(tmp, f"lecture2/{preset}")
        runs[preset] = (result, losses, final_weights(tmp / f"lecture2_{preset}"))
    return runs


@pytest.mark.parametrize("preset", ["linreg_manual", "linreg_autograd"])
def test_lecture2_hand_update_reproduces_every_printed_digit(lecture2_runs, preset):
    result, losses, weights = lecture2_runs[preset]
    assert result["status"] == "completed" and result["steps"] == 1001 and len(losses) == 1001
    # epoch e's loss is logged at step e + 1, before that epoch's update, as the lecture prints
    assert [f"{losses[e + 1]:.8f}" for e in range(0, 30, 5)] == LECTURE_LOSSES
    assert [f"{w:.5f}" for w in weights["weight"][0].tolist()] == ["1.99996", "1.00000"]
    assert f"{result['train/loss']:.8f}" == "0.00000001"  # L1135, the last loss
    assert_reproduced(result, f"lecture2/{preset}")


def test_lecture2_manual_and_autograd_gradients_agree_bit_for_bit(lecture2_runs):
    _, manual, w_manual = lecture2_runs["linreg_manual"]
    _, autograd, w_autograd = lecture2_runs["linreg_autograd"]
    assert manual == autograd
    assert torch.equal(w_manual["weight"], w_autograd["weight"])


def test_lecture2_optim_route_is_the_lectures_sgd_loop(lecture2_runs):
    """torch.optim.SGD's fused step rounds once where the hand update rounds twice, so this
    route's float32 digits are not In [88]'s; it is the lecture's In [100] loop exactly."""
    result, losses, weights = lecture2_runs["linreg_optim"]
    x = torch.tensor(LECTURE_X)
    y = x @ torch.tensor(LECTURE_W)
    w = torch.zeros(2, requires_grad=True)      # In [100], seed-002 L882-944, verbatim
    loss = torch.nn.MSELoss()
    optimizer = torch.optim.SGD([w], lr=0.0013)
    for epoch in range(1001):
        value = loss(y, x @ w)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert losses[epoch + 1] == value.item(), epoch
    assert torch.equal(weights["weight"][0], w.detach())
    assert [f"{v:.5f}" for v in w.tolist()] == ["1.99996", "1.00000"]
    assert f"{result['train/loss']:.8f}" == "0.00000001"
    # within float32 rounding of both printouts, epoch by epoch
    for printed in (LECTURE_LOSSES, LECTURE_FMA_LOSSES):
        for i, value in enumerate(printed):
            assert losses[5 * i + 1] == pytest.approx(float(value), rel=1.5e-6)


def test_lecture2_variant_1_converges(tmp_path):
    """The lecture's first variant (2nd feature always 0, lr 0.05, 21 steps; catalog/002 E1)."""
    result, losses = run_preset(tmp_path, "lecture2/linreg_manual",
                                "data.x=[[1,0],[2,0],[3,0],[4,0]]", "data.weights=[2,0]",
                                "optimizer.lr=0.05", "trainer.epochs=21",
                                "trainer.eval_every=21", "trainer.save_every=21")
    assert losses[1] == 30.0 and losses[6] == pytest.approx(2.86e-5, rel=0.01)
    assert result["val/mse"] < 1e-9
