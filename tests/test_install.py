"""conf/ and experiments/ reach Hydra from an installed wheel, from any working directory."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_SINE, nnrun

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """nnrun built as a wheel and installed into a folder of its own (its dependencies come
    from this environment); the environment that runs it from there."""
    tmp = tmp_path_factory.mktemp("wheel")
    # from a copy of the sources: setuptools builds in the tree's build/, whose leftovers from an
    # earlier build (a module since moved) would otherwise go into the wheel
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "outputs", "multirun", "*.egg-info", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("nnrun-*.whl"))
    target = tmp / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_installed(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnrun", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_carries_configs_and_experiments(installed, tmp_path):
    where = subprocess.run([sys.executable, "-c", "import nnrun; print(nnrun.__file__)"],
                           cwd=tmp_path, env=installed, capture_output=True, text=True)
    assert where.stdout.strip().startswith(installed["PYTHONPATH"])  # not the checkout
    shown = run_installed(installed, tmp_path, "--cfg", "job", "experiment=examples/mnist_cnn")
    assert shown.returncode == 0, shown.stderr
    assert "nnrun.models.conv.CNN" in shown.stdout and "nnrun.data.images.mnist" in shown.stdout


def test_the_wheel_trains_from_a_temporary_directory(installed, tmp_path):
    done = run_installed(installed, tmp_path, *TINY_SINE)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "metrics.json").exists()


def test_the_wheel_carries_the_sweep_plugins(installed, tmp_path):
    """The launcher, the sweeper and their configs come from the wheel: a parallel sweep runs,
    and the SLURM and Optuna presets compose."""
    where = subprocess.run(
        [sys.executable, "-c", "import hydra_plugins.nnrun_plugins.process_launcher as m; "
         "print(m.__file__)"], cwd=tmp_path, env=installed, capture_output=True, text=True)
    assert where.stdout.strip().startswith(installed["PYTHONPATH"]), where
    shown = run_installed(installed, tmp_path, "--cfg", "hydra", "hydra/launcher=slurm",
                          "hydra/sweeper=optuna")
    assert shown.returncode == 0, shown.stderr
    assert "submitit_launcher.SlurmLauncher" in shown.stdout
    assert "nnrun_plugins.optuna_sweeper.OptunaSweeper" in shown.stdout
    swept = run_installed(installed, tmp_path, "-m", "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2", *TINY_SINE, "seed=1,2")
    assert swept.returncode == 0, swept.stderr
    assert "2 at a time in their own processes" in swept.stdout
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    with (sweep_dir / "summary.csv").open(newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["completed", "completed"]


@pytest.mark.parametrize("option", [["data=cora", "model=gcn"], ["data=cora", "model=mlp"]])
def test_without_the_graph_extra_a_graph_option_says_what_to_install(option, tmp_path):
    """PyTorch Geometric is the `graph` extra: where it is missing (here hidden behind a package
    of that name that cannot be imported), a graph option is one line naming the extra."""
    hidden = tmp_path / "hide"
    (hidden / "torch_geometric").mkdir(parents=True)
    (hidden / "torch_geometric" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'torch_geometric'\")\n")
    work = tmp_path / "work"
    work.mkdir()
    done = nnrun(*option, "trainer.progress=false", cwd=work,
                 env={"PYTHONPATH": str(hidden)})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["nnrun: error: data=cora needs PyTorch Geometric, which the default install "
                     "leaves out; install nnrun's graph extra: pip install 'nnrun[graph]' (in a "
                     "checkout: pip install -e '.[graph]')"], lines
    assert list(work.iterdir()) == []
