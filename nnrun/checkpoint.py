"""Checkpoints: one versioned dict of tensors and plain values, written atomically, loaded strictly.

`torch.load(path, weights_only=True)` reads them, so loading never runs code from the file.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrun.errors import CheckpointError

FORMAT = "nnrun-checkpoint"
VERSION = 1
KEYS = frozenset({"format", "version", "model", "optimizer", "schedule", "epoch", "step",
                  "batch_in_epoch", "best", "bad_evals", "rng", "config"})


def atomic_write(path: Path, write: Any) -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync it, then rename it
    over `path`: a kill at any moment leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make a rename in `path` durable
    finally:
        os.close(dir_fd)


def duplicate(src: Path, dst: Path) -> None:
    """Make `dst` the same checkpoint as `src`, atomically, without writing it again: a hard
    link (files are only ever replaced, never changed in place), or a copy where the
    filesystem has no links."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write(dst, lambda f: f.write(src.read_bytes()))
        return
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def save(state: dict[str, Any], path: Path) -> None:
    """Save a checkpoint dict (see `KEYS`) atomically."""
    assert set(state) == KEYS, set(state) ^ KEYS
    atomic_write(path, lambda f: torch.save(state, f))


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write `data` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode() + b"\n"))


def load(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; every problem is a CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"trainer.resume: {path} does not exist; pass a checkpoints/last.pt "
                              "or best.pt of an earlier run, or auto")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = _refused(err)
        if refused:
            raise CheckpointError(
                f"trainer.resume: {path} holds objects other than tensors and plain values and "
                f"was not loaded ({refused}); pass a checkpoints/last.pt or best.pt of an nnrun "
                "run") from None
        raise CheckpointError(f"trainer.resume: {path} is not a checkpoint ({type(err).__name__}); "
                              "pass a checkpoints/last.pt or best.pt of an earlier run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"trainer.resume: {path} is not an nnrun checkpoint; pass a "
                              "checkpoints/last.pt or best.pt of an earlier run")
    if state["version"] != VERSION:
        raise CheckpointError(f"trainer.resume: {path} has format version {state['version']}, this "
                              f"nnrun reads version {VERSION}; resume it with the nnrun that "
                              "wrote it")
    if set(state) != KEYS:
        missing, unknown = sorted(KEYS - set(state)), sorted(set(state) - KEYS)
        raise CheckpointError(f"trainer.resume: {path} is damaged: missing keys {missing}, "
                              f"unknown keys {unknown}")
    return state


def _refused(err: Exception) -> str | None:
    """The global torch's weights-only unpickler refused to load, from its long message; None
    when `err` is not such a refusal (a file that is no pickle at all fails differently)."""
    if not isinstance(err, pickle.UnpicklingError):
        return None
    found = re.search(r"Unsupported global: GLOBAL [^ ]+", str(err))
    return found[0] if found else None


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    """Dotted keys where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [prefix]


def check_model(state: dict[str, Any], path: Path, model: nn.Module,
                model_config: dict[str, Any]) -> None:
    """Refuse a checkpoint written for another model, naming the keys that differ."""
    changed = _diff(state["config"].get("model"), model_config, "model")
    if changed:
        raise CheckpointError(f"trainer.resume: {path} belongs to a different model "
                              f"(mismatched keys: {', '.join(changed)}); resume with the same "
                              "model options or start a new run")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state["model"].items()}
    bad = sorted(set(own) ^ set(saved)) + sorted(k for k in own.keys() & saved.keys()
                                                  if own[k] != saved[k])
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise CheckpointError(f"trainer.resume: {path} does not fit this model (mismatched "
                              f"weights: {shown}); resume with the data and model it was written "
                              "for")


def rng_state(data_order: torch.Tensor) -> dict[str, Any]:
    """Every random state a run consumes: torch (CPU, CUDA), numpy, Python, and the state of the
    generator that draws the data order (`data_order`)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "data": data_order,
    }


def set_rng_state(state: dict[str, Any], data_rng: torch.Generator) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    data_rng.set_state(state["data"])
