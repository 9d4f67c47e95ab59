"""Reconstruction: train a model to give back its input (`task=reconstruction`, Deep Learning
from Scratch's chapter-7 autoencoder, seed-003 L6930-7153, catalog/003b E7.4).

At the end of a run the task writes to TensorBoard: the split's images above their
reconstructions and decodes of random codes (IMAGES tab), and the split's encodings with their
labels and thumbnails (PROJECTOR tab, whose built-in t-SNE shows the digit clusters the book
describes). It needs a model with an `encoder` and a `decoder` (`model=conv_autoencoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Batches
from nnrun.errors import ConfigError
from nnrun.tasks import Embedding, Task, check_reduction


class Reconstruction(Task):
    """Give back the input: the squared error between `model(x)` and `x`, averaged over pixels
    (nn.MSELoss); labels in the batch, if any, are used only for the projector and `knn_acc`.

    At the end of a run, over the validation split, it writes:
    - `recon`: the first `grid` images (top row) above their reconstructions (bottom row);
    - `random_decodes`: `random_codes` codes drawn uniform in (-1, 1) and decoded (the book's
      smoothness test: they do not look like digits), and `random_nearest_mse`, the mean squared
      error between each decode and its nearest image of the split, to compare with `mse`;
    - `codes`: up to `projector_points` encodings with labels and thumbnails for the projector;
    - `knn_acc`: the leave-one-out `knn`-nearest-neighbour accuracy of the labels in code
      space, the objective form of "the digits form clusters" (catalog/003b G30).

    Args:
        reduction: the training loss over a batch, `mean` (nn.MSELoss) or `sum`.
        grid: images in the reconstruction grid.
        random_codes: random codes decoded.
        projector_points: encodings written for the projector (the first ones of the split).
        knn: neighbours voting in `knn_acc`.
        seed: draws the random codes.
    """

    metric_names = ("loss", "mse")

    def __init__(self, reduction: str = "mean", grid: int = 8, random_codes: int = 16,
                 projector_points: int = 10000, knn: int = 5, seed: int = 0) -> None:
        self.reduction = check_reduction(reduction)
        for key, value in (("grid", grid), ("random_codes", random_codes), ("knn", knn)):
            if value < 1:
                raise ConfigError(f"task.{key}={value} must be >= 1")
        self.grid, self.random_codes, self.knn = grid, random_codes, knn
        self.projector_points, self.seed = projector_points, seed

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x = batch[0]
        return F.mse_loss(model(x), x, reduction=self.reduction)

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        x = batch[0]
        return {"n": x.numel(), "se": (model(x).double() - x.double()).square().sum()}

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        mse = float(stats["se"]) / float(stats["n"])
        return {"loss": mse, "mse": mse}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """The grids, scalars and projector points listed in the class docstring."""
        from torchvision.utils import make_grid

        model.eval()
        split = list(batches.epoch())
        images = torch.cat([batch[0] for batch in split])
        labels = torch.cat([batch[1] for batch in split]) if len(split[0]) > 1 else None
        codes = torch.cat([model.encoder(batch[0]) for batch in split])
        lo, hi = float(images.min()), float(images.max())

        def picture(x: Tensor, nrow: int) -> Tensor:  # a grid, pixels in [0, 1]
            return make_grid(x.float().cpu(), nrow=nrow, normalize=True, value_range=(lo, hi),
                             pad_value=1.0)

        shown = images[:self.grid]
        generator = torch.Generator().manual_seed(self.seed)
        uniform = torch.rand(self.random_codes, codes.shape[1], generator=generator) * 2 - 1
        decodes = model.decoder(uniform.to(codes.device))
        out: dict = {
            "val/recon": picture(torch.cat([shown, model(shown)]), len(shown)),
            "val/random_decodes": picture(decodes, 8),
            "val/random_nearest_mse": nearest_mse(decodes, images),
        }
        points = min(self.projector_points, len(codes))
        if points:
            thumbs = ((images[:points] - lo) / (hi - lo or 1)).float().cpu()
            out["val/codes"] = Embedding(codes[:points].float().cpu(),
                                         None if labels is None else labels[:points].tolist(),
                                         thumbs)
        if labels is not None and len(codes) > self.knn:
            out["val/knn_acc"] = knn_accuracy(codes, labels, self.knn)
        return out


def nearest_mse(x: Tensor, pool: Tensor, chunk: int = 2048) -> float:
    """The mean, over the rows of `x`, of the mean squared error to the nearest row of `pool`
    (both flattened per sample)."""
    x, pool = x.flatten(1).double(), pool.flatten(1).double()
    best = torch.stack([torch.cdist(x, part).amin(1) for part in pool.split(chunk)]).amin(0)
    return float(best.square().mean() / x.shape[1])


def knn_accuracy(codes: Tensor, labels: Tensor, k: int, chunk: int = 1024) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: the share of points whose label is the most
    common among their `k` nearest other points (Euclidean; ties to the smallest label)."""
    codes = codes.float()
    correct = 0
    for start in range(0, len(codes), chunk):
        rows = codes[start:start + chunk]
        dist = torch.cdist(rows, codes)
        dist[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = math.inf
        neighbours = labels[dist.topk(k, largest=False).indices]  # (rows, k)
        votes = F.one_hot(neighbours, int(labels.max()) + 1).sum(1)
        correct += int((votes.argmax(1) == labels[start:start + len(rows)]).sum())
    return correct / len(codes)
