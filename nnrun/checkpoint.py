"""Checkpoints: one versioned dict of tensors and plain values, written atomically, loaded strictly.

`torch.load(path, weights_only=True)` reads them, so loading never runs code from the file. Each
holds a sha256 of its own contents (`sha256`), checked on load with the type of every field, so
a file damaged on disk or in transfer is refused rather than resumed from.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
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
VERSION = 4  # 2: sha256 and metrics; 3: sizes and vocabularies; 4: processes and rng_ranks
KEYS = frozenset({"format", "version", "model", "optimizer", "schedule", "epoch", "step",
                  "batch_in_epoch", "best", "bad_evals", "rng", "config", "metrics", "sha256",
                  "sizes", "vocabularies", "processes", "rng_ranks"})
# What a run needs besides its weights to use the model on its own (`nnrun.load`,
# `nnrun-eval`): the data-derived sizes its constructor took (`nnrun.data.Sizes` as a dict)
# and, for token data, the token strings by id. A version 2 checkpoint lacks them and loads
# with None; everything else reads it as before.
ADDED_IN_3 = frozenset({"sizes", "vocabularies"})
# A data-parallel run (`nnrun.parallel`) is saved by rank 0: `processes` is how many ranks
# trained it, `rng` rank 0's random state and `rng_ranks` those of ranks 1 and up, so that each
# rank continues its own streams. An earlier checkpoint is one process's, with no others.
ADDED_IN_4 = frozenset({"processes", "rng_ranks"})
EARLIER = {2: ADDED_IN_3 | ADDED_IN_4, 3: ADDED_IN_4, VERSION: frozenset()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Any) -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync it, then rename it
    over `path`: a kill at any moment leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode any tool would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # name the file in the message
            raise OSError(err.errno, err.strerror, str(path)) from None
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


def digest(state: dict[str, Any]) -> str:
    """sha256 of a checkpoint's contents, its own `sha256` field aside: every tensor's dtype,
    shape and bytes and every plain value, in a fixed order."""
    h = hashlib.sha256()

    def walk(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(node.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
        elif isinstance(node, dict):
            h.update(f"D{len(node)}".encode())
            for key in sorted(node, key=lambda k: (type(k).__name__, str(k))):
                walk(key)
                walk(node[key])
        elif isinstance(node, list | tuple):
            h.update(f"L{len(node)}".encode())
            for item in node:
                walk(item)
        else:
            h.update(f"{type(node).__name__}:{node!r};".encode())

    walk({k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


def non_finite(state: dict[str, Any]) -> list[str]:
    """The names of the model's and optimizer's floating tensors that hold a NaN or an inf."""
    named = [(f"model.{k}", v) for k, v in state["model"].items()]
    for index, slots in state["optimizer"].get("state", {}).items():
        named += [(f"optimizer.state.{index}.{k}", v) for k, v in slots.items()]
    floats = [(n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not floats:
        return []
    finite = torch.stack([t.isfinite().all() for _, t in floats]).tolist()  # one sync
    return [name for (name, _), ok in zip(floats, finite, strict=True) if not ok]


def save(state: dict[str, Any], path: Path) -> None:
    """Save a checkpoint dict (see `KEYS`; `sha256` is added here) atomically."""
    state = {**state, "format": FORMAT, "version": VERSION}
    state["sha256"] = digest(state)
    assert set(state) == KEYS, set(state) ^ KEYS
    # serialised in memory first: torch.save turns a failed write (a full disk) into a bare
    # RuntimeError, where a plain write raises an OSError that says what went wrong
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def strict_json(data: Any) -> tuple[Any, dict[str, str]]:
    """`data` with every NaN and infinity replaced by None, and where they were: JSON has no
    such numbers, and strict readers reject the bare `NaN` Python would write."""
    replaced: dict[str, str] = {}

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, float) and not math.isfinite(node):
            replaced[where] = str(node)
            return None
        if isinstance(node, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(node)]
        return node

    return walk(data, ""), replaced


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write `data` as indented, strict JSON, atomically; a non-finite number is written as null,
    and `non_finite` names it with its value ("nan", "inf", "-inf")."""
    clean, replaced = strict_json(data)
    if replaced:
        clean["non_finite"] = replaced
    text = json.dumps(clean, indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode() + b"\n"))


def load(path: Path, key: str = "trainer.resume") -> dict[str, Any]:
    """Read and check a checkpoint; every problem is a CheckpointError naming `key`, the file and
    what is wrong."""
    fix = "pass a checkpoints/last.pt or best.pt of an nnrun run"
    if path.is_dir():
        raise CheckpointError(f"{key}: {path} is a directory; {fix}")
    if not path.is_file():
        raise CheckpointError(f"{key}: {path} does not exist; {fix}"
                              + (", or auto" if key == "trainer.resume" else ""))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = _refused(err)
        if refused:
            raise CheckpointError(
                f"{key}: {path} holds a pickled object that is not allowed and was not loaded "
                f"({refused}); {fix}") from None
        raise CheckpointError(f"{key}: {path} is not a checkpoint or is cut short "
                              f"({type(err).__name__}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{key}: {path} is not an nnrun checkpoint; {fix}")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in EARLIER:
        raise CheckpointError(f"{key}: {path} has format version {state.get('version')!r}, this "
                              f"nnrun reads versions 2 to {VERSION}; use it with the nnrun that "
                              "wrote it")
    expected = KEYS - EARLIER[state["version"]]
    if set(state) != expected:
        missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(f"{key}: {path} is damaged: missing keys {missing}, "
                              f"unknown keys {unknown}; {fix}")
    wrong = _wrong_fields(state)
    if wrong:
        raise CheckpointError(f"{key}: {path} is damaged: {'; '.join(wrong)}; {fix}")
    found = digest(state)
    if found != state["sha256"]:
        raise CheckpointError(f"{key}: {path} is corrupted: its contents hash to sha256 "
                              f"{found[:12]}..., not the {state['sha256'][:12]}... stored when it "
                              f"was written; use another checkpoint (best.pt, or an earlier "
                              "copy)")
    return {name: None for name in ADDED_IN_3} | {"processes": 1, "rng_ranks": []} | state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


RNG_FIELDS = {"torch": torch.Tensor, "cuda": list, "numpy": dict, "python": dict,
              "data": torch.Tensor}
NUMPY_RNG = {"keys": torch.Tensor, "pos": int, "has_gauss": int, "cached": float}
PYTHON_RNG = {"version": int, "internal": list, "gauss": (float, type(None))}


def _wrong_fields(state: dict[str, Any]) -> list[str]:
    """What in a checkpoint has the wrong type: one phrase per field."""
    wrong = []
    for name in ("epoch", "step", "batch_in_epoch", "bad_evals"):
        if not _count(state[name]):
            wrong.append(f"{name} is {state[name]!r}, not a whole number >= 0")
    best = state["best"]
    if best is not None and (isinstance(best, bool) or not isinstance(best, int | float)):
        wrong.append(f"best is {type(best).__name__}, not a number or None")
    if not _tensor_dict(state["model"]):
        wrong.append("model is not a dict of named tensors")
    optimizer = state["optimizer"]
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        wrong.append("optimizer is not an optimizer state (state and param_groups)")
    for name in ("schedule", "config", "metrics"):
        if not isinstance(state[name], dict):
            wrong.append(f"{name} is {type(state[name]).__name__}, not a dict")
    if not isinstance(state["sha256"], str):
        wrong.append("sha256 is not a string")
    if state.get("sizes") is not None and not isinstance(state["sizes"], dict):
        wrong.append(f"sizes is {type(state['sizes']).__name__}, not a dict")
    vocabularies = state.get("vocabularies")
    if vocabularies is not None and not (isinstance(vocabularies, dict) and all(
            isinstance(v, list) and all(isinstance(t, str) for t in v)
            for v in vocabularies.values())):
        wrong.append("vocabularies is not a dict of lists of token strings")
    processes, others = state.get("processes", 1), state.get("rng_ranks", [])
    if not _count(processes) or processes < 1:
        wrong.append(f"processes is {processes!r}, not a whole number >= 1")
    elif not isinstance(others, list) or len(others) != processes - 1:
        wrong.append(f"rng_ranks does not hold the random state of {processes - 1} more rank(s)")
    rng = state["rng"]
    shapes = [("rng", rng, RNG_FIELDS)]
    if isinstance(rng, dict):
        shapes += [("rng.numpy", rng.get("numpy"), NUMPY_RNG),
                   ("rng.python", rng.get("python"), PYTHON_RNG)]
    for where, node, fields in shapes:
        if not isinstance(node, dict) or set(node) != set(fields):
            wrong.append(f"{where} does not hold {', '.join(fields)}")
            break
        bad = [k for k, kind in fields.items() if not isinstance(node[k], kind)]
        if bad:
            wrong.append(f"{where}.{bad[0]} is {type(node[bad[0]]).__name__}")
            break
    return wrong


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
        return [d for k in keys
                for d in _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if a == b else [prefix]


# What a resume may change: keys that extend the run or watch it, never what it computes.
# Any other difference is refused (README, "Resume").
MAY_CHANGE = ("trainer.epochs", "trainer.max_steps", "trainer.patience", "trainer.min_delta",
              "trainer.progress", "trainer.log_every", "trainer.eval_every",
              "trainer.eval_every_steps", "trainer.save_every", "trainer.resume",
              "trainer.init_from", "trainer.collective_timeout_s", "data.root",
              "data.download", "expected", "objective")


def may_change(key: str) -> bool:
    """Whether a resume may change `key` (one of MAY_CHANGE, or a key inside one)."""
    return any(key == m or key.startswith(f"{m}.") for m in MAY_CHANGE)


def changed_keys(saved: dict[str, Any], config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The differences between a checkpoint's config and this run's: those a resume may make
    (key -> [old, new]) and those it may not (keys)."""
    allowed, refused = {}, []
    for key in _diff(saved, config, ""):
        if may_change(key):
            allowed[key] = [_select(saved, key), _select(config, key)]
        else:
            refused.append(key)
    return allowed, refused


def _select(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_weights(state: dict[str, Any], path: Path, model: nn.Module, key: str) -> None:
    """Refuse a checkpoint whose weights do not fit `model`, naming the weights."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state["model"].items()}
    bad = sorted(set(own) ^ set(saved)) + sorted(k for k in own.keys() & saved.keys()
                                                  if own[k] != saved[k])
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise CheckpointError(f"{key}: {path} does not fit this model (mismatched "
                              f"weights: {shown}); use the model and data it was written for")


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
