"""Helpers the tests share: composed configs, the real CLI in a subprocess, preset runs checked
against the checklist, a live TensorBoard server, a model's forward and backward pass."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig


def make_config(*overrides: str) -> DictConfig:
    """The config `nnrun <overrides>` would run, composed through Hydra's Compose API."""
    with initialize_config_module("nnrun.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def nnrun(*args: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `nnrun` command line in a subprocess (one intra-op thread: these jobs are
    tiny, and two threads each on a loaded 2-core machine slow them down many times over)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "nnrun", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# The smallest real jobs, for tests that exercise the machinery rather than the learning.
TINY_SINE = ["data.n_points=200", "data.window=8", "model.hidden_size=8", "trainer.epochs=2",
             "trainer.progress=false"]


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def tensorboard_server(logdir: Path, log: Path, ready: Callable[[str], bool]) -> Iterator[str]:
    """The real `tensorboard` server on a free loopback port, over `logdir`; yields its base URL
    once `ready(base)` is true (it reads event files in the background), and stops it after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"tensorboard exited: {log.read_text()}"
            try:
                if ready(base):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"tensorboard not ready: {log.read_text()}"
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def build_model(sizes: Any, *overrides: str) -> torch.nn.Module:
    """The model `nnrun <overrides>` builds for data of these `nnrun.data.Sizes`, the way the
    runner builds it (each size passed only to a constructor that takes it)."""
    from hydra.utils import instantiate

    from nnrun.run import size_arguments, validate

    cfg = make_config(*overrides)
    validate(cfg)
    return instantiate(cfg.model, **size_arguments(cfg.model, sizes))


def run_preset(tmp_path: Path, preset: str, *overrides: str, name: str | None = None) -> dict:
    """`nnrun experiment=<preset> <overrides>` in-process on the CPU, quietly, in
    `tmp_path/<name>` (default: the preset's name); returns its result."""
    from nnrun.run import run

    cfg = make_config(f"experiment={preset}", "trainer.progress=false", "device=cpu",
                      *overrides)
    return run(cfg, tmp_path / (name or preset.replace("/", "_")))


def scalars(run_dir: Path, tag: str = "train/loss") -> dict[int, float]:
    """A run's TensorBoard scalars under `tag`, by step, read with TensorBoard's own reader."""

    return {step: value for step, value in scalar_events(run_dir, tag)}


def scalar_events(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) event of `tag`, repeats included, in the order written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(event.step, event.value) for event in acc.Scalars(tag)]


def hparams_data(tb_dir: Path) -> dict[str, Any]:
    """The run's HPARAMS plugin data (`HParamsPluginData`) by tag, as TensorBoard's hparams
    plugin reads it from the event files in `tb_dir`."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    mux = EventMultiplexer({"run": str(tb_dir)})
    mux.Reload()
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    assert list(content) == ["run"]
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(data)
            for tag, data in content["run"].items()}


# The targets ../shared/spec/experiments.md gives each preset, as (metric, value, tolerance): a
# preset must carry exactly these in its `expected:` block.
CHECKLIST: dict[str, list[tuple[str, float, float]]] = {
    # the golden presets: their last printed number (every earlier digit has a test of its own)
    "rnn_lab/legendre3": [("train/loss", 8.9436, 5e-5)],
    "kfu_pytorch/ch2_linreg_numpy": [("train/loss", 0.0, 5e-9)],
    "kfu_pytorch/ch2_linreg_autograd": [("train/loss", 0.0, 5e-9)],
    "lecture2/linreg_manual": [("train/loss", 1e-8, 5e-9)],
    "lecture2/linreg_autograd": [("train/loss", 1e-8, 5e-9)],
    "lecture2/linreg_optim": [("train/loss", 1e-8, 5e-9)],
    # the numeric targets
    "kfu_pytorch/ch4_boston_mlp": [("test/r2", 0.83, 0.07)],
    "kfu_pytorch/ch7_mnist_cnn": [("test/acc", 0.962, 0.01)],
    "kfu_pytorch/ch8_cora_gcn": [("test/acc", 0.79, 0.03)],
    "dlfs/ch2_linreg_boston": [("test/mae", 3.5643, 0.05), ("test/rmse", 5.0508, 0.1)],
    "dlfs/ch2_ols_baseline": [("test/mae", 3.5666, 0.001), ("test/rmse", 5.0482, 0.001)],
    "dlfs/ch2_nn_boston": [("test/mae", 2.5289, 0.15), ("test/rmse", 3.6775, 0.3)],
    "dlfs/ch3_linreg": [("test/rmse", 5.01, 0.2), ("test/mae", 3.52, 0.2)],
    "dlfs/ch3_nn": [("test/rmse", 4.03, 0.3), ("test/mae", 2.60, 0.3)],
    "dlfs/ch3_deep": [("test/rmse", 3.82, 0.3), ("test/mae", 2.45, 0.3)],
    "dlfs/ch4_mse": [("test/acc", 0.7258, 0.02)],
    "dlfs/ch4_softmax_ce": [("test/acc", 0.9101, 0.01)],
    "dlfs/ch4_momentum": [("test/acc", 0.9551, 0.01)],
    "dlfs/ch4_linear_decay": [("test/acc", 0.9591, 0.01)],
    "dlfs/ch4_exp_decay": [("test/acc", 0.9606, 0.01)],
    "dlfs/ch4_glorot_linear": [("test/acc", 0.9671, 0.01)],
    "dlfs/ch4_glorot_exp": [("test/acc", 0.9671, 0.01)],
    "dlfs/ch4_dropout": [("test/acc", 0.9695, 0.01)],
    "dlfs/ch4_deep_dropout": [("test/acc", 0.9715, 0.01)],
    "dlfs/ch4_deep_no_dropout": [("test/acc", 0.9652, 0.015)],
    "dlfs/ch5_conv_mnist": [("test/acc", 0.905, 0.015)],
    "dlfs/ch7_mnist_convnet": [("test/acc", 0.97, 0.01)],
    "dlfs/ch7_autoencoder": [("test/mse", 0.069, 0.01)],
    "dlfs/ch7_char_lstm": [("val/loss", 2.33, 0.25)],
}


def assert_reproduced(result: dict, preset: str) -> None:
    """The run of `preset` checked exactly the checklist's targets, and reproduced each."""
    checked = [(c["metric"], c["value"], c["tolerance"]) for c in result["expected"]]
    assert checked == CHECKLIST[preset], f"{preset} does not carry the checklist's targets"
    for check in result["expected"]:
        assert check["verdict"] == "reproduced", check


def check_forward_backward(net: torch.nn.Module, *inputs: torch.Tensor,
                           out_shape: tuple[int, ...]) -> torch.Tensor:
    """One forward pass has `out_shape` and finite values, and the backward pass of its mean
    square reaches every parameter with a finite, non-zero gradient; returns the output."""
    out = net(*inputs)
    assert out.shape == out_shape and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"
    return out


# The lecture's toy regression (seed-002 L121-135): four samples, the 2nd feature much larger.
LECTURE_X = [[1.0, 40.0], [2.0, 30.0], [3.0, 20.0], [4.0, 10.0]]
LECTURE_W = [2.0, 1.0]

ADJ = {"big": "большой", "small": "маленький", "red": "красный", "old": "старый"}
NOUN = {"cat": "кот", "dog": "пёс", "bird": "птенец", "fox": "лис", "bear": "медведь",
        "wolf": "волк"}
VERB = {"sleeps": "спит", "runs": "бежит", "eats": "ест", "sings": "поёт", "jumps": "прыгает"}


def toy_corpus(path: Path, as_list: bool = False) -> Path:
    """120 pairs "The big cat sleeps." -> "Кот большой спит." in the opus_books layout: every
    word maps to one word, the adjective moves after the noun."""
    records = [{"id": str(i), "translation": {
        "en": f"The {a} {n} {v}.", "ru": f"{NOUN[n].capitalize()} {ADJ[a]} {VERB[v]}."}}
        for i, (a, n, v) in enumerate((a, n, v) for a in ADJ for n in NOUN for v in VERB)]
    if as_list:
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    return path
