"""Next-character modelling: the sampler and its prime."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnrun.data.text import char_text
from nnrun.errors import ConfigError
from nnrun.models.charnets import CharRNN
from nnrun.run import run, validate
from nnrun.tasks.next_char import NextCharacter
from tests.helpers import make_config


def test_sampler_writes_text_to_tensorboard(tmp_path, data_root):
    cfg = make_config("model=char_lstm", "data=dlfs_text", f"data.root={data_root}",
                      "model.layers=[{cell: lstm, hidden_size: 16, output_size: null}]",
                      "data.epoch_windows=256", "task.sample_every=4", "task.sample_len=50",
                      "trainer.epochs=1", "trainer.progress=false", "device=cpu")
    validate(cfg)
    result = run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["steps"] == 8
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    texts = events.Tensors("samples/text/text_summary")
    assert [t.step for t in texts] == [4, 8, 8]  # every 4 steps, and at the end
    sample = texts[-1].tensor_proto.string_val[0].decode()
    lines = sample.split("\n")
    assert all(line.startswith("    ") for line in lines)  # a Markdown code block
    chars = "\n".join(line[4:] for line in lines)
    assert len(chars) == 1 + 50 and set(chars) <= set(char_text(
        "text/dlfs_input.txt", root=str(data_root)).vocabularies["chars"])
    assert {"val/loss", "val/acc", "val/bpc"} <= set(result)


def test_sampling_leaves_the_training_random_state_alone(text_corpus):
    root, _ = text_corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5)
    model = CharRNN(vocab_size=data.sizes.vocab_size,
                    layers=[{"cell": "gru", "hidden_size": 12, "output_size": 7},
                            {"cell": "lstm", "hidden_size": 10, "output_size": None}])
    task = NextCharacter(sample_len=20, prime="to be", seed=3)
    task.setup(data)
    state = torch.get_rng_state()
    text = task.views(model, data.val)["samples/text"]
    assert text.startswith("    to be") and len(text) == 4 + 5 + 20 + 4 * text.count("\n")
    assert torch.equal(torch.get_rng_state(), state)


def test_the_prime_defaults_to_the_first_validation_character_and_is_checked(text_corpus):
    root, text = text_corpus
    data = char_text("text/tiny.txt", root=str(root), seq_len=5, val_fraction=0.25)
    for prime in (None, ""):
        task = NextCharacter(prime=prime)
        task.setup(data)
        assert task.prime == text[round(len(text) * 0.75)]
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        NextCharacter(prime="XYZ").setup(data)


def test_a_prime_the_text_cannot_spell_fails_before_training(tmp_path, data_root):
    cfg = make_config("model=char_lstm", "data=dlfs_text", f"data.root={data_root}",
                      "task.prime='☃'", "trainer.progress=false", "device=cpu")
    with pytest.raises(ConfigError, match="task.prime='☃' has characters outside"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
