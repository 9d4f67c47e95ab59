"""What a run leaves in `tb/`, read back the way TensorBoard reads it: scalars, the forecast
figure, the HPARAMS entry, a live `tensorboard` server, and the curves after a resume."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from tests.helpers import (
    TINY_SINE,
    get_json,
    hparams_data,
    make_config,
    nnrun,
    tensorboard_server,
)

LR = 0.005  # not the default (0.001), so the HPARAMS entry must carry the override
VAL = ["val/loss", "val/mse", "val/mae", "val/rmse", "val/r2"]
SCALARS = ["train/loss", *VAL, "lr", "time/epoch_s"]
# the run's HPARAMS: TINY_SINE's keys, optimizer.lr and seed; an int as text (TensorBoard would
# print 8 as 8.0000)
HPARAMS = {"data.n_points": "200", "data.window": "8", "model.hidden_size": "8",
           "trainer.epochs": "2", "trainer.progress": False, "optimizer.lr": LR, "seed": "0"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny sine run through the real command line."""
    root = tmp_path_factory.mktemp("tb")
    result = nnrun(*TINY_SINE, f"optimizer.lr={LR}", f"hydra.run.dir={root / 'run'}", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def accumulator(tb_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in acc.Scalars(tag)]


def test_scalars_have_their_tags_steps_and_final_values(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    acc = accumulator(run_dir / "tb")
    assert set(SCALARS) <= set(acc.Tags()["scalars"])
    last_step, epochs = metrics["steps"], metrics["epochs"]
    assert metrics["status"] == "completed" and epochs == 2 and last_step > epochs

    for tag in SCALARS:
        tag_steps = steps(acc, tag)
        assert tag_steps == sorted(set(tag_steps)), f"{tag}: steps repeat or go back: {tag_steps}"
        assert tag_steps[-1] == last_step, tag
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag)), tag
    assert len(steps(acc, "train/loss")) >= 2
    for tag in [*VAL, "time/epoch_s"]:  # once per epoch (eval_every=1)
        assert len(steps(acc, tag)) == epochs, tag

    last = {tag: acc.Scalars(tag)[-1].value for tag in SCALARS}
    for tag in ["train/loss", *VAL]:  # float32 in the event file, float64 in metrics.json
        assert last[tag] == pytest.approx(metrics[tag], rel=1e-6), tag
    assert last["val/mse"] == pytest.approx(last["val/loss"], rel=1e-6)  # regression: MSE loss
    assert last["val/rmse"] == pytest.approx(math.sqrt(last["val/mse"]), rel=1e-5)
    assert last["val/r2"] <= 1 and last["val/mae"] > 0
    assert all(e.value == pytest.approx(LR) for e in acc.Scalars("lr"))  # constant schedule
    assert all(e.value > 0 for e in acc.Scalars("time/epoch_s"))


def test_forecast_figure_is_an_image_summary(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    acc = accumulator(run_dir / "tb")
    assert "val/forecast" in acc.Tags()["images"]
    images = acc.Images("val/forecast")
    assert [image.step for image in images] == [metrics["steps"]]
    assert images[0].width > 0 and images[0].height > 0
    assert images[0].encoded_image_string.startswith(b"\x89PNG")


def start_values(data: dict[str, plugin_data_pb2.HParamsPluginData]) -> dict[str, object]:
    """The hyperparameters of a run's HPARAMS entry, each as the type it was written."""
    start = data[metadata.SESSION_START_INFO_TAG].session_start_info.hparams
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in start.items()}


def test_hparams_entry_holds_the_keys_the_command_line_set(run_dir):
    """The overrides' keys with their resolved values, and the seed: not the whole config."""
    data = hparams_data(run_dir / "tb")
    # no experiment summary: TensorBoard gathers the columns from every run's entry
    assert set(data) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    values = start_values(data)
    assert values == HPARAMS and values["trainer.progress"] is False  # a bool, not a number 0
    end = data[metadata.SESSION_END_INFO_TAG].session_end_info
    assert end.status == api_pb2.Status.STATUS_SUCCESS


def test_a_run_from_python_shows_its_seed(tmp_path):
    """`run` called from Python has no command line: its entry holds the seed alone."""
    from nnrun.run import run

    assert run(make_config(*TINY_SINE, "seed=3"), tmp_path / "run")["status"] == "completed"
    assert start_values(hparams_data(tmp_path / "run" / "tb")) == {"seed": "3"}


def test_tensorboard_server_lists_the_run(run_dir, tmp_path):
    """The real `tensorboard` server, on loopback only, serves the run's scalars and HPARAMS."""
    metrics = json.loads((run_dir / "metrics.json").read_text())

    def ready(base: str) -> bool:
        return set(SCALARS) <= set(get_json(f"{base}/data/plugin/scalars/tags").get("tb", {}))

    with tensorboard_server(run_dir, tmp_path / "tensorboard.log", ready) as base:
        assert get_json(f"{base}/data/runs") == ["tb"]

        points = get_json(f"{base}/data/plugin/scalars/scalars?run=tb&tag=val/loss")
        assert points[-1][1] == metrics["steps"]  # [wall_time, step, value]
        assert points[-1][2] == pytest.approx(metrics["val/loss"], rel=1e-6)

        groups = get_json(f"{base}/data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN"],
            "colParams": [{"hparam": "optimizer.lr"}, {"metric": {"tag": "val/loss"}}],
            "startIndex": 0, "sliceSize": 10})["sessionGroups"]
        assert len(groups) == 1
        assert groups[0]["hparams"] == HPARAMS
        values = {m["name"]["tag"]: m["value"] for m in groups[0]["metricValues"]}
        assert values["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)

        experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {info["name"] for info in experiment["hparamInfos"]} == set(HPARAMS)
        # the final metrics are columns, read from their scalars
        assert {"train/loss", *VAL} <= {info["name"]["tag"] for info in experiment["metricInfos"]}



def test_resume_after_a_kill_leaves_one_point_per_step(tmp_path):
    """A run killed after its epoch-2 checkpoint had logged epoch 3 already; resumed, every curve
    has each step once: the stale epoch-3 points are purged, the epoch-2 ones kept."""
    tiny = [o for o in TINY_SINE if not o.startswith("trainer.epochs=")]
    two, killed = tmp_path / "two", tmp_path / "killed"
    for run, epochs in ((two, 2), (killed, 3)):
        result = nnrun(*tiny, f"trainer.epochs={epochs}", f"hydra.run.dir={run}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    # `killed` as a kill after the epoch-2 checkpoint leaves it: that checkpoint, epoch-3 events
    shutil.copy(two / "checkpoints" / "last.pt", killed / "checkpoints" / "last.pt")
    full = accumulator(killed / "tb")
    full_steps = {tag: steps(full, tag) for tag in SCALARS}
    resume_start = time.time()

    result = nnrun(*tiny, "trainer.epochs=3", "trainer.resume=auto", f"hydra.run.dir={killed}",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((killed / "tb").glob("events.out.tfevents.*"))) == 2
    acc = accumulator(killed / "tb")
    for tag in SCALARS:
        assert steps(acc, tag) == full_steps[tag], tag  # no step twice, none lost, none back
    saved_step = json.loads((two / "metrics.json").read_text())["steps"]
    last_step = json.loads((killed / "metrics.json").read_text())["steps"]
    assert 0 < saved_step < last_step
    for tag in SCALARS:  # up to the checkpoint: the killed run's points; after it: the new run's
        events = acc.Scalars(tag)
        assert all(e.wall_time < resume_start for e in events if e.step <= saved_step), tag
        assert all(e.wall_time >= resume_start for e in events if e.step > saved_step), tag
        assert saved_step in steps(acc, tag) and events[-1].step == last_step, tag
    assert [image.step for image in acc.Images("val/forecast")] == [last_step]
