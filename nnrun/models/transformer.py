"""The KFU textbook's encoder-decoder Transformer, built from its own blocks (seed-001
L2239-2478, catalog/001 E11): its layer norm, pre-norm residual connections, multi-head
attention with padding and causal masks, sinusoidal positions.

Masks follow the book: 1 (True) where attention is allowed, 0 where it is not; a source mask is
(B, 1, 1, S), broadcast over heads and queries; a target mask is (B, 1, T, T), padding and
causality together (`target_mask`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

PAD_ID = 1  # the id of [PAD] in every vocabulary nnrun.data.translation builds


def padding_mask(tokens: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """(B, L) token ids -> (B, 1, 1, L): True at the keys that are not padding."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(size: int, device: torch.device | None = None) -> Tensor:
    """(1, size, size): True where query i may attend to key j, i.e. j <= i."""
    return torch.ones(1, size, size, dtype=torch.bool, device=device).tril()


def target_mask(tokens: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """(B, T) decoder input ids -> (B, 1, T, T): keys that are not padding and not in the future
    (the book's `(decoder_input != pad) & causal_mask(seq_len)`, L2538)."""
    return padding_mask(tokens, pad_id) & causal_mask(tokens.shape[1], tokens.device)


class NormalizationLayer(nn.Module):
    """The book's layer norm (L2239-2248): alpha * (x - mean) / (std + eps) + bias over the last
    dimension, with torch's unbiased std and eps outside the square root, so not numerically
    `nn.LayerNorm` (catalog/001 pitfall 41)."""

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True)
        return self.alpha * (x - mean) / (std + self.eps) + self.bias


class FeedForwardBlock(nn.Module):
    """Linear(d_model, d_ff) -> ReLU -> Dropout -> Linear(d_ff, d_model) (L2250-2257)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class InputEmbedding(nn.Module):
    """Token embeddings scaled by sqrt(d_model) (the book's InputEmbBlock, L2272-2281)."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x) * math.sqrt(self.d_model)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to the embeddings, then dropout (L2283-2306):
    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""

    def __init__(self, d_model: int, seq_len: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)          # (L, 1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(seq_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))                                  # (1, L, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.pe[:, :x.shape[1], :])


class ResidualConnection(nn.Module):
    """Pre-norm residual: x + dropout(sublayer(norm(x))) (the book's ResConnection, L2314-2322)."""

    def __init__(self, features: int, dropout: float) -> None:
        super().__init__()
        self.norm = NormalizationLayer(features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        return x + self.dropout(sublayer(self.norm(x)))


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over `heads` heads of d_model // heads (L2331-2371); the
    four projections have no bias. The last call's attention weights stay in
    `attention_scores` (B, heads, T_q, T_k)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        assert d_model % heads == 0, "d_model must be divisible by heads"
        self.heads, self.d_k = heads, d_model // heads
        self.w_query = nn.Linear(d_model, d_model, bias=False)
        self.w_key = nn.Linear(d_model, d_model, bias=False)
        self.w_value = nn.Linear(d_model, d_model, bias=False)
        self.w_o = nn.Linear(d_model, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention_scores: Tensor | None = None

    @staticmethod
    def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                  dropout: nn.Dropout) -> tuple[Tensor, Tensor]:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, T_q, T_k)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        weights = dropout(scores.softmax(dim=-1))
        return weights @ v, weights

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        batch = q.shape[0]

        def split(x: Tensor) -> Tensor:  # (B, T, d) -> (B, h, T, d_k)
            return x.view(batch, -1, self.heads, self.d_k).transpose(1, 2)

        x, self.attention_scores = self.attention(split(self.w_query(q)), split(self.w_key(k)),
                                                  split(self.w_value(v)), mask, self.dropout)
        x = x.transpose(1, 2).contiguous().view(batch, -1, self.heads * self.d_k)  # (B, T, d)
        return self.w_o(x)


class EncoderBlock(nn.Module):
    """Self-attention and a feed-forward block, each in a pre-norm residual (L2377-2395)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads, dropout)
        self.feed_forward = FeedForwardBlock(d_model, d_ff, dropout)
        self.residuals = nn.ModuleList(ResidualConnection(d_model, dropout) for _ in range(2))

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        x = self.residuals[0](x, lambda y: self.self_attention(y, y, y, src_mask))
        return self.residuals[1](x, self.feed_forward)


class Encoder(nn.Module):
    """Encoder blocks, then a final layer norm (L2401-2409)."""

    def __init__(self, blocks: Sequence[EncoderBlock], d_model: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = NormalizationLayer(d_model)

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, src_mask)
        return self.norm(x)


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, and a feed-forward block,
    each in a pre-norm residual (L2417-2437)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attention = MultiHeadAttention(d_model, heads, dropout)
        self.feed_forward = FeedForwardBlock(d_model, d_ff, dropout)
        self.residuals = nn.ModuleList(ResidualConnection(d_model, dropout) for _ in range(3))

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor) -> Tensor:
        x = self.residuals[0](x, lambda y: self.self_attention(y, y, y, tgt_mask))
        x = self.residuals[1](x, lambda y: self.cross_attention(y, memory, memory, src_mask))
        return self.residuals[2](x, self.feed_forward)


class Decoder(nn.Module):
    """Decoder blocks, then a final layer norm (L2440-2448)."""

    def __init__(self, blocks: Sequence[DecoderBlock], d_model: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = NormalizationLayer(d_model)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, memory, src_mask, tgt_mask)
        return self.norm(x)


class Transformer(nn.Module):
    """The book's encoder-decoder Transformer (L2455-2478) with the upstream notebook's
    `build_transformer` (catalog/001 E11): separate attention and feed-forward modules per
    block, Xavier-uniform initialisation of every matrix.

    Args:
        vocab_size: source tokens (from the data).
        out_features: target tokens, the classes at each decoder position (from the data).
        seq_len: the longest sequence, special tokens included (from the data).
        d_model, layers, heads, d_ff, dropout: width, blocks per stack, attention heads,
            feed-forward width and dropout; the defaults are the book's (512 wide, six
            layers, L2374, L2591) and upstream's (8 heads, 2048, 0.1).
    """

    reads = "sentence pairs: use data=tatoeba or opus_books"

    def __init__(self, vocab_size: int, out_features: int, seq_len: int, d_model: int = 512,
                 layers: int = 6, heads: int = 8, d_ff: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.src_embed = InputEmbedding(d_model, vocab_size)
        self.tgt_embed = InputEmbedding(d_model, out_features)
        self.src_pos = PositionalEncoding(d_model, seq_len, dropout)
        self.tgt_pos = PositionalEncoding(d_model, seq_len, dropout)
        self.encoder = Encoder([EncoderBlock(d_model, heads, d_ff, dropout)
                                for _ in range(layers)], d_model)
        self.decoder = Decoder([DecoderBlock(d_model, heads, d_ff, dropout)
                                for _ in range(layers)], d_model)
        self.projection = nn.Linear(d_model, out_features)  # the book's ProjectionLayer
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        """(B, S) ids -> (B, S, d_model)."""
        return self.encoder(self.src_pos(self.src_embed(src)), src_mask)

    def decode(self, memory: Tensor, src_mask: Tensor, tgt: Tensor, tgt_mask: Tensor) -> Tensor:
        """(B, T) decoder input ids over the encoder output -> (B, T, d_model)."""
        return self.decoder(self.tgt_pos(self.tgt_embed(tgt)), memory, src_mask, tgt_mask)

    def project(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, tgt vocabulary) logits."""
        return self.projection(x)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher forcing: (B, S) source and (B, T) decoder input ids -> (B, T, V) logits, with
        the padding and causal masks built from the ids."""
        src_mask = padding_mask(src)
        return self.project(self.decode(self.encode(src, src_mask), src_mask, tgt,
                                        target_mask(tgt)))
