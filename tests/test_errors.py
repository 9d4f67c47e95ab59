"""Bad input through the real command line: each is refused with one line on stderr that names
the key or file and says what to do, exits non-zero, and leaves earlier runs untouched."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import socket
import struct
import time
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_SINE, nnrun


def with_overrides(*overrides: str) -> list[str]:
    """TINY_SINE with `overrides` replacing the entries for the same keys."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in TINY_SINE if o.split("=", 1)[0] not in keys] + list(overrides)


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file's bytes and every file's and folder's mtime under `root`."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None,
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Completed runs made before the bad commands: `lstm` (TINY_SINE) and `gru`."""
    root = tmp_path_factory.mktemp("earlier")
    runs = {"lstm": root / "runs" / "lstm", "gru": root / "runs" / "gru"}
    for name, extra in (("lstm", []), ("gru", ["model=gru", "trainer.epochs=1"])):
        result = nnrun(*with_overrides(*extra), f"hydra.run.dir={runs[name]}", cwd=root)
        assert result.returncode == 0, result.stderr
        assert (runs[name] / "checkpoints" / "last.pt").is_file()
    return {"root": root / "runs", **runs}


@pytest.fixture
def unchanged(earlier: dict[str, Path]):
    """Fail the test if anything under the earlier runs changed while it ran."""
    before = snapshot(earlier["root"])
    yield earlier
    after = snapshot(earlier["root"])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the bad command changed an earlier run: {changed}"


def refused(result, *words: str) -> str:
    """Assert the command failed with exactly one line of error text holding every word."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.startswith("nnrun: error: "), message
    assert "Traceback" not in message and "\x1b" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def offline() -> bool:
    try:
        socket.create_connection(("github.com", 443), timeout=2).close()
    except OSError:
        return True
    return False


# ---- config values --------------------------------------------------------------------------

BAD_VALUES = {  # override: what the one line must hold (the key, then the fix)
    "model=nope": ["model/nope", "choose one of", "lstm", "gru"],
    "experiment=nope/x": ["experiment/nope/x", "choose one of"],
    "optimizer.lr=0": ["optimizer.lr=0", "must be > 0", "e.g. optimizer.lr="],
    "optimizer.lr=-1": ["optimizer.lr=-1", "must be > 0", "e.g. optimizer.lr="],
    "data.batch_size=0": ["data.batch_size=0", "must be > 0", "e.g. data.batch_size="],
    "trainer.epochs=-1": ["trainer.epochs=-1", "must be >= 0", "e.g. trainer.epochs="],
    "optimizer.lr=abc": ["optimizer.lr='abc'", "not a number", "pass e.g. optimizer.lr="],
    "trainer.epochs=ten": ["trainer.epochs='ten'", "not a number", "pass e.g. trainer.epochs="],
    "device=cuda": ["device=cuda", "no CUDA device", "use device=cpu"],
    "device.name=cuda:99": ["device.name=cuda:99", "CUDA device"],
    "device.name=gpu0": ["device.name=gpu0", "is not a device", "use auto, cpu, cuda"],
    "seed=-1": ["seed=-1", "whole number from 0", "e.g. seed="],
    "seed=1.5": ["seed=1.5", "whole number from 0", "e.g. seed="],
    "data.batch_size=1.5": ["data.batch_size=1.5", "must be a whole number",
                            "e.g. data.batch_size="],
    "trainer.epochs=1.5": ["trainer.epochs=1.5", "must be a whole number", "e.g. trainer.epochs="],
    "data.window=0": ["data.window=0", "must be > 0", "e.g. data.window="],
    "data.period=0": ["data.period=0", "must be > 0", "e.g. data.period="],
    "schedule=step schedule.step_size=0": ["schedule.step_size=0", "must be > 0",
                                           "e.g. schedule.step_size="],
    "schedule=cosine schedule.eta_min=-1": ["schedule.eta_min=-1", "must be >= 0",
                                            "e.g. schedule.eta_min="],
    "trainer.clip_grad_norm=-1": ["trainer.clip_grad_norm=-1", "must be > 0",
                                  "e.g. trainer.clip_grad_norm="],
    "trainer.max_steps=0": ["trainer.max_steps=0", "must be positive"],
    "trainer.monitor=val/nope": ["trainer.monitor=val/nope", "use one of val/loss"],
    "task=classification": ["task=classification needs class labels", "use task=regression"],
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_bad_value(override, unchanged, tmp_path):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides(*override.split()), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    message = refused(result, *BAD_VALUES[override])
    assert result.returncode == 2
    if override.startswith("experiment="):  # nested options, which Hydra itself does not list
        group = files("nnrun.conf") / "experiment"
        options = [str(p.relative_to(group).with_suffix("")) for p in Path(group).glob("**/*.yaml")]
        assert options and all(o in message for o in options), message
    assert not run_dir.exists(), "a refused start left its run directory behind"


# ---- data that is not there, offline ----------------------------------------------------------

@pytest.mark.skipif(not offline(), reason="checks the offline message; this machine is online")
@pytest.mark.parametrize("name", ["mnist", "cora"])
def test_missing_dataset_offline(name, unchanged, tmp_path):
    model, raw = {"mnist": ("cnn", "MNIST/raw"), "cora": ("gcn", "Cora/raw")}[name]
    root = tmp_path / "empty"
    root.mkdir()
    start = time.perf_counter()
    result = nnrun(f"data={name}", f"model={model}", f"data.root={root}", "trainer.progress=false",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    elapsed = time.perf_counter() - start
    refused(result, f"data.root={root}", str(root / raw), "put the files in", "online",
            "data.download=true")
    assert elapsed < 30, f"the failed download took {elapsed:.0f} s"


# ---- checkpoints that must not resume ---------------------------------------------------------

class RunsCode:
    """Unpickling this calls `Path(marker).touch()`: code from the file, if it were trusted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path(self.marker).touch, ())


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """An nnrun-looking checkpoint whose model runs code if loaded with weights_only=False."""
    torch.save({"format": "nnrun-checkpoint", "version": 1, "model": RunsCode(marker)}, path)
    return path


def flip_a_byte_inside_a_tensor(path: Path) -> None:
    """Change one byte in the middle of the largest tensor stored in a checkpoint's zip."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                   info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("field,value,words", [
    ("rng", {}, ["is damaged", "rng does not hold"]),
    ("optimizer", {}, ["is damaged", "optimizer is not an optimizer state"]),
    ("epoch", "3", ["is damaged", "epoch is '3', not a whole number"]),
])
def test_a_checkpoint_with_a_wrong_field_is_refused_in_one_line(field, value, words, unchanged,
                                                                  tmp_path):
    state = torch.load(unchanged["lstm"] / "checkpoints" / "last.pt", weights_only=True)
    state[field] = value
    path = tmp_path / "last.pt"
    torch.save(state, path)
    run_dir = tmp_path / "run"
    result = nnrun(*TINY_SINE, f"trainer.resume={path}", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path)
    refused(result, "trainer.resume", str(path), *words)
    assert not run_dir.exists()


def test_a_bit_flipped_checkpoint_is_refused_by_its_hash(unchanged, tmp_path):
    path = tmp_path / "last.pt"
    shutil.copy(unchanged["lstm"] / "checkpoints" / "last.pt", path)
    flip_a_byte_inside_a_tensor(path)
    torch.load(path, weights_only=True)  # still a well-formed file: only its numbers changed
    run_dir = tmp_path / "run"
    result = nnrun(*TINY_SINE, f"trainer.resume={path}", "trainer.epochs=3",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    refused(result, "trainer.resume", str(path), "is corrupted", "sha256")
    assert not run_dir.exists()


@pytest.mark.parametrize("case", ["missing", "text", "list", "hidden_size", "model", "code",
                                  "directory"])
def test_bad_resume(case, unchanged, tmp_path):
    earlier = unchanged
    overrides: list[str] = []
    marker = tmp_path / "code-ran"
    fix = "pass a checkpoints/last.pt"
    if case == "missing":
        path, words = tmp_path / "nope" / "last.pt", ["does not exist", fix]
    elif case == "text":
        path, words = tmp_path / "notes.pt", ["is not a checkpoint", fix]
        path.write_text("not a checkpoint\n")
    elif case == "directory":
        path, words = tmp_path / "folder", ["is a directory", fix]
        path.mkdir()
    elif case == "list":
        path, words = tmp_path / "list.pt", ["not an nnrun checkpoint", fix]
        torch.save([1, 2, 3], path)
    elif case == "hidden_size":
        path = earlier["lstm"] / "checkpoints" / "last.pt"
        overrides, words = ["model.hidden_size=4"], ["other values of model.hidden_size",
                                                     f"trainer.init_from={path}"]
    elif case == "model":
        path = earlier["gru"] / "checkpoints" / "last.pt"
        overrides, words = ["model=lstm"], ["other values of model._target_",
                                            f"trainer.init_from={path}"]
    else:
        # the file really runs code when torch.load trusts it ...
        control = tmp_path / "control-ran"
        torch.load(crafted_checkpoint(tmp_path / "control.pt", control), weights_only=False)
        assert control.exists()
        # ... and nnrun does not trust it
        path = crafted_checkpoint(tmp_path / "crafted.pt", marker)
        words = ["holds a pickled object that is not allowed", "Unsupported global", fix]
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides(*overrides), f"trainer.resume={path}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    refused(result, "trainer.resume", str(path), *words)
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert not run_dir.exists(), "a refused start left its run directory behind"


# ---- a run that diverges ----------------------------------------------------------------------

def strict_json(path: Path) -> dict:
    """metrics.json read as strict JSON: a bare NaN or Infinity fails."""
    def reject(token: str) -> None:
        raise AssertionError(f"{path} holds a bare {token}")
    return json.loads(path.read_text(), parse_constant=reject)


def all_finite(path: Path) -> bool:
    state = torch.load(path, weights_only=True)
    tensors = list(state["model"].values()) + [
        t for slots in state["optimizer"]["state"].values() for t in slots.values()
        if isinstance(t, torch.Tensor)]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(unchanged, tmp_path):
    # a sane first epoch (lr 0.05), then the rate grows 1e10-fold and the loss overflows
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides("trainer.epochs=3", "optimizer=sgd", "optimizer.lr=0.05",
                                   "schedule=exponential", "schedule.gamma=1e10"),
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    message = refused(result, "NaN or infinite", "kept the last good checkpoint",
                      str(run_dir / "checkpoints" / "last.pt"), "lower optimizer.lr")
    assert result.returncode == 1
    step = int(re.search(r"at step (\d+);", message)[1])
    metrics = strict_json(run_dir / "metrics.json")
    assert metrics["status"] == "failed"
    assert f"step {step}" in metrics["error"]
    assert metrics["epochs"] >= 1  # diverged after a good epoch, so a good last.pt exists
    # it stopped at that step: the step before it is the last one taken
    assert metrics["steps"] == step - 1 or "val/loss" in message
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["step"] < step
        assert all_finite(run_dir / "checkpoints" / name)
        assert math.isfinite(state["best"])


# the blow-up: a finite loss whose update leaves the weights non-finite
BLOW_UP = ["optimizer=sgd", "optimizer.lr=3e38", "data.batch_size=1000", "task.reduction=sum"]


@pytest.mark.parametrize("epochs", [1, 3])
def test_a_blow_up_fails_even_at_the_final_step_and_no_checkpoint_is_non_finite(epochs, tmp_path):
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides(*BLOW_UP, f"trainer.epochs={epochs}"),
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    refused(result, "became NaN or infinite at step")
    assert result.returncode == 1
    metrics = strict_json(run_dir / "metrics.json")
    assert metrics["status"] == "failed"
    for name in ("last.pt", "best.pt"):
        if (run_dir / "checkpoints" / name).exists():
            assert all_finite(run_dir / "checkpoints" / name), name


def test_metrics_json_writes_null_for_a_non_finite_value_and_says_why(tmp_path):
    from nnrun.checkpoint import write_json

    write_json({"val/loss": float("nan"), "val/acc": 0.5, "best": float("inf")},
               tmp_path / "m.json")
    metrics = strict_json(tmp_path / "m.json")
    assert metrics["val/loss"] is None and metrics["best"] is None and metrics["val/acc"] == 0.5
    assert metrics["non_finite"] == {"val/loss": "nan", "best": "inf"}


# ---- an earlier run's directory ----------------------------------------------------------------

def test_fresh_run_in_an_earlier_runs_directory_is_refused(unchanged, tmp_path):
    run_dir = unchanged["lstm"]
    result = nnrun(*TINY_SINE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    refused(result, f"hydra.run.dir={run_dir}", "already holds a run", "trainer.resume=auto",
            "choose another directory")


def test_snapshot_sees_a_change(tmp_path):
    """The `unchanged` check itself: a file rewritten with the same bytes changes its snapshot."""
    last = tmp_path / "checkpoints" / "last.pt"
    last.parent.mkdir()
    last.write_bytes(b"weights")
    before = snapshot(tmp_path)
    os.utime(last, ns=(last.stat().st_atime_ns, last.stat().st_mtime_ns + 1))
    assert snapshot(tmp_path) != before
