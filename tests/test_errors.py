"""Bad input through the real command line: each is refused with one line on stderr that names
the key or file and says what to do, exits non-zero, and leaves earlier runs untouched."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import socket
import time
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
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_bad_value(override, unchanged, tmp_path):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides(override), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    message = refused(result, *BAD_VALUES[override])
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


@pytest.mark.parametrize("case", ["missing", "text", "list", "hidden_size", "model", "code"])
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

def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(unchanged, tmp_path):
    # a sane first epoch (lr 0.05), then the rate grows 1e10-fold and the loss overflows
    run_dir = tmp_path / "run"
    result = nnrun(*with_overrides("trainer.epochs=3", "optimizer=sgd", "optimizer.lr=0.05",
                                   "schedule=exponential", "schedule.gamma=1e10"),
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    message = refused(result, "NaN or infinite", "kept the last good checkpoint",
                      str(run_dir / "checkpoints" / "last.pt"), "lower optimizer.lr")
    step = int(re.search(r"at step (\d+);", message)[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert f"step {step}" in metrics["error"]
    assert metrics["epochs"] >= 1  # diverged after a good epoch, so a good last.pt exists
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["step"] < step
        assert all(torch.isfinite(t).all() for t in state["model"].values())
        assert math.isfinite(state["best"])


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
