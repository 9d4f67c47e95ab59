"""A user's own model, dataset and task, kept in their own folder beside a `conf/` of their own,
run through the installed `nnrun` console script with `--config-dir conf`: nnrun's sources are
not touched and nothing is put on PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_errors import refused, snapshot

# pytorch/examples' MNIST model (mnist/main.py), verbatim: a constructor without arguments and
# log-probabilities out
MYNET = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


class Small(nn.Module):
    """A model that asks for the data's sizes by name."""

    def __init__(self, in_shape, out_features, hidden=16):
        super().__init__()
        self.got = {"in_shape": in_shape, "out_features": out_features}
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0] * in_shape[1] * in_shape[2],
                                                         hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_features))

    def forward(self, x):
        return self.net(x)
'''

# a dataset of the user's own: the first MNIST images, read by torchvision
MYDATA = '''\
from torchvision.datasets import MNIST

from nnrun.data import Data, Sizes
from nnrun.data.batches import TensorBatches


def first_images(root, n_train=128, n_val=64, batch_size=32):
    images = MNIST(root, train=True, download=False)
    x = images.data[:n_train + n_val].unsqueeze(1).float().div(255)
    y = images.targets[:n_train + n_val]
    return Data(train=TensorBatches(x[:n_train], y[:n_train], batch_size=batch_size),
                val=TensorBatches(x[n_train:], y[n_train:], batch_size=batch_size, shuffle=False),
                sizes=Sizes(in_shape=(1, 28, 28), out_features=10))
'''

# a task of the user's own: the negative log-likelihood of log-probabilities, and accuracy
MYTASK = '''\
import torch.nn.functional as F

from nnrun.tasks import Task


class LogProbClassification(Task):
    metric_names = ("loss", "acc")

    def loss(self, model, batch):
        x, y = batch
        return F.nll_loss(model(x), y)

    def eval_stats(self, model, batch):
        x, y = batch
        out = model(x)
        return {"n": len(y), "loss": F.nll_loss(out, y, reduction="sum"),
                "correct": (out.argmax(1) == y).sum()}

    def metrics(self, stats):
        n = stats["n"]
        return {"loss": float(stats["loss"]) / n, "acc": float(stats["correct"]) / n}
'''

CONF = {
    "model/mynet.yaml": "_target_: mynet.Net\n",
    "model/small.yaml": "_target_: mynet.Small\nhidden: 8\n",
    "model/missing.yaml": "_target_: nosuch.Net\n",
    "data/mydata.yaml": ("defaults:\n  - /task@_global_.task: mytask\n"
                         "_target_: mydata.first_images\nroot: ${oc.env:NNRUN_DATA_ROOT}\n"
                         "n_train: 128\nn_val: 64\nbatch_size: 32\n"),
    "task/mytask.yaml": "_target_: mytask.LogProbClassification\n",
}

QUICK = ["trainer.max_steps=2", "trainer.progress=false", "device=cpu"]


@pytest.fixture
def project(tmp_path: Path, data_root: Path) -> Path:
    """The user's folder: mynet.py, mydata.py, mytask.py and conf/."""
    folder = tmp_path / "proj"
    (folder / "conf").mkdir(parents=True)
    for name, text in (("mynet.py", MYNET), ("mydata.py", MYDATA), ("mytask.py", MYTASK)):
        (folder / name).write_text(text)
    for name, text in CONF.items():
        (folder / "conf" / name).parent.mkdir(exist_ok=True)
        (folder / "conf" / name).write_text(text)
    return folder


def console_script(*args: str, cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    """The installed `nnrun` console script (not `python -m nnrun`, which would put the current
    folder on sys.path by itself), with no PYTHONPATH."""
    script = Path(sys.executable).parent / "nnrun"
    assert script.is_file(), f"no console script beside {sys.executable}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NNRUN_DATA_ROOT": str(data_root)}
    for name in ("PYTHONPATH", "HYDRA_FULL_ERROR"):
        env.pop(name, None)
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def the_run(project: Path) -> Path:
    (run_dir,) = (project / "outputs").glob("*/*")
    return run_dir


def test_pytorch_examples_net_trains_on_mnist(project, data_root):
    """The issue's command: `nnrun --config-dir conf model=mynet data=mnist` from the folder
    that holds mynet.py. Net() takes no sizes and gives log-probabilities, which nnrun's
    classification task takes as they are (cross-entropy of log-probabilities is their NLL)."""
    done = console_script("--config-dir", "conf", "model=mynet", "data=mnist",
                          "data.val_size=100", "data.batch_size=16", *QUICK,
                          cwd=project, data_root=data_root)
    assert done.returncode == 0, done.stderr
    run_dir = the_run(project)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 2
    assert 0 <= metrics["val/acc"] <= 1 and 0 <= metrics["test/acc"] <= 1
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["model"] == {"_target_": "mynet.Net"}
    assert "conv1.weight" in state["model"]


def test_own_data_and_task_with_a_model_that_takes_sizes(project, data_root):
    """A dataset and a task of the user's own, and a model whose constructor names the sizes it
    needs: it gets `in_shape` and `out_features` from the dataset's `Sizes`, nothing else."""
    done = console_script("--config-dir", "conf", "model=small", "data=mydata", *QUICK,
                          cwd=project, data_root=data_root)
    assert done.returncode == 0, done.stderr
    run_dir = the_run(project)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and set(metrics) >= {"val/loss", "val/acc"}
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["task"]["_target_"] == "mytask.LogProbClassification"
    assert state["model"]["net.1.weight"].shape == (8, 784)  # hidden: 8 from its YAML
    assert state["model"]["net.3.weight"].shape == (10, 8)   # out_features from the data


def test_the_pytorch_net_with_own_data_and_task(project, data_root):
    done = console_script("--config-dir", "conf", "model=mynet", "data=mydata", *QUICK,
                          cwd=project, data_root=data_root)
    assert done.returncode == 0, done.stderr
    assert json.loads((the_run(project) / "metrics.json").read_text())["status"] == "completed"


def test_a_target_that_cannot_be_imported_names_the_folders_searched(project, data_root):
    before = snapshot(project)
    done = console_script("--config-dir", "conf", "model=missing", "data=mydata", *QUICK,
                          cwd=project, data_root=data_root)
    assert done.returncode == 2
    refused(done, "model._target_='nosuch.Net'", "no module 'nosuch'", str(project),
            "PYTHONPATH")
    assert snapshot(project) == before


def test_own_code_is_looked_for_in_the_folder_nnrun_runs_in(project, data_root):
    """From another folder, mynet.py beside the configs is not found: the one line says where
    it was looked for."""
    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir()
    done = console_script("--config-dir", str(project / "conf"), "model=mynet", "data=mnist",
                          *QUICK, cwd=elsewhere, data_root=data_root)
    assert done.returncode == 2
    refused(done, "model._target_='mynet.Net'", str(elsewhere), "mynet.py")
    assert list(elsewhere.iterdir()) == []


def test_a_missing_config_dir_is_refused(project, data_root):
    before = snapshot(project)
    done = console_script("--config-dir", "nope", "model=mynet", *QUICK, cwd=project,
                          data_root=data_root)
    assert done.returncode == 2
    refused(done, str(project / "nope"), "not found")
    assert snapshot(project) == before
