"""MNIST as tensors: the splits, the scalings, file order."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from nnrun.data import Sizes
from tests.helpers import make_config


def test_mnist_builds_from_the_data_root(data_root):
    mnist = instantiate(make_config("data=mnist", f"data.root={data_root}").data)
    assert mnist.sizes == Sizes((1, 28, 28), 10)
    assert len(mnist.train.tensors[0]) == 55000 and len(mnist.val.tensors[0]) == 5000
    assert len(mnist.test.tensors[0]) == 10000


def test_mnist_scales_to_minus1_1(data_root):
    data = instantiate(make_config("experiment=dlfs/ch7_autoencoder",
                                   f"data.root={data_root}").data)
    x_train, x_test = data.train.tensors[0], data.test.tensors[0]
    assert (x_train.min(), x_train.max()) == (-1.0, 1.0)
    assert x_test.min() >= -1 and x_test.max() <= 1
    assert data.val is data.test  # val_size 0: the test set validates, as the book's fit did


def test_mnist_cnn_data_is_in_file_order_and_tested_every_epoch(data_root):
    cfg = make_config("experiment=kfu_pytorch/ch7_mnist_cnn", f"data.root={data_root}")
    data = instantiate(cfg.data)
    x, y = next(data.train.epoch(torch.Generator().manual_seed(1)))  # the trainer's call
    assert torch.equal(y, data.train.tensors[1][:128])  # no shuffling: the book's DataLoader
    assert len(data.train) == 469 and data.val is data.test and len(data.test) == 79


def test_a_damaged_mnist_file_is_named_in_one_line(data_root, tmp_path):
    from tests.helpers import nnrun

    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_root / "MNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes()[:1000] if f.name == "train-images-idx3-ubyte"
                                   else f.read_bytes())
    result = nnrun("data=mnist", "model=mlp", "trainer.progress=false",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   env={"NNRUN_DATA_ROOT": str(tmp_path / "root")})
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and f"the MNIST files in {raw} cannot be read" in line, line
    assert "replace them" in line and not (tmp_path / "run").exists()
