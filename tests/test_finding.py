"""Finding presets through the real command line: `nnrun --help`, `nnrun --list experiments`
and the tab-completion query that Hydra's bash script sends. Every preset must show in the form
that runs, `experiment=<doc>/<id>`, never as Hydra's `experiment/<doc>` group."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import nnrun

ROOT = Path(__file__).parents[1]
PRESETS = sorted(str(p.relative_to(ROOT / "experiments").with_suffix(""))
                 for p in (ROOT / "experiments").rglob("*.yaml"))


def test_help_says_what_nnrun_is_and_lists_presets_as_they_run(tmp_path):
    result = nnrun("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("nnrun: a command-line experiment runner for PyTorch")
    assert "powered by Hydra" not in text
    for command in ("nnrun model=gru data=mnist", "nnrun experiment=dlfs/ch4_momentum",
                    "nnrun -m ", "nnrun --list experiments"):
        assert command in text.split("== Config groups ==")[0], command
    for preset in PRESETS:
        assert f"experiment={preset}" in text, preset
    assert not re.search(r"experiment/\w+[:=]", text)
    groups = text.split("== Config groups ==")[1].split("== Config ==")[0]
    for group, option in (("model", "lstm"), ("data", "mnist"), ("optimizer", "sgd_velocity"),
                          ("schedule", "onecycle"), ("device", "cuda"), ("task", "next_char")):
        assert re.search(rf"^{group}:\n(  .*\n)*  .*\b{option}\b", groups, re.M), group
    assert "_target_: nnrun.models.recurrent.LSTMNet" in text  # the composed config, still


def test_list_experiments_names_every_preset_its_document_and_its_numbers(tmp_path):
    result = nnrun("--list", "experiments", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    documents = [line for line in lines if not line.startswith(" ")]
    assert "dlfs: Deep Learning from Scratch (Weidman)" in documents
    assert "rnn_lab: RNN lab manual (rnn_lab, seed-000)" in documents
    assert "examples:" in documents  # nnrun's own: no document named
    entries, document = {}, None  # preset -> (its document's line, the rest of its line)
    for line in lines:
        if line.startswith(" "):
            preset, shown = line.split(maxsplit=1)
            entries[preset] = (document, shown)
        else:
            document = line.split(":")[0]
    assert list(entries) == [f"experiment={p}" for p in PRESETS]  # one line each, sorted
    for preset in PRESETS:
        document, shown = entries[f"experiment={preset}"]
        assert document == preset.split("/")[0], preset
        targets = yaml.safe_load((ROOT / "experiments" / f"{preset}.yaml").read_text()) \
            .get("expected") or []
        if not targets:
            assert shown == "no number to reproduce: records its metrics", preset
        for target in targets:
            number = f"{target['metric']} {float(target['value']):g} ±" \
                     f"{float(target['tolerance']):g}"
            assert number in shown, (preset, number)


def test_list_experiments_starts_without_torch():
    code = ("import sys; sys.argv = ['nnrun', '--list', 'experiments']; "
            "from nnrun.cli import command; status = command(); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_list_of_an_unknown_word_names_the_choices(tmp_path):
    for args in (["--list", "models"], ["--list"]):
        result = nnrun(*args, cwd=tmp_path)
        assert result.returncode == 2 and not result.stdout
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("nnrun: error: ")
        assert "choose one of: experiments" in result.stderr


def completions(tmp_path: Path, line: str) -> list[str]:
    """What Hydra's bash completion script gets for the command line `line` typed so far: it
    runs `nnrun -sc query=bash` with the line in COMP_LINE."""
    result = nnrun("-sc", "query=bash", cwd=tmp_path,
                   env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_tab_completion_offers_presets_as_they_run(tmp_path):
    offered = completions(tmp_path, "nnrun experiment=dl")
    dlfs = [f"experiment={p}" for p in PRESETS if p.startswith("dl")]
    assert "experiment=dlfs/ch2_linreg_boston" in offered
    assert sorted(offered) == dlfs
    assert completions(tmp_path, "nnrun model=gru experiment=lecture2/linreg_m") == [
        "experiment=lecture2/linreg_manual"]
    started = completions(tmp_path, "nnrun exp")
    assert "experiment=" in started and not [w for w in started if "experiment/" in w]
    assert "model=gru" in completions(tmp_path, "nnrun model=g")  # Hydra's own, kept
