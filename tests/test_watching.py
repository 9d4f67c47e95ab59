"""Watching a run through the real command line, where stdout is a pipe (as in batch jobs, CI
and SLURM logs): a start line with the run directory and the device, a plain line per epoch or
evaluation, the summary as plain lines, and the same lines in the run's nnrun.log."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import TINY_SINE, nnrun

EPOCH = re.compile(r"epoch (\d+)/(\d+)  step (\d+)/(\d+)  (.*)")


def values(rest: str) -> dict[str, float]:
    """`train/loss 0.0123  val/loss 0.015  lr 0.001` as a dict."""
    return {name: float(value) for name, value in (pair.split(" ") for pair in rest.split("  "))}


def logged(run_dir: Path) -> list[str]:
    """The messages of nnrun.log, its `[time][logger][LEVEL] - ` prefixes removed."""
    return [line.split("] - ", 1)[1] for line in (run_dir / "nnrun.log").read_text().splitlines()]


def device(run_dir: Path) -> str:
    """The device the run used, as run.json records it (`cuda (NVIDIA ...)` on a GPU)."""
    start = json.loads((run_dir / "run.json").read_text())["starts"][0]
    return f"{start['device']} ({start['device_name']})" if "device_name" in start else \
        start["device"]


def test_a_quiet_run_prints_its_start_each_epoch_and_its_summary_and_logs_them(tmp_path):
    run_dir = tmp_path / "run"
    result = nnrun(*TINY_SINE, f"hydra.run.dir={run_dir}", cwd=tmp_path)  # progress=false
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    metrics = json.loads((run_dir / "metrics.json").read_text())

    assert lines[0] == f"nnrun: run {run_dir} on {device(run_dir)}"
    epochs = [EPOCH.fullmatch(line) for line in lines if line.startswith("epoch ")]
    assert [(m[1], m[2]) for m in epochs] == [("1", "2"), ("2", "2")]
    steps = [int(m[3]) for m in epochs]
    assert steps[0] * 2 == steps[1] == metrics["steps"] and epochs[0][4] == str(steps[1])
    last = values(epochs[-1][5])
    assert list(last) == ["train/loss", "val/loss", "lr"]
    assert last["val/loss"] == float(f"{metrics['val/loss']:.4g}")
    assert last["train/loss"] == float(f"{metrics['train/loss']:.4g}")
    assert last["lr"] == 0.001

    start = lines.index("nnrun: completed")
    assert start > lines.index(epochs[-1][0])
    rows = dict(re.split(r" {2,}", line.strip(), maxsplit=1) for line in lines[start + 1:])
    assert rows["best/val/loss"] == f"{metrics['best/val/loss']:.4g}"
    assert rows["val/r2"] == f"{metrics['val/r2']:.4g}"
    assert rows["epochs / steps"] == f"2 / {metrics['steps']}"
    assert rows["run directory"] == str(run_dir)
    assert rows["last.pt"] == str(run_dir / "checkpoints" / "last.pt")
    assert not any(c in result.stdout for c in "━┃│")  # no rich bar, no table

    # nnrun.log holds every line the console shows, once each, and nothing else
    assert logged(run_dir) == lines


def test_a_piped_run_with_progress_on_gets_plain_lines_and_the_chosen_device(tmp_path):
    """Output to a pipe: no rich bar (it would show once, at the end); the config tree shows
    the device `device=auto` chose, not `select_device(name=auto)`."""
    run_dir = tmp_path / "run"
    overrides = [o for o in TINY_SINE if o != "trainer.progress=false"]
    result = nnrun(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "━" not in result.stdout and "select_device" not in result.stdout
    assert f"device: {device(run_dir)}" in result.stdout
    assert len([line for line in result.stdout.splitlines() if EPOCH.fullmatch(line)]) == 2
    assert "nnrun: completed" in result.stdout.splitlines()
    assert [m for m in logged(run_dir) if m.startswith("epoch ")] == [
        line for line in result.stdout.splitlines() if line.startswith("epoch ")]


def test_with_eval_every_steps_a_line_comes_at_each_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    result = nnrun(*TINY_SINE, "trainer.eval_every_steps=2", "trainer.epochs=3",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    marks = [EPOCH.fullmatch(line) for line in result.stdout.splitlines()
             if line.startswith("epoch ")]
    total = json.loads((run_dir / "metrics.json").read_text())["steps"]
    per_epoch = total // 3
    steps = [int(m[3]) for m in marks]
    assert steps == sorted(set(steps))  # one line a step at most
    evaluated = [s for s, m in zip(steps, marks) if "val/loss" in values(m[5])]
    assert set(range(2, total + 1, 2)) <= set(evaluated)  # every evaluation
    assert {per_epoch, 2 * per_epoch, total} <= set(steps)  # and every epoch's end
    for step, m in zip(steps, marks):  # the epoch under way, or just ended
        assert int(m[1]) == -(-step // per_epoch), (step, m[0])


def test_a_quiet_preset_prints_its_verdict(tmp_path):
    """kfu_pytorch/ch2_linreg_numpy (15 one-step epochs) expects train/loss 0 ± 5e-9."""
    run_dir = tmp_path / "run"
    result = nnrun("experiment=kfu_pytorch/ch2_linreg_numpy", "trainer.progress=false",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (verdict,) = [line for line in result.stdout.splitlines()
                  if line.startswith("  expected train/loss")]
    check = json.loads((run_dir / "metrics.json").read_text())["expected"][0]
    assert check["verdict"] == "reproduced"
    assert verdict.endswith(f"0 ± 5e-09: measured {check['measured']:.4g}, reproduced "
                            f"({check['source']})")
    assert len([line for line in result.stdout.splitlines() if EPOCH.fullmatch(line)]) == 15
    assert verdict in logged(run_dir)
