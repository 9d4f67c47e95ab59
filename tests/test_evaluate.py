"""`nnrun-eval RUN_DIR`, the installed console script: a trained run's metrics, views and
generated text, given only its directory, and its refusals of what is not a usable run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnrun import checkpoint
from nnrun.run import run
from tests.helpers import make_config, nnrun

# The console script installed beside this interpreter: CI runs .venv/bin/pytest without
# putting .venv/bin on PATH
EVAL = Path(sys.executable).parent / "nnrun-eval"


def nnrun_eval(*args: str, cwd: Path, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess:
    """The installed `nnrun-eval` console script in a subprocess."""
    assert EVAL.is_file(), f"no {EVAL}: nnrun is not installed (pip install -e .)"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(EVAL), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """An MNIST MLP trained for 60 steps."""
    tmp = tmp_path_factory.mktemp("mnist")
    done = nnrun("model=mlp", "data=mnist", "trainer.epochs=1", "trainer.max_steps=60",
                 "trainer.progress=false", f"hydra.run.dir={tmp / 'run'}", cwd=tmp,
                 env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 0, done.stderr
    return tmp / "run"


def test_eval_gives_the_runs_own_test_accuracy_and_changes_nothing(mnist_run, data_root):
    before = tree(mnist_run)
    run_metrics = json.loads((mnist_run / "metrics.json").read_text())
    done = nnrun_eval(str(mnist_run), "--checkpoint", "last", cwd=mnist_run.parent,
                      env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 0, done.stderr
    record = json.loads((mnist_run / "evaluations" / "last-test.json").read_text())
    # the final weights, evaluated again: the run's own test numbers, exactly
    assert record["test/acc"] == run_metrics["test/acc"]
    assert record["test/loss"] == pytest.approx(run_metrics["test/loss"], rel=1e-6)
    assert f"test/acc         {run_metrics['test/acc']:.6g}" in done.stdout
    assert {k: v for k, v in tree(mnist_run).items() if not k.startswith("evaluations/")} \
        == before

    best = nnrun_eval(str(mnist_run), "--split", "val", cwd=mnist_run.parent,
                      env={"NNRUN_DATA_ROOT": str(data_root)})
    assert best.returncode == 0, best.stderr
    record = json.loads((mnist_run / "evaluations" / "best-val.json").read_text())
    state = torch.load(mnist_run / "checkpoints" / "best.pt", weights_only=True)
    assert record["step"] == state["step"] and record["val/acc"] == state["metrics"]["val/acc"]


@pytest.mark.parametrize("args, words", [
    (["{tmp}"], "is not an nnrun run"),
    (["{run}", "--checkpoint", "{tmp}/nope.pt"], "nope.pt does not exist"),
    (["{run}", "data.nope=3"], "data.nope=3"),
    (["{broken}"], "model._target_"),
    (["{nobest}"], "has no checkpoints/best.pt; use --checkpoint last"),
])
def test_eval_refuses_what_is_not_a_usable_run_in_one_line(args, words, mnist_run, data_root,
                                                           tmp_path):
    broken, nobest = tmp_path / "broken", tmp_path / "nobest"
    for copy in (broken, nobest):
        shutil.copytree(mnist_run, copy, ignore=shutil.ignore_patterns("evaluations", "tb"))
    config = broken / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("nnrun.models.mlp.MLP", "nnrun.models.Gone"))
    (nobest / "checkpoints" / "best.pt").unlink()
    before = tree(tmp_path)
    values = {"tmp": tmp_path, "run": mnist_run, "broken": broken, "nobest": nobest}
    done = nnrun_eval(*(a.format(**values) for a in args), cwd=tmp_path,
                      env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnrun-eval: error: ") and words in lines[0], \
        lines
    assert tree(tmp_path) == before


def test_a_character_model_samples_text_without_its_corpus(tmp_path, data_root):
    done = nnrun("experiment=dlfs/ch6_char_rnn", "trainer.max_steps=30", "trainer.progress=false",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                 env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 0, done.stderr
    nowhere = {"NNRUN_DATA_ROOT": str(tmp_path / "no-data")}  # the corpus is not read
    args = [str(tmp_path / "run"), "--generate", "The ", "An", "--length", "40",
            "--temperature", "0.8", "--seed", "1"]
    first = nnrun_eval(*args, cwd=tmp_path, env=nowhere)
    assert first.returncode == 0, first.stderr
    texts = json.loads((tmp_path / "run" / "evaluations" / "best-generated.json").read_text())
    samples = [g["text"] for g in texts["generated"]]
    assert samples[0].startswith("The ") and samples[1].startswith("An")
    assert [len(s) for s in samples] == [44, 42]
    vocab = torch.load(tmp_path / "run" / "checkpoints" / "best.pt",
                       weights_only=True)["vocabularies"]["chars"]
    assert set("".join(samples)) <= set(vocab)
    assert nnrun_eval(*args, cwd=tmp_path, env=nowhere).stdout == first.stdout  # seeded

    refused = nnrun_eval(str(tmp_path / "run"), "--generate", "€", cwd=tmp_path, env=nowhere)
    assert refused.returncode == 2 and "not in it: ['€']" in refused.stderr


@pytest.mark.slow  # ~15 s: the default suite keeps to 15 minutes
def test_a_translator_translates_without_its_corpus(tmp_path, data_root):
    done = nnrun("experiment=kfu_pytorch/ch9_transformer", "data.max_pairs=400",
                 "trainer.max_steps=10", "trainer.progress=false",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                 env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 0, done.stderr
    translated = nnrun_eval(str(tmp_path / "run"), "--checkpoint", "last", "--generate",
                            "How are you?", "I love you.", cwd=tmp_path,
                            env={"NNRUN_DATA_ROOT": str(tmp_path / "no-data")})
    assert translated.returncode == 0, translated.stderr
    lines = translated.stdout.splitlines()
    assert len(lines) == 2 and all(lines)
    target = torch.load(tmp_path / "run" / "checkpoints" / "last.pt",
                        weights_only=True)["vocabularies"]["target"]
    assert {word for line in lines for word in line.split()} <= set(target)


@pytest.mark.parametrize("version", [2, 3])
def test_a_checkpoint_of_an_earlier_format_still_resumes(tmp_path, version):
    """Version 2 checkpoints (before sizes and vocabularies) load with those as None, version 3
    ones (before processes and rng_ranks) as one process's, and a run resumes from either."""
    tiny = ["data.n_points=200", "data.window=8", "model.hidden_size=8", "trainer.progress=false"]
    run_dir = tmp_path / "run"
    run(make_config(*tiny, "trainer.epochs=2"), run_dir)
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["version"] == 4 and state["sizes"]["in_shape"] == (8, 1)
    assert state["processes"] == 1 and state["rng_ranks"] == []
    dropped = {"processes", "rng_ranks"} | ({"sizes", "vocabularies"} if version == 2 else set())
    old = {k: v for k, v in state.items() if k not in dropped | {"sha256"}}
    old["version"] = version
    old["sha256"] = checkpoint.digest(old)
    torch.save(old, path)
    loaded = checkpoint.load(path)
    assert loaded["processes"] == 1 and loaded["rng_ranks"] == []
    assert (loaded["sizes"] is None) == (version == 2)
    resumed = run(make_config(*tiny, "trainer.epochs=3", "trainer.resume=auto"), run_dir)
    assert resumed["status"] == "completed" and resumed["epochs"] == 3
    assert torch.load(path, weights_only=True)["version"] == 4


@pytest.mark.slow  # ~40 s: MNIST through a conv autoencoder, codes of the 10,000 test images
def test_an_autoencoder_decodes_images_from_a_trained_run(tmp_path, data_root):
    done = nnrun("experiment=dlfs/ch7_autoencoder", "trainer.max_steps=10",
                 "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                 env={"NNRUN_DATA_ROOT": str(data_root)})
    assert done.returncode == 0, done.stderr
    viewed = nnrun_eval(str(tmp_path / "run"), "--views", cwd=tmp_path,
                        env={"NNRUN_DATA_ROOT": str(data_root)})
    assert viewed.returncode == 0, viewed.stderr
    folder = tmp_path / "run" / "evaluations" / "best-test"
    from PIL import Image

    for name in ("val_recon.png", "val_random_decodes.png"):  # originals over reconstructions
        with Image.open(folder / name) as image:
            assert image.width > 28 and image.height > 28
    assert "val/random_nearest_mse" in json.loads((folder / "scalars.json").read_text())
