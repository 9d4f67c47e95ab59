"""Deep Learning from Scratch's chapter-7 convolutional autoencoder (seed-003 L6930-7153,
catalog/003b E7.4), trained by the `reconstruction` task.

The encoder is a module of its own (`ConvEncoder`; `load_encoder` reads a trained one from a
run's checkpoint), so the codes can be used without the decoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from nnrun import checkpoint
from nnrun.errors import ConfigError
from nnrun.models.dlfs import ConvDenseNet, same_conv


class ConvEncoder(nn.Sequential):
    """Images to codes in (-1, 1): the book's Encoder (conv 1->14, conv 14->7, dense 5488->28,
    all tanh) is a `ConvDenseNet` with no hidden Dense layer, its output put through tanh.

    Args:
        in_shape: one image's (C, H, W).
        hidden_dim: the code's length.
        channels: output channels of each convolution.
        kernel_size: odd square kernel; padding kernel_size // 2 keeps H and W.
    """

    def __init__(self, in_shape: Sequence[int], hidden_dim: int = 28,
                 channels: Sequence[int] = (14, 7), kernel_size: int = 5) -> None:
        super().__init__(ConvDenseNet(in_shape, hidden_dim, channels, kernel_size,
                                      hidden_sizes=[], activation="Tanh"), nn.Tanh())


class ConvDecoder(nn.Module):
    """Codes back to images: a Linear layer with tanh reshaped to (channels[-1], H, W), then the
    encoder's convolutions in reverse, the last one to the image's channels, all with tanh (the
    book's Decoder: dense 28->5488, conv 7->14, conv 14->1), so pixels come out in (-1, 1)."""

    def __init__(self, in_shape: Sequence[int], hidden_dim: int = 28,
                 channels: Sequence[int] = (14, 7), kernel_size: int = 5) -> None:
        super().__init__()
        c, h, w = in_shape
        self.map_shape = (channels[-1], h, w)
        self.dense = nn.Sequential(nn.Linear(hidden_dim, math.prod(self.map_shape)), nn.Tanh())
        sizes = [*reversed(channels), c]
        self.convs = nn.Sequential(*(m for c_in, c_out in zip(sizes, sizes[1:])
                                     for m in (same_conv(c_in, c_out, kernel_size), nn.Tanh())))

    def forward(self, code: Tensor) -> Tensor:
        return self.convs(self.dense(code).view(-1, *self.map_shape))


class ConvAutoencoder(nn.Module):
    """`decoder(encoder(x))`, the book's Autoencoder (318,480 parameters for MNIST with its
    defaults). The book's model returns `(reconstruction, encoding)` and its trainer takes [0];
    here `forward` returns the reconstruction and `encoder` gives the codes.

    Args:
        in_shape: from the data, one image's (C, H, W); a reconstruction has the same shape.
        hidden_dim, channels, kernel_size: as `ConvEncoder`.
    """

    reads = "images and rebuilds them: use data=mnist task=reconstruction"

    def __init__(self, in_shape: Sequence[int], hidden_dim: int = 28,
                 channels: Sequence[int] = (14, 7), kernel_size: int = 5) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ConfigError(f"model=conv_autoencoder needs (C, H, W) images; the data gives "
                              f"{in_shape}; use data=mnist task=reconstruction")
        if not channels or hidden_dim < 1:
            raise ConfigError("model.channels needs at least one convolution and "
                              "model.hidden_dim must be >= 1, e.g. channels=[14,7] hidden_dim=28")
        self.hidden_dim = hidden_dim
        self.encoder = ConvEncoder(in_shape, hidden_dim, channels, kernel_size)
        self.decoder = ConvDecoder(in_shape, hidden_dim, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def load_encoder(path: str | Path, in_shape: Sequence[int] = (1, 28, 28)) -> ConvEncoder:
    """The trained encoder of a `model=conv_autoencoder` run, from its `checkpoints/last.pt` or
    `best.pt`, in eval mode: `load_encoder(run_dir / "checkpoints/last.pt")(images)` gives the
    codes."""
    state = checkpoint.load(Path(path), "load_encoder")
    model_cfg = state["config"]["model"]
    target = f"{ConvAutoencoder.__module__}.{ConvAutoencoder.__qualname__}"
    if model_cfg["_target_"] != target:  # the class the run built, as its config records it
        raise ConfigError(f"{path} is a checkpoint of {model_cfg['_target_']}, not of "
                          f"model=conv_autoencoder ({target})")
    encoder = ConvEncoder(in_shape, model_cfg["hidden_dim"], model_cfg["channels"],
                          model_cfg["kernel_size"])
    prefix = "encoder."
    encoder.load_state_dict({k[len(prefix):]: v for k, v in state["model"].items()
                             if k.startswith(prefix)})
    return encoder.eval()
