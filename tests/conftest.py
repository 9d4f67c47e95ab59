"""Shared fixtures: composed configs, a writable data root, and the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig


def make_config(*overrides: str) -> DictConfig:
    """The config `nnrun <overrides>` would run, composed through Hydra's Compose API."""
    with initialize_config_module("nnrun.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root built from $NNRUN_DATA_ROOT: MNIST linked, Cora copied (PyG writes
    Cora/processed beside the raw files), every other folder (timeseries, boston, text: only
    read) linked. Tests that need real data skip without the variable."""
    source = os.environ.get("NNRUN_DATA_ROOT")
    if not source or not (Path(source) / "MNIST" / "raw").is_dir():
        pytest.skip("set NNRUN_DATA_ROOT to a folder laid out like ../shared/data")
    root = tmp_path_factory.mktemp("data")
    (root / "MNIST").mkdir()
    (root / "MNIST" / "raw").symlink_to(Path(source, "MNIST", "raw").resolve())
    shutil.copytree(Path(source, "Cora", "raw"), root / "Cora" / "raw")
    for folder in Path(source).iterdir():
        if folder.is_dir() and folder.name not in ("MNIST", "Cora"):
            (root / folder.name).symlink_to(folder.resolve())
    return root


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
