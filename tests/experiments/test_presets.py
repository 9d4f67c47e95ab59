"""Every experiment preset composes, carries the checklist's targets, builds and trains a few
steps on the CPU."""

from __future__ import annotations

import pytest

from nnrun.cli import group_options
from tests.helpers import CHECKLIST, make_config, run_preset

PRESETS = group_options("experiment")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_carries_the_checklists_targets(preset):
    """A preset with a number in ../shared/spec/experiments.md checks exactly that number; the
    others (the documents report none) check nothing."""
    expected = [(t.metric, t.value, t.tolerance) for t in make_config(f"experiment={preset}")
                .expected]
    assert expected == CHECKLIST.get(preset, [])
    assert set(CHECKLIST) <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_a_few_steps(preset, tmp_path, request):
    overrides = ["trainer.max_steps=2"]
    if "root" in make_config(f"experiment={preset}").data:  # a dataset read from disk
        overrides.append(f"data.root={request.getfixturevalue('data_root')}")
    result = run_preset(tmp_path, preset, *overrides, name="run")
    assert result["status"] in ("completed", "stopped_early")
    assert result["steps"] <= 2  # a model fitted in closed form takes no optimizer step
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
