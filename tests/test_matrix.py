"""Every model option with every data option, under the task the data picks: it takes a training
step, or it is refused with one line that says what does not fit, before a run directory is
touched. In-process (the data of each option is built once), and through the real command line
for a sample."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from nnrun.errors import NnrunError
from nnrun.models import ClosedForm
from nnrun.run import assemble, build, validate
from tests.helpers import make_config, nnrun

MODELS = sorted(p.stem for p in Path(files("nnrun.conf") / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in Path(files("nnrun.conf") / "data").glob("*.yaml"))

# Pairs that must train: the documents' own and the classic cross-overs the issue names.
MUST_TRAIN = {("lstm", "sine"), ("lstm", "mnist"), ("gru", "mnist"), ("rnn", "mnist"),
              ("mlp", "cora"), ("gcn", "cora"), ("cnn", "mnist"), ("mlp", "boston"),
              ("char_rnn", "tinyshakespeare"), ("transformer_small", "tatoeba"),
              ("hopfield", "binary_patterns"), ("least_squares", "boston"), ("elman", "sine")}


def one_line(err: NnrunError) -> str:
    message = str(err)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.fixture(scope="module")
def built(data_root) -> Iterator[dict]:
    """Each data option built once: the data, or the one-line error that refused it."""
    before = os.environ.get("NNRUN_DATA_ROOT")
    os.environ["NNRUN_DATA_ROOT"] = str(data_root)  # what the data options' `root` reads
    cache = {}
    for name in DATA:
        cfg = make_config(f"data={name}", "device=cpu")
        try:
            cache[name] = build(cfg.data)
        except NnrunError as err:  # a dataset missing here (opus_books): one line too
            cache[name] = err
    yield cache
    if before is None:
        del os.environ["NNRUN_DATA_ROOT"]
    else:
        os.environ["NNRUN_DATA_ROOT"] = before


@pytest.mark.parametrize("data_name", DATA)
def test_every_model_trains_a_step_on_this_data_or_is_refused_in_one_line(data_name, built):
    data = built[data_name]
    trained, refused = [], {}
    for model_name in MODELS:
        torch.manual_seed(0)
        cfg = make_config(f"model={model_name}", f"data={data_name}", "device=cpu")
        if isinstance(data, NnrunError):
            refused[model_name] = one_line(data)
            continue
        try:
            validate(cfg)
            model = assemble(cfg, build(cfg.task), data, torch.device("cpu"))
            if isinstance(model, ClosedForm):
                model.fit(data.train)
        except NnrunError as err:
            refused[model_name] = one_line(err)
            continue
        if any(p.requires_grad for p in model.parameters()):  # one real optimizer step
            task = build(cfg.task)
            task.setup(data)
            optimizer = build(cfg.optimizer, params=model.parameters())
            batch = next(iter(data.train.epoch(torch.Generator().manual_seed(0))))
            loss = task.loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss), (model_name, data_name)
        trained.append(model_name)
    for model_name, message in refused.items():
        assert (model_name, data_name) not in MUST_TRAIN, message
        # the refusal names what does not fit and what would
        assert any(w in message for w in ("model=", "task=", "data.", "model.")), message
        assert "use " in message or "choose " in message or "put " in message, message
    if not isinstance(data, NnrunError):
        assert trained, f"no model trains on data={data_name}"


SAMPLE = [  # through the real command line: (overrides, what the one line must say)
    (["model=gcn"], ["model=gcn cannot train on data=sine", "graph data: use data=cora"]),
    (["model=lstm", "data=boston"], ["model=lstm cannot train on data=boston", "data=sine"]),
    (["model=conv_autoencoder", "data=mnist"], ["task=reconstruction"]),
]  # task=classification on sine: test_errors.BAD_VALUES


@pytest.mark.parametrize("case", range(len(SAMPLE)))
def test_a_pair_that_does_not_fit_is_one_line_and_leaves_no_folder(case, data_root, tmp_path):
    overrides, words = SAMPLE[case]
    run_dir = tmp_path / "run"
    result = nnrun(*overrides, "trainer.progress=false", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path, env={"NNRUN_DATA_ROOT": str(data_root)})
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("nnrun: error: "), line
    for word in words:
        assert word in line, (word, line)
    assert not run_dir.exists()


def test_recurrent_models_read_mnist_row_by_row_and_an_mlp_reads_cora(data_root, tmp_path):
    for i, overrides in enumerate((["model=lstm", "data=mnist", "trainer.max_steps=5"],
                                   ["model=mlp", "data=cora", "trainer.epochs=3"])):
        result = nnrun(*overrides, "trainer.progress=false",
                       f"hydra.run.dir={tmp_path / str(i)}", cwd=tmp_path,
                       env={"NNRUN_DATA_ROOT": str(data_root)})
        assert result.returncode == 0, result.stderr
