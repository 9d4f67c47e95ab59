"""nnrun from Python: `nnrun.train` and `nnrun.load`, each exercised in a fresh interpreter that
starts from `import nnrun`, as a script or a notebook does. Its `sys.argv` is a Jupyter
kernel's (`-f kernel.json`), which neither function may read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import TINY_SINE
from tests.test_errors import snapshot

ROOT = Path(__file__).parents[1]

PRELUDE = f"""\
import json, sys
sys.argv = ["ipykernel_launcher.py", "-f", "/nonexistent/kernel-1.json"]  # a Jupyter kernel's
import nnrun
from nnrun.errors import NnrunError
TINY = {TINY_SINE!r}
out = {{}}

def refusal(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except NnrunError as err:
        return type(err).__name__, str(err)
    return None
"""


def python(script: str, cwd: Path) -> dict:
    """Run PRELUDE + `script` in a new interpreter in `cwd`; the `out` dict it fills, printed
    as JSON on its last line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    code = PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_line(refused: list | None, kind: str, *words: str) -> None:
    assert refused is not None, "not refused"
    name, message = refused
    assert name == kind and "\n" not in message, (name, message)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_import_nnrun_imports_no_torch(tmp_path):
    out = python("""
        out["before"] = "torch" in sys.modules
        out["functions"] = [callable(nnrun.train), callable(nnrun.load)]
        out["after"] = "torch" in sys.modules
        """, tmp_path)
    assert out == {"before": False, "functions": [True, True], "after": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny run trained with `nnrun.train` into `run` (a str), then: the same call again, a
    run into the default directory from another thread, and the model loaded back."""
    root = tmp_path_factory.mktemp("api")
    out = python("""
        result = nnrun.train(*TINY, run_dir="run")
        out["run_dir"], out["metrics"] = str(result.run_dir), result.metrics
        out["again"] = refusal(nnrun.train, *TINY, run_dir="run")

        import threading  # not the main thread: no signal handlers, the run still goes
        done = {}
        worker = threading.Thread(target=lambda: done.update(r=nnrun.train(*TINY)))
        worker.start()
        worker.join()
        out["default_dir"] = str(done["r"].run_dir)

        import torch
        from nnrun.data import Sizes
        from tests.helpers import build_model
        loaded = nnrun.load("run")
        out["training"] = loaded.model.training
        out["checkpoint"] = str(loaded.checkpoint)
        out["sizes"] = loaded.sizes == Sizes((8, 1), 1)
        out["hidden_size"] = loaded.config.model.hidden_size
        reference = build_model(Sizes((8, 1), 1), *TINY).eval()
        x = torch.randn(5, 8, 1, generator=torch.Generator().manual_seed(0))
        out["fresh_differs"] = not torch.equal(loaded.model(x), reference(x))
        weights = torch.load("run/checkpoints/best.pt", weights_only=True)["model"]
        reference.load_state_dict(weights)
        with torch.no_grad():
            out["same_outputs"] = torch.equal(loaded.model(x), reference(x))
        out["last"] = str(nnrun.load("run", checkpoint="last").checkpoint)
        out["by_file"] = str(nnrun.load("run/checkpoints/last.pt").checkpoint)
        """, root)
    return root, out


def test_train_returns_the_metrics_and_the_run_directory(trained):
    root, out = trained
    run_dir = root / "run"
    assert out["run_dir"] == str(run_dir)
    assert out["metrics"]["status"] == "completed" and out["metrics"]["epochs"] == 2
    assert out["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_train_records_the_run_as_the_command_does(trained):
    """`.hydra/` as Hydra writes it for the command, and run.json names the call, not the
    kernel's command line."""
    run_dir = trained[0] / "run"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert all(o in overrides for o in TINY_SINE)
    (start,) = json.loads((run_dir / "run.json").read_text())["starts"]
    assert start["command"].startswith("nnrun.train('data.n_points=200'")
    assert "run_dir='run'" in start["command"] and "kernel" not in start["command"]


def test_a_second_train_into_the_same_directory_is_refused(trained):
    root, out = trained
    one_line(out["again"], "ConfigError", str(root / "run"), "already holds a run",
             "trainer.resume=auto")


def test_train_without_a_run_dir_makes_one_under_outputs(trained):
    """As the command does: outputs/<date>/<time> under the current folder (here from a
    thread that is not the main one, as some notebook tools run cells)."""
    root, out = trained
    default = Path(out["default_dir"])
    assert default.parent.parent == root / "outputs"
    assert (default / "checkpoints" / "last.pt").is_file()


def test_load_gives_the_trained_model_in_eval_mode(trained):
    root, out = trained
    assert out["training"] is False and out["sizes"] and out["hidden_size"] == 8
    assert out["checkpoint"] == str(root / "run" / "checkpoints" / "best.pt")
    assert out["fresh_differs"] and out["same_outputs"]
    assert out["last"] == out["by_file"] == str(root / "run" / "checkpoints" / "last.pt")


def test_bad_input_is_one_line_and_writes_nothing(trained):
    """Each refused in one line naming what is wrong, and nothing written: the files below
    are made here, before the calls, by this process."""
    from nnrun import checkpoint

    root, _ = trained

    bad = root / "bad"
    (bad / "empty").mkdir(parents=True)
    (bad / "notes.txt").write_text("not a checkpoint")
    shutil.copytree(root / "run", bad / "no_best")
    (bad / "no_best" / "checkpoints" / "best.pt").unlink()
    state = checkpoint.load(root / "run" / "checkpoints" / "last.pt")
    state["config"]["model"]["bogus"] = 1  # a model argument this nnrun does not know
    checkpoint.save({k: v for k, v in state.items() if k not in ("format", "version", "sha256")},
                    bad / "renamed.pt")
    before = snapshot(root)
    out = python("""
        out["not_a_run"] = refusal(nnrun.load, "bad/empty")
        out["missing"] = refusal(nnrun.load, "bad/nowhere")
        out["which"] = refusal(nnrun.load, "run", checkpoint="middle")
        out["no_best"] = refusal(nnrun.load, "bad/no_best")
        out["not_a_checkpoint"] = refusal(nnrun.load, "bad/notes.txt")
        out["no_longer_builds"] = refusal(nnrun.load, "bad/renamed.pt")
        out["bad_option"] = refusal(nnrun.train, "model=nope", run_dir="new/run")
        out["bad_value"] = refusal(nnrun.train, *TINY, "optimizer.lr=0", run_dir="new/run")
        """, root)
    assert snapshot(root) == before
    one_line(out["not_a_run"], "CheckpointError", "nnrun.load", "empty",
             "is not an nnrun run directory")
    one_line(out["missing"], "CheckpointError", "nowhere", "does not exist")
    one_line(out["which"], "ConfigError", "checkpoint='middle'", "'best', 'last'")
    one_line(out["no_best"], "CheckpointError", "no checkpoints/best.pt",
             "pass checkpoint='last'")
    one_line(out["not_a_checkpoint"], "CheckpointError", "notes.txt", "not a checkpoint")
    one_line(out["no_longer_builds"], "ConfigError", "renamed.pt", "model.bogus",
             "is not an argument of nnrun.models.recurrent.LSTM")
    one_line(out["bad_option"], "ConfigError", "model/nope", "choose one of")
    one_line(out["bad_value"], "ConfigError", "optimizer.lr=0", "must be > 0")


def test_a_checkpoint_from_before_sizes_were_recorded_still_loads(trained):
    """A format 2 checkpoint carries no sizes: they are found again from its data config."""
    import torch

    from nnrun import checkpoint

    root, _ = trained
    state = checkpoint.load(root / "run" / "checkpoints" / "best.pt")
    old = {k: v for k, v in state.items()
           if k not in ("sizes", "vocabularies", "processes", "rng_ranks")}
    old["version"] = 2
    old["sha256"] = checkpoint.digest(old)
    torch.save(old, root / "format2.pt")
    out = python("""
        from nnrun.data import Sizes
        loaded = nnrun.load("format2.pt")
        out["sizes"] = loaded.sizes == Sizes((8, 1), 1)
        out["same"] = all(t.equal(loaded.model.state_dict()[k])
                          for k, t in nnrun.load("run").model.state_dict().items())
        """, root)
    (root / "format2.pt").unlink()
    assert out == {"sizes": True, "same": True}


def test_own_model_from_python(tmp_path):
    """A model of the user's own, in the current folder, with its YAML in `config_dir`: trained
    and loaded back from Python, as the command does with `--config-dir`."""
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text("_target_: mymodel.Tiny\n")
    (tmp_path / "mymodel.py").write_text(textwrap.dedent("""
        from torch import nn

        class Tiny(nn.Module):
            def __init__(self, in_shape, out_features):
                super().__init__()
                self.linear = nn.Linear(in_shape[0] * in_shape[1], out_features)

            def forward(self, x):
                return self.linear(x.flatten(1))
        """))
    out = python("""
        result = nnrun.train("model=tiny", *TINY[:2], "trainer.epochs=1",
                             "trainer.progress=false", run_dir="run", config_dir="conf")
        out["status"] = result.metrics["status"]
        loaded = nnrun.load(result.run_dir, checkpoint="last")
        out["class"] = type(loaded.model).__module__ + "." + type(loaded.model).__name__
        out["weight"] = list(loaded.model.linear.weight.shape)
        out["missing_dir"] = refusal(nnrun.train, "model=tiny", config_dir="nope")
        """, tmp_path)
    assert out["status"] == "completed" and out["class"] == "mymodel.Tiny"
    assert out["weight"] == [1, 8]  # in_shape (8, 1) and out_features 1 from data=sine
    one_line(out["missing_dir"], "ConfigError", "config_dir=nope", "no such folder")
