"""Deep Learning from Scratch (Weidman; seed-003, catalog/003a): the book's networks, losses and
initialisations as options of the shared trainer, each defaulting to the standard behaviour.

- `DenseNet`: Dense layers (Linear, activation, optional dropout) as the book's `Dense` builds
  them, with its initialisations (`init`) and its keep-probability dropout (`KeepDropout`).
- `ConvDenseNet`: the chapter-5 and chapter-7 convolutional networks (same-padded convolutions,
  then Dense layers), with the same dropout and inits (`init_conv_`) and the book's conv weight
  gradient as an option (`conv_grad=book`, `BookGradConv2d`) (catalog/003b).
- `BookClassification` / `BookRegression`: the book's losses (`loss`).
- `LeastSquares` + `boston_closed_form`: the chapter-2 baseline, fitted when it is built.

The optimizer with the book's velocity form is `nnrun.optimizers.VelocitySGD`; its per-epoch
decays are `nnrun.schedules.linear_decay` and `exponential_decay`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnrun.data import Batch, Data, TensorBatches, boston
from nnrun.errors import ConfigError
from nnrun.models import make_activation
from nnrun.tasks import Classification, Regression, with_gradient_of

INITS = ("torch", "standard_normal", "dlfs_glorot", "glorot_normal")


@torch.no_grad()
def init_linear_(layer: nn.Linear, init: str, numpy_seed: int | None = None) -> nn.Linear:
    """Initialise a Linear layer's weight and bias in place; returns it.

    `torch`: PyTorch's default (uniform in ±1/sqrt(fan_in)). `standard_normal`: weight and
    bias from N(0, 1), the book's "standard" init (catalog/003a E6, G24). `dlfs_glorot`: weight
    and bias from N(0, s²) with s = 2 / (fan_in + fan_out), the book's "glorot" (L4017-4020),
    which takes Glorot's variance for the standard deviation. `glorot_normal`: weight and bias
    with std sqrt(2 / (fan_in + fan_out)), the corrected form.

    `numpy_seed` draws the weight as an (in, out) array and then the bias from numpy's
    `RandomState(numpy_seed)`, reseeded for every layer, exactly as the book's `Dense` does
    (`np.random.seed(seed)` in `_setup_layer`, G28); null draws from torch's generator.
    """
    if init not in INITS:
        raise ConfigError(f"model.init={init!r} must be one of {', '.join(INITS)}")
    if init == "torch":
        if numpy_seed is not None:
            raise ConfigError("model.numpy_seed needs model.init=standard_normal, dlfs_glorot or "
                              "glorot_normal (torch's own init draws from torch)")
        return layer
    fan_out, fan_in = layer.weight.shape
    std = {"standard_normal": 1.0, "dlfs_glorot": 2 / (fan_in + fan_out),
           "glorot_normal": math.sqrt(2 / (fan_in + fan_out))}[init]
    if numpy_seed is not None:
        rng = np.random.RandomState(numpy_seed)
        layer.weight.copy_(torch.from_numpy(rng.normal(0.0, std, (fan_in, fan_out)).T))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(rng.normal(0.0, std, (1, fan_out))[0]))
        return layer
    for p in (layer.weight, layer.bias):
        if p is not None:
            p.normal_(0.0, std)
    return layer


class KeepDropout(nn.Module):
    """Dropout that keeps each unit with probability `keep_prob`.

    `rescale=True` is standard (inverted) dropout, `nn.Dropout(p=1 - keep_prob)`: training
    divides the kept units by `keep_prob`, evaluation is the identity. `rescale=False` is the
    book's (L4088-4104): training multiplies by the 0/1 mask only, evaluation multiplies by
    `keep_prob`. The two agree in expectation and differ in training dynamics.
    """

    def __init__(self, keep_prob: float = 1.0, rescale: bool = True) -> None:
        super().__init__()
        if not 0 < keep_prob <= 1:
            raise ConfigError(f"keep_prob={keep_prob} must be in (0, 1]; 0.8 keeps 80% of units")
        self.keep_prob, self.rescale = keep_prob, rescale

    def forward(self, x: Tensor) -> Tensor:
        if self.keep_prob == 1:
            return x
        if self.rescale:
            return F.dropout(x, 1 - self.keep_prob, self.training)
        if not self.training:
            return x * self.keep_prob
        return x * torch.bernoulli(torch.full_like(x, self.keep_prob))

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}, rescale={self.rescale}"


class DenseNet(nn.Module):
    """Flatten, then the book's `Dense` layers: Linear, activation, dropout on each hidden layer;
    a Linear output layer, with `output_activation` if given (chapter 4's sigmoid output).

    Args:
        in_shape, out_features: from the data.
        hidden_sizes: units of each hidden layer; [] is linear regression (`Dense(1)`).
        activation: the hidden layers' torch.nn activation (Sigmoid, Tanh, ...).
        output_activation: null (linear output) or a torch.nn activation name.
        init: `torch`, `standard_normal`, `dlfs_glorot` or `glorot_normal` (`init_linear_`).
        keep_prob: dropout keep probability after every hidden activation; 1 = none.
        rescale_dropout: true = inverted dropout (standard); false = the book's (`KeepDropout`).
        numpy_seed: null = torch's generator draws the init; a seed = the book's exact numpy
            draws, every layer reseeded with it (`init_linear_`).
    """

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 hidden_sizes: Sequence[int] = (), activation: str = "Sigmoid",
                 output_activation: str | None = None, init: str = "torch",
                 keep_prob: float = 1.0, rescale_dropout: bool = True,
                 numpy_seed: int | None = None) -> None:
        super().__init__()
        sizes = [math.prod(in_shape), *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [init_linear_(nn.Linear(n_in, n_out), init, numpy_seed),
                       make_activation(activation)]
            if keep_prob < 1:
                layers.append(KeepDropout(keep_prob, rescale_dropout))
        layers.append(init_linear_(nn.Linear(sizes[-1], out_features), init, numpy_seed))
        if output_activation is not None:
            layers.append(make_activation(output_activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def book_softmax_cross_entropy(logits: Tensor, target: Tensor, eps: float = 1e-9,
                               reduction: str = "mean") -> Tensor:
    """The value of the book's `SoftmaxCrossEntropy` (L3563-3587, repo; catalog/003a G19, G20):
    p = clip(softmax(logits), eps, 1 - eps), then Σ_classes [-y log p - (1 - y) log(1 - p)]
    per sample (a binary cross-entropy summed over the classes, not categorical
    cross-entropy), averaged (`mean`) or summed (`sum`) over the batch. `target` holds class
    indices. Computed in float64, as the book's numpy: in float32 1 - 1e-9 rounds to 1 and a
    saturated softmax would give log(0)."""
    p = logits.double().softmax(1).clamp(eps, 1 - eps)
    y = F.one_hot(target, logits.shape[1]).to(p)
    per_sample = -(y * p.log() + (1 - y) * (1 - p).log()).sum(1)
    value = per_sample.mean() if reduction == "mean" else per_sample.sum()
    return value.to(logits.dtype)


def per_observation_mse(output: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error against the one-hot target summed over the classes, per sample (the book's
    `MeanSquaredError` on MNIST, L2934-2960, G21: 10x nn.MSELoss's mean)."""
    y = F.one_hot(target, output.shape[1]).to(output)
    per_sample = (output - y).square().sum(1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


class BookClassification(Classification):
    """Classification with a choice of loss; accuracy as usual.

    Args:
        loss: `cross_entropy` (standard). `book_softmax_ce`: the book's softmax cross-entropy
            value (`book_softmax_cross_entropy`; logged, and what early stopping compares)
            with the ordinary cross-entropy gradient (softmax - y) / N that the book steps
            along (L3541-3551). `mse_per_obs`: `per_observation_mse` of the model's outputs
            (chapter 4's sigmoid outputs) against one-hot targets.
    """

    LOSSES = ("cross_entropy", "book_softmax_ce", "mse_per_obs")

    def __init__(self, loss: str = "cross_entropy") -> None:
        super().__init__("mean")
        if loss not in self.LOSSES:
            raise ConfigError(f"task.loss={loss!r} must be one of {', '.join(self.LOSSES)}")
        self.loss_name = loss

    def _value(self, output: Tensor, y: Tensor, reduction: str) -> Tensor:
        if output.dtype in (torch.float16, torch.bfloat16):  # under autocast
            output = output.float()
        if self.loss_name == "book_softmax_ce":
            return book_softmax_cross_entropy(output, y, reduction=reduction)
        if self.loss_name == "mse_per_obs":
            return per_observation_mse(output, y, reduction=reduction)
        return F.cross_entropy(output, y, reduction=reduction)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        output, y = self.logits_and_targets(model, batch)
        value = self._value(output, y, "mean")
        if self.loss_name != "book_softmax_ce":
            return value
        return with_gradient_of(value, F.cross_entropy(output, y))  # book: (softmax - y) / N

    def eval_stats(self, model: nn.Module, batch: Batch) -> dict[str, Tensor | int]:
        output, y = self.logits_and_targets(model, batch)
        return {"n": len(y), "loss": self._value(output, y, "sum").double(),
                "correct": (output.argmax(1) == y).sum()}


class BookRegression(Regression):
    """Regression with the chapter-2 losses as well.

    Args:
        loss: `mse` (the mean, standard), `sse` (Σ(y - P)², the gradient -2(y - P) summed over
            the batch of the book's linear regression, L1843-1878) or `half_sse` (½Σ(y - P)²,
            the gradient -(y - P) summed of its network, Table 2.1, L2200-2212).
        figure: as `Regression`'s.
    """

    LOSSES = ("mse", "sse", "half_sse")

    def __init__(self, loss: str = "mse", figure: str = "scatter") -> None:
        if loss not in self.LOSSES:
            raise ConfigError(f"task.loss={loss!r} must be one of {', '.join(self.LOSSES)}")
        super().__init__("mean" if loss == "mse" else "sum", figure=figure)
        self.half = loss == "half_sse"

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        loss = super().loss(model, batch)
        return loss / 2 if self.half else loss


class LeastSquares(nn.Module):
    """Linear regression solved in closed form (least squares with an intercept, in float64)
    from the training rows it is given when it is built: scikit-learn's `LinearRegression`,
    the chapter-2 baseline (L2010). Nothing is learned by gradient; run it with
    `trainer.epochs=0`.

    Args:
        in_shape, out_features: from the data.
        train_x, train_y: (N, F) and (N, out_features) training rows, from the data's dims
            (`data=boston_closed_form`).
    """

    def __init__(self, in_shape: Sequence[int], out_features: int, train_x: Tensor,
                 train_y: Tensor) -> None:
        super().__init__()
        x = train_x.reshape(len(train_x), -1).double()
        design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)   # (N, F + 1)
        solution = torch.linalg.lstsq(design, train_y.double()).solution   # (F + 1, out)
        self.weight = nn.Parameter(solution[:-1].T.float().contiguous(), requires_grad=False)
        self.bias = nn.Parameter(solution[-1].float(), requires_grad=False)
        assert self.weight.shape == (out_features, math.prod(in_shape))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)


def boston_closed_form(root: str | None = None, test_size: float = 0.3, random_state: int = 80718,
                       scale: str = "all") -> Data:
    """`nnrun.data.boston` whose training rows also go to the model, as dims `train_x` and
    `train_y`, for `model=least_squares`; the training split is empty (no optimizer step)."""
    data = boston(root, test_size, random_state, scale)
    assert isinstance(data.train, TensorBatches)
    x, y = data.train.tensors
    empty = TensorBatches(x[:0], y[:0], batch_size=1)
    return Data(train=empty, val=data.val, test=data.test,
                dims={**data.dims, "train_x": x, "train_y": y})


@torch.no_grad()
def init_conv_(conv: nn.Conv2d, init: str) -> nn.Conv2d:
    """Initialise a Conv2d's weight (and bias, if any) in place; returns it.

    `torch`: PyTorch's default. `standard_normal`: N(0, 1). `dlfs_glorot`: N(0, s²) with
    s = 2 / (in_channels + out_channels), the book's convolutional "glorot" (catalog/003b
    E5.1 [REPO]: channels, not receptive-field fans, and no square root). `glorot_normal`: std
    sqrt(2 / (fan_in + fan_out)) with the receptive-field fans, the corrected form.
    """
    if init not in INITS:
        raise ConfigError(f"model.conv_init={init!r} must be one of {', '.join(INITS)}")
    if init == "torch":
        return conv
    out_ch, in_ch, kh, kw = conv.weight.shape
    std = {"standard_normal": 1.0, "dlfs_glorot": 2 / (in_ch + out_ch),
           "glorot_normal": math.sqrt(2 / ((in_ch + out_ch) * kh * kw))}[init]
    for p in (conv.weight, conv.bias):
        if p is not None:
            p.normal_(0.0, std)
    return conv


class _BookConvGrad(torch.autograd.Function):
    """A same-padded, stride-1 convolution whose weight gradient is the one the book's
    `_param_grad_matmul` computes (seed-003 L7380-7428; catalog/003b G7): its image patches come
    out as [positions, batch, ...] and are reshaped to rows without the transpose to
    [batch, positions, ...], so each output-gradient row (batch-major) meets the patch of
    another image and position. The sum is right for batch 1, scrambled for more. The forward
    pass and the input gradient are the correct ones."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        x, weight = ctx.saved_tensors
        k = weight.shape[-1]
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, padding=k // 2)
        batch, positions = x.shape[0], x.shape[2] * x.shape[3]
        patches = F.unfold(x, k, padding=k // 2)               # (B, C*k*k, H*W)
        rows = patches.permute(2, 0, 1).reshape(positions * batch, -1)  # [H*W, B] order
        grads = grad_out.permute(0, 2, 3, 1).reshape(batch * positions, -1)  # [B, H*W] order
        grad_w = (rows.T @ grads).T.reshape(weight.shape)      # (out, C*k*k) -> (out, C, k, k)
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


class BookGradConv2d(nn.Conv2d):
    """nn.Conv2d (stride 1, same padding) with the book's scrambled weight gradient
    (`_BookConvGrad`), for `ConvDenseNet(conv_grad="book")`."""

    def forward(self, x: Tensor) -> Tensor:
        return _BookConvGrad.apply(x, self.weight, self.bias)


CONV_GRADS = ("torch", "book")


def same_conv(c_in: int, c_out: int, kernel_size: int, bias: bool = True, init: str = "torch",
              grad: str = "torch") -> nn.Conv2d:
    """The book's ConvLayer convolution: stride 1, padded by kernel_size // 2 so H and W stay;
    initialised by `init_conv_`; `grad="book"` gives it the book's weight gradient
    (`BookGradConv2d`)."""
    if kernel_size % 2 != 1:
        raise ConfigError(f"model.kernel_size={kernel_size} must be odd (same padding)")
    if grad not in CONV_GRADS:
        raise ConfigError(f"model.conv_grad={grad!r} must be torch (correct) or book")
    conv_class = BookGradConv2d if grad == "book" else nn.Conv2d
    conv = conv_class(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias)
    return init_conv_(conv, init)


class ConvDenseNet(nn.Module):
    """The book's convolutional networks (chapters 5 and 7): stride-1, same-padded convolutions
    (no pooling, so the maps stay at the input's size), each followed by the activation and
    dropout, flattened into Dense layers (Linear, activation, dropout) and a Linear output.

    Chapter 5's (`experiments/dlfs/ch5_conv_mnist.yaml`): channels [32], no conv bias, the
    book's scrambled conv weight gradient (`conv_grad=book`), its conv "glorot", tanh, keep-0.8
    book dropout, Dense(10) from N(0, 1). Chapter 7's
    MNIST_ConvNet (`ch7_mnist_convnet.yaml`): channels [16, 8], hidden [32], tanh, PyTorch's
    init and nn.Dropout(0.2).

    Args:
        in_shape, out_features: from the data, (C, H, W) and the number of classes.
        channels: output channels of each convolution.
        kernel_size: odd square kernel; padding kernel_size // 2 keeps H and W.
        conv_bias: whether the convolutions have a bias (the book's NumPy Conv2D has none).
        hidden_sizes: units of each hidden Dense layer after the flatten.
        activation: torch.nn activation after every convolution and hidden Dense layer.
        keep_prob, rescale_dropout: dropout after every activation, as `KeepDropout`.
        conv_init: the convolutions' init (`init_conv_`).
        init: the Dense layers' init (`init_linear_`).
        conv_grad: `torch` (the correct gradient) or `book`: the convolutions' weight gradient
            as the book's NumPy im2col computes it, without a transpose (`_BookConvGrad`).
    """

    def __init__(self, in_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (16, 8), kernel_size: int = 5, conv_bias: bool = True,
                 hidden_sizes: Sequence[int] = (32,), activation: str = "Tanh",
                 keep_prob: float = 1.0, rescale_dropout: bool = True,
                 conv_init: str = "torch", init: str = "torch", conv_grad: str = "torch") -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ConfigError(f"model=conv_dense needs (C, H, W) images; the data gives {in_shape}")

        def activation_and_dropout() -> list[nn.Module]:
            drop = [KeepDropout(keep_prob, rescale_dropout)] if keep_prob < 1 else []
            return [make_activation(activation), *drop]

        c, h, w = in_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels], channels):
            conv = same_conv(c_in, c_out, kernel_size, conv_bias, conv_init, conv_grad)
            layers += [conv, *activation_and_dropout()]
        layers.append(nn.Flatten())
        sizes = [(channels[-1] if channels else c) * h * w, *hidden_sizes]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [init_linear_(nn.Linear(n_in, n_out), init), *activation_and_dropout()]
        layers.append(init_linear_(nn.Linear(sizes[-1], out_features), init))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
