"""Next-character language modelling (`data=dlfs_text`, `data=tinyshakespeare`; Deep Learning
from Scratch chapters 6 and 7, seed-003 L6116-6175, L6814-6926): classification of every next
character of a window, and a sampler that writes generated text to TensorBoard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nnrun.data import Batch, Batches, Data
from nnrun.errors import ConfigError
from nnrun.tasks.classification import Classification


class NextCharacter(Classification):
    """Predict every next character of a window: cross-entropy per character; loss, accuracy
    and bits per character on evaluation; generated text in TensorBoard.

    Batches are (x, y) character ids, (B, T) each, y being x shifted by one character; the
    model gives (B, T, vocabulary) logits and, for sampling, `forward_state` (as
    `model=char_lstm`).

    Args:
        reduction: the training loss over a batch's characters: `mean`, or `sum` (the book's
            repository sums over batch, time and classes, catalog/003b G17).
        sample_every: steps between samples written to TensorBoard (`samples/text`); one is
            always written at the end of the run.
        sample_len: characters per sample.
        temperature: divides the logits before sampling (1 = the model's distribution).
        prime: the text the sample starts from; null (or empty) = the first character of the
            validation text.
        seed: seeds the sampler's own generator, so sampling never moves the training's
            random state.
    """

    metric_names = (*Classification.metric_names, "bpc")

    def __init__(self, reduction: str = "mean", sample_every: int | None = None,
                 sample_len: int = 200, temperature: float = 1.0, prime: str | None = None,
                 seed: int = 0) -> None:
        super().__init__(reduction)
        if sample_every is not None and sample_every <= 0:
            raise ConfigError(f"task.sample_every={sample_every} must be positive or null")
        if temperature <= 0:
            raise ConfigError(f"task.temperature={temperature} must be > 0")
        self.views_every, self.sample_len = sample_every, sample_len
        self.temperature, self.prime = temperature, prime
        self.generator = torch.Generator().manual_seed(seed)
        self.vocab: Sequence[str] = ""

    def setup(self, data: Data) -> None:
        """Take the data's character vocabulary; a prime it cannot spell fails now, not at the
        first sample."""
        if "chars" not in data.vocabularies:
            raise ConfigError("task=next_char needs character data (a vocabulary of `chars`), "
                              "such as data=dlfs_text or data=tinyshakespeare")
        self.vocab = data.vocabularies["chars"]
        if not self.prime:
            first_window = next(iter(data.val.epoch()))[0]  # (B, T), in text order
            self.prime = self.vocab[int(first_window[0, 0])]
        missing = sorted(set(self.prime) - set(self.vocab))
        if missing:
            raise ConfigError(f"task.prime={self.prime!r} has characters outside the "
                              f"vocabulary: {missing}")

    def logits_and_targets(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        x, y = batch
        return model(x).flatten(0, 1), y.flatten()  # (B * T, V), (B * T,)

    def metrics(self, stats: dict[str, Tensor | int]) -> dict[str, float]:
        metrics = super().metrics(stats)
        return {**metrics, "bpc": metrics["loss"] / math.log(2)}

    @torch.no_grad()
    def views(self, model: nn.Module, batches: Batches) -> dict:
        """`samples/text`: `sample_len` characters drawn one at a time from the model's softmax,
        starting from `prime` and feeding the recurrent state forward (`model.forward_state`);
        indented as a Markdown code block, so TensorBoard keeps the line breaks."""
        text = sample(model, self.vocab, self.prime, self.sample_len, self.temperature,
                      self.generator)
        return {"samples/text": "\n".join("    " + line for line in text.split("\n"))}

    def generate(self, model: nn.Module, prompts: list[str],
                 vocabularies: dict[str, Sequence[str]], length: int = 200,
                 temperature: float = 1.0, seed: int = 0, **options: Any) -> list[str]:
        """Each prompt continued by `length` characters sampled at `temperature`."""
        vocab = vocabularies["chars"]
        if temperature <= 0:
            raise ConfigError(f"--temperature {temperature} must be > 0")
        for prime in prompts:
            missing = sorted(set(prime) - set(vocab))
            if not prime or missing:
                raise ConfigError(f"--generate {prime!r}: a prime needs characters of the "
                                  f"model's vocabulary; not in it: {missing or 'an empty prime'}")
        generator = torch.Generator().manual_seed(seed)
        return [sample(model, vocab, prime, length, temperature, generator)
                for prime in prompts]


@torch.no_grad()
def sample(model: nn.Module, vocab: Sequence[str], prime: str, length: int, temperature: float,
           generator: torch.Generator) -> str:
    """`prime` and `length` characters drawn one at a time from the model's softmax at
    `temperature`, feeding the recurrent state forward (`model.forward_state`)."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.tensor([[vocab.index(c) for c in prime]], device=device)
    logits, state = model.forward_state(x)
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
        i = int(torch.multinomial(probs, 1, generator=generator))
        out.append(vocab[i])
        logits, state = model.forward_state(x.new_tensor([[i]]), state)
    return prime + "".join(out)
