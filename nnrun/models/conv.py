"""Convolutional image classifiers: a small CNN, the PyTorch MNIST example's CNN (the KFU
textbook's), and the candle article's SimpleConvNet."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from nnrun.errors import ConfigError


class CNN(nn.Module):
    """Conv blocks (conv, ReLU, 2x2 max-pool), then a hidden linear layer and the output layer."""

    reads = "images (batch, channels, height, width): use data=mnist"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (16, 32), kernel_size: int = 3,
                 hidden_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = in_shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, h, w = c_out, h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden_size), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_size, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)


class ExampleCNN(nn.Module):
    """The CNN of PyTorch's MNIST example (the KFU textbook's Fig.73): two unpadded 3x3 convs,
    one 2x2 max-pool, dropout, a hidden linear layer and the output layer; 1,199,882 parameters
    for 1x28x28 images and 10 classes.

    Returns logits: the book's `log_softmax` + `nll_loss` is exactly the classification task's
    cross-entropy on logits.

    Args:
        channels: output channels of the two convs.
        hidden_size: width of the hidden linear layer.
        conv_dropout: dropout after the pool; dropout: dropout after the hidden layer.
    """

    reads = "images (batch, channels, height, width): use data=mnist"

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (32, 64), hidden_size: int = 128,
                 conv_dropout: float = 0.25, dropout: float = 0.5) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ConfigError(f"model.channels={list(channels)} must name the two convs' "
                              "output channels, e.g. [32, 64]")
        c, h, w = in_shape
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(conv_dropout), nn.Flatten())
        flat = c2 * ((h - 4) // 2) * ((w - 4) // 2)  # 64 * 12 * 12 = 9216 for 28x28
        self.head = nn.Sequential(nn.Linear(flat, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden_size, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)


class SimpleConvNet(nn.Module):
    """The candle article's MNIST network (seed-004 L118): unpadded convs each followed by ReLU
    (by default six 5x5 convs, 1→5→10→20→20→20→10 channels, 28→24→...→4 pixels), then Flatten,
    Linear(10·4·4 = 160 → 20), ReLU, Linear(20 → 10); 34,890 parameters.

    Args:
        in_shape, out_features: from the data.
        channels: output channels of the convs, in order.
        kernel_size: of every conv (stride 1, no padding).
        hidden_size: width of the hidden linear layer.
        init: `kaiming`: He-normal weights for ReLU and zero biases, which keep the signal's
            scale through the eight ReLU layers, so plain SGD at the article's lr 1e-3 learns.
            `torch`: each layer's PyTorch default, under which the mean square of the signal
            shrinks about sixfold per layer; at lr 1e-3 the loss then sits at ln 10 ≈ 2.30.
        freeze_convs: the article's bug, kept to show why its network "does not learn"
            (L119): its SGD.step, zero_grad and loss backward touch only layers whose type name
            is 'Linear' (L97, L101), so the convs keep their random weights.
    """

    reads = "images (batch, channels, height, width): use data=mnist"

    INITS = ("kaiming", "torch")

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (5, 10, 20, 20, 20, 10), kernel_size: int = 5,
                 hidden_size: int = 20, init: str = "kaiming", freeze_convs: bool = False) -> None:
        super().__init__()
        if init not in self.INITS:
            raise ConfigError(f"model.init={init!r} must be one of {', '.join(self.INITS)}")
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, kernel_size), nn.ReLU()]
            c, h, w = c_out, h - kernel_size + 1, w - kernel_size + 1
        if h < 1 or w < 1:
            raise ConfigError(f"model: {len(channels)} unpadded {kernel_size}x{kernel_size} convs "
                              f"do not fit images of {tuple(in_shape)}; use fewer model.channels")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden_size), nn.ReLU(),
                                  nn.Linear(hidden_size, out_features))
        if init == "kaiming":
            for layer in self.modules():
                if isinstance(layer, nn.Conv2d | nn.Linear):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        self.features.requires_grad_(not freeze_convs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, out_features)
