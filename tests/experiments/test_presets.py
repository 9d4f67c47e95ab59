"""Every experiment preset composes, builds and trains a few steps on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config

from nnrun.data import data_root as resolve_root
from nnrun.run import run

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
PRESETS = sorted(str(p.relative_to(EXPERIMENTS).with_suffix("")) for p in
                 EXPERIMENTS.rglob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_a_few_steps(preset, tmp_path, request):
    overrides = [f"experiment={preset}", "trainer.max_steps=2", "trainer.progress=false",
                 "device=cpu"]
    if "root" in make_config(*overrides).data:  # a dataset read from disk
        overrides.append(f"data.root={request.getfixturevalue('data_root')}")
    data = make_config(*overrides).data
    if "path" in data and not (resolve_root(data.root) / data.path).is_file():
        pytest.skip(f"{preset}: its dataset file {resolve_root(data.root) / data.path} is not "
                    "there (not downloadable offline; see the preset's header)")
    result = run(make_config(*overrides), tmp_path / "run")
    assert result["status"] in ("completed", "stopped_early")
    assert result["steps"] <= 2  # Hebbian storage (Hopfield) takes no optimizer step
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
