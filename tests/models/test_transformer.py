"""The KFU textbook's Transformer (nnrun.models.transformer): every block, the masks, padding,
and the whole model forward and backward at a small and at the book's size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnrun.data import Sizes
from nnrun.data.translation import (
    EOS,
    PAD,
    SOS,
)
from nnrun.models.transformer import (
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForwardBlock,
    InputEmbedding,
    MultiHeadAttention,
    NormalizationLayer,
    PositionalEncoding,
    ResidualConnection,
    Transformer,
    causal_mask,
    padding_mask,
    target_mask,
)
from tests.helpers import build_model


def small_model(**kwargs) -> Transformer:
    args = {"d_model": 16, "layers": 2, "heads": 4, "d_ff": 32, "dropout": 0.1, **kwargs}
    return Transformer(11, 13, seq_len=12, **args)


def assert_every_parameter_has_a_gradient(module: nn.Module) -> None:
    missing = [name for name, p in module.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_normalization_layer_is_the_books_formula():
    torch.manual_seed(0)
    norm = NormalizationLayer(6)
    with torch.no_grad():
        norm.alpha.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 6, requires_grad=True)
    y = norm(x)
    # unbiased std (n - 1), eps outside the square root (seed-001 L2246)
    mean, std = x.mean(-1, keepdim=True), (x - x.mean(-1, keepdim=True)).square().sum(
        -1, keepdim=True).div(5).sqrt()
    assert torch.allclose(y, norm.alpha * (x - mean) / (std + 1e-6) + norm.bias, atol=1e-6)
    y.square().sum().backward()
    assert_every_parameter_has_a_gradient(norm)


def test_positional_encoding_values():
    pe = PositionalEncoding(d_model=8, seq_len=5, dropout=0.0)
    out = pe(torch.zeros(1, 5, 8))
    pos = torch.arange(5.0)
    assert torch.allclose(out[0, :, 0], torch.sin(pos))                    # i = 0
    assert torch.allclose(out[0, :, 1], torch.cos(pos))
    assert torch.allclose(out[0, :, 2], torch.sin(pos / 10000 ** (2 / 8)))  # i = 1
    assert torch.allclose(out[0, :, 7], torch.cos(pos / 10000 ** (6 / 8)))  # i = 3
    assert pe(torch.zeros(2, 3, 8)).shape == (2, 3, 8)  # shorter sequences use the first rows


def test_input_embedding_is_scaled_by_sqrt_d_model():
    emb = InputEmbedding(d_model=16, vocab_size=7)
    ids = torch.tensor([[1, 2, 6]])
    assert torch.allclose(emb(ids), emb.embedding.weight[ids] * 4)


@pytest.mark.parametrize("block,call", [
    (FeedForwardBlock(8, 16, 0.1), lambda m, x, mem, sm, tm: m(x)),
    (InputEmbedding(8, 10), lambda m, x, mem, sm, tm: m(torch.tensor([[1, 2, 3, 9]]))),
    (ResidualConnection(8, 0.1), lambda m, x, mem, sm, tm: m(x, nn.Tanh())),
    (MultiHeadAttention(8, 2, 0.1), lambda m, x, mem, sm, tm: m(x, mem, mem, sm)),
    (EncoderBlock(8, 2, 16, 0.1), lambda m, x, mem, sm, tm: m(mem, sm)),
    (Encoder([EncoderBlock(8, 2, 16, 0.1) for _ in range(2)], 8),
     lambda m, x, mem, sm, tm: m(mem, sm)),
    (DecoderBlock(8, 2, 16, 0.1), lambda m, x, mem, sm, tm: m(x, mem, sm, tm)),
    (Decoder([DecoderBlock(8, 2, 16, 0.1) for _ in range(2)], 8),
     lambda m, x, mem, sm, tm: m(x, mem, sm, tm)),
], ids=["feed_forward", "embedding", "residual", "attention", "encoder_block", "encoder",
        "decoder_block", "decoder"])
def test_block_forward_backward(block, call):
    torch.manual_seed(0)
    x, memory = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    src_mask = padding_mask(torch.tensor([[5, 6, 7, PAD, PAD], [5, 6, 7, 8, 9]]))
    tgt_mask = target_mask(torch.tensor([[SOS, 5, 6, PAD], [SOS, 5, 6, 7]]))
    out = call(block, x, memory, src_mask, tgt_mask)
    assert out.shape[-1] == 8 and torch.isfinite(out).all()
    out.square().sum().backward()
    assert_every_parameter_has_a_gradient(block)


def test_attention_heads_split_and_merge_and_keep_their_weights():
    attention = MultiHeadAttention(d_model=8, heads=2, dropout=0.0)
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    out = attention(q, kv, kv, None)
    assert out.shape == (3, 4, 8)
    assert attention.attention_scores.shape == (3, 2, 4, 6)
    assert torch.allclose(attention.attention_scores.sum(-1), torch.ones(3, 2, 4))


def test_mask_shapes_and_values():
    tokens = torch.tensor([[SOS, 5, PAD], [SOS, 5, 6]])
    assert padding_mask(tokens).shape == (2, 1, 1, 3)
    assert causal_mask(3).tolist() == [[[True, False, False], [True, True, False],
                                         [True, True, True]]]
    mask = target_mask(tokens)
    assert mask.shape == (2, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]


def test_causal_mask_hides_the_future():
    torch.manual_seed(0)
    model = small_model().eval()
    src = torch.tensor([[SOS, 4, 5, 6, EOS]])
    tgt = torch.tensor([[SOS, 4, 5, 6, 7, 8]])
    changed = tgt.clone()
    changed[0, 3:] = torch.tensor([9, 10, 11])  # every token from position 3 on
    a, b = model(src, tgt), model(src, changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)  # positions 0-2 see none of them
    assert not torch.allclose(a[0, 3:], b[0, 3:], atol=1e-3)


def test_padding_changes_no_output():
    torch.manual_seed(0)
    model = small_model().eval()
    src = torch.tensor([[SOS, 4, 5, 6, EOS]])
    tgt = torch.tensor([[SOS, 7, 8]])
    padded_src = torch.tensor([[SOS, 4, 5, 6, EOS, PAD, PAD, PAD]])
    padded_tgt = torch.tensor([[SOS, 7, 8, PAD, PAD]])
    plain = model(src, tgt)
    padded = model(padded_src, padded_tgt)
    assert torch.allclose(plain[0], padded[0, :3], atol=1e-5)
    memory = model.encode(src, padding_mask(src))
    padded_memory = model.encode(padded_src, padding_mask(padded_src))
    assert torch.allclose(memory, padded_memory[:, :5], atol=1e-5)
    # what the encoder leaves at padded positions never reaches the decoder
    noisy = padded_memory.clone()
    noisy[:, 5:] = torch.randn(1, 3, 16)
    mask = padding_mask(padded_src)
    assert torch.allclose(model.decode(noisy, mask, tgt, target_mask(tgt)),
                          model.decode(padded_memory, mask, tgt, target_mask(tgt)), atol=1e-6)


def test_small_model_forward_backward():
    torch.manual_seed(0)
    model = small_model()
    src = torch.tensor([[SOS, 4, 5, EOS, PAD], [SOS, 6, 7, 8, EOS]])
    tgt = torch.tensor([[SOS, 4, 5, PAD], [SOS, 6, 7, 8]])
    logits = model(src, tgt)
    assert logits.shape == (2, 4, 13)
    logits.square().mean().backward()
    assert_every_parameter_has_a_gradient(model)


def test_the_books_model_builds_and_trains_a_step():
    """512 wide, 6 layers, 8 heads, d_ff 2048: 44,103,680 parameters besides the embeddings
    and the projection (catalog/001 E11: "roughly 44.1M")."""
    torch.manual_seed(0)
    v_src, v_tgt = 20, 30
    model = build_model(Sizes((350,), v_tgt, vocab_size=v_src, seq_len=350), "model=transformer")
    total = sum(p.numel() for p in model.parameters())
    assert total - 512 * (v_src + 2 * v_tgt) - v_tgt == 44_103_680
    src = torch.tensor([[SOS, 4, 5, 6, EOS, PAD]])
    tgt = torch.tensor([[SOS, 7, 8, 9]])
    model(src, tgt).logsumexp(-1).sum().backward()
    assert_every_parameter_has_a_gradient(model)
