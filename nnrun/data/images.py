"""Image datasets: MNIST, read by torchvision from its files under `data.root`."""

from __future__ import annotations

import torch
from torch import Tensor

from nnrun.data import Data, Sizes, data_root, missing_dataset
from nnrun.data.batches import TensorBatches
from nnrun.errors import ConfigError, DataError

MNIST_SCALES = ("standard", "unit", "minus1_1")


def mnist(root: str | None = None, batch_size: int = 64, val_size: int = 5000,
          scale: str = "standard", download: bool = True, seed: int = 0,
          shuffle: bool = True) -> Data:
    """MNIST as (N, 1, 28, 28) float tensors from torchvision's files under `root/MNIST/raw`.

    `scale` maps the 0-255 pixels: `standard` to (x/255 - 0.1307) / 0.3081 (the training set's
    mean and std), `unit` to [0, 1], `minus1_1` to [-1, 1] (the training set's min and max,
    0 and 255, mapped to -1 and 1, to match a tanh output; Deep Learning from Scratch L7073).
    `val_size` images are held out of the training set (a seeded split); with `val_size=0`
    the test set validates, as many textbooks do. `shuffle=false` trains on the images in
    file order every epoch.
    """
    from torchvision.datasets import MNIST

    if scale not in MNIST_SCALES:
        raise ConfigError(f"data.scale={scale!r} must be one of {', '.join(MNIST_SCALES)}")
    path = data_root(root)
    try:
        train, test = (MNIST(str(path), train=t, download=download) for t in (True, False))
    except (RuntimeError, OSError, ValueError) as err:
        raise missing_dataset("MNIST", path, "MNIST/raw", download, err) from None

    def images(ds: MNIST) -> Tensor:
        x = ds.data.unsqueeze(1).float().div_(255)      # (N, 1, 28, 28)
        if scale == "standard":
            return x.sub_(0.1307).div_(0.3081)
        return x.mul_(2).sub_(1) if scale == "minus1_1" else x

    x, y = images(train), train.targets
    x_test, y_test = images(test), test.targets
    if not 0 <= val_size < len(x):
        raise DataError(f"data.val_size={val_size} must be in [0, {len(x)})")
    test_split = TensorBatches(x_test, y_test, batch_size=batch_size, shuffle=False)
    if val_size:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        tr, va = order[val_size:], order[:val_size]
        val = TensorBatches(x[va], y[va], batch_size=batch_size, shuffle=False)
        x, y = x[tr], y[tr]
    else:
        val = test_split
    return Data(train=TensorBatches(x, y, batch_size=batch_size, shuffle=shuffle), val=val,
                test=test_split, sizes=Sizes((1, 28, 28), 10))
