"""Reconstruction: the loss, the nearest-neighbour scores, and what a run writes to TensorBoard."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from nnrun import checkpoint
from nnrun.data import Sizes
from nnrun.errors import ConfigError
from nnrun.models.autoencoder import ConvAutoencoder, load_encoder
from nnrun.run import run
from nnrun.tasks.reconstruction import Reconstruction, knn_accuracy, nearest_mse
from tests.helpers import build_model, get_json, make_config, tensorboard_server


def test_mse_is_nn_mseloss_over_every_pixel():
    net = ConvAutoencoder((1, 6, 6), hidden_dim=3, channels=[2], kernel_size=3)
    task = Reconstruction()
    x = torch.rand(5, 1, 6, 6)
    with torch.no_grad():
        stats = task.eval_stats(net, (x, torch.arange(5)))
        expected = torch.nn.MSELoss()(net(x), x).item()
    assert task.metrics(stats)["mse"] == pytest.approx(expected, rel=1e-6)
    assert task.loss(net, (x,)).item() == pytest.approx(expected, rel=1e-6)  # labels optional


def test_knn_accuracy_sees_clusters_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    centres = torch.tensor([[0.0, 0], [5, 0], [0, 5], [5, 5]])
    clustered = centres[labels] + 0.3 * torch.randn(400, 2, generator=g)
    assert knn_accuracy(clustered, labels, k=5, chunk=64) == 1.0
    noise = torch.randn(400, 2, generator=g)
    assert knn_accuracy(noise, labels, k=5) < 0.4  # chance is 0.25


def test_nearest_mse_is_the_distance_to_the_closest_image():
    pool = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])
    x = torch.full((1, 2, 2), 0.25)
    assert nearest_mse(x, pool, chunk=1) == pytest.approx(0.0625)  # 0.25² to the zeros


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, data_root) -> Path:
    """200 steps of the book's autoencoder, with 500 points for the projector."""
    run_dir = tmp_path_factory.mktemp("ae") / "run"
    cfg = make_config("experiment=dlfs/ch7_autoencoder", f"data.root={data_root}",
                      "trainer.max_steps=200", "task.projector_points=500",
                      "trainer.progress=false", "device=cpu")
    run(cfg, run_dir)
    return run_dir


def test_run_writes_recon_grids_scalars_and_projector(short_run):
    acc = EventAccumulator(str(short_run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    for tag in ("val/recon", "val/random_decodes"):
        (image,) = acc.Images(tag)
        assert image.step == 200 and image.width > 28 * 8
    recon = acc.Images("val/recon")[0]
    assert recon.height > 2 * 28  # originals above reconstructions
    metrics = json.loads((short_run / "metrics.json").read_text())
    for tag in ("val/knn_acc", "val/random_nearest_mse"):
        assert acc.Scalars(tag)[-1].value == pytest.approx(metrics[tag])
    assert 0.5 < metrics["val/knn_acc"] <= 1  # far above the 0.1 of chance, even this early

    config = ProjectorConfig()
    text_format.Parse((short_run / "tb" / "projector_config.pbtxt").read_text(), config)
    (embedding,) = config.embeddings
    tensors = (short_run / "tb" / embedding.tensor_path).read_text().splitlines()
    labels = (short_run / "tb" / embedding.metadata_path).read_text().splitlines()
    assert len(tensors) == len(labels) == 500
    assert len(tensors[0].split("\t")) == 28  # one 28-number code per test image
    assert labels[:4] == ["7", "2", "1", "0"]  # the test set's first labels, in order
    assert list(embedding.sprite.single_image_dim) == [28, 28]
    assert (short_run / "tb" / embedding.sprite.image_path).stat().st_size > 0


def test_tensorboard_projector_serves_the_codes_labels_and_thumbnails(short_run, tmp_path):
    """The real `tensorboard` server's PROJECTOR plugin (whose t-SNE shows the clusters) finds
    the run's encodings, their labels and the sprite of thumbnails."""

    def ready(base: str) -> bool:
        return "tb" in get_json(f"{base}/data/plugin/projector/runs")

    with tensorboard_server(short_run, tmp_path / "tensorboard.log", ready) as base:
        info = get_json(f"{base}/data/plugin/projector/info?run=tb")
        (embedding,) = info["embeddings"]
        name = embedding["tensorName"]
        assert embedding["tensorShape"] == [500, 28]
        assert embedding["sprite"]["singleImageDim"] == [28, 28]
        query = f"run=tb&name={urllib.request.quote(name)}"
        with urllib.request.urlopen(f"{base}/data/plugin/projector/metadata?{query}") as reply:
            labels = reply.read().decode().splitlines()
        assert len(labels) == 500 and labels[:4] == ["7", "2", "1", "0"]
        with urllib.request.urlopen(f"{base}/data/plugin/projector/sprite_image?{query}") as reply:
            assert reply.read(8) == b"\x89PNG\r\n\x1a\n"


def test_encoder_loads_on_its_own_from_the_checkpoint(short_run):
    encoder = load_encoder(short_run / "checkpoints" / "last.pt")
    model = build_model(Sizes((1, 28, 28), 10), "experiment=dlfs/ch7_autoencoder")
    state = torch.load(short_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(encoder(x), model.encoder(x))
    assert not encoder.training


def test_the_encoder_of_another_model_is_refused(short_run, tmp_path):
    state = torch.load(short_run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["model"]["_target_"] = "nnrun.models.mlp.MLP"
    state["sha256"] = checkpoint.digest(state)  # a well-formed checkpoint of another model
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not of model=conv_autoencoder"):
        load_encoder(tmp_path / "other.pt")
