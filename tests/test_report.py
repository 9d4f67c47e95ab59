"""The reproduction report: verdict rows and orderings from metrics, a header that says which code
and packages produced it, and a real run of a preset through `python -m nnrun.report`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nnrun.cli import group_options
from nnrun.report import ORDERINGS, ordering_rows, provenance, rows, write_report

SOURCE = {"commit": "0123abc, clean tree", "packages": "nnrun 0.1.0, torch 2.14.1"}


def result(**extra) -> dict:
    return {"preset": "doc/x", "total_s": 3.2, "run_dir": Path("outputs/r/doc/x"),
            "status": "completed", **extra}


def test_rows_give_each_target_its_verdict():
    checks = [{"metric": "test/acc", "value": 0.96, "tolerance": 0.01, "source": "L1",
               "measured": 0.955, "verdict": "reproduced"},
              {"metric": "val/rmse", "value": 5.0, "tolerance": 0.1, "source": "L2",
               "measured": 5.3, "verdict": "outside tolerance", "note": "the book rounds"}]
    table = rows(result(expected=checks))
    assert [r[5] for r in table] == ["reproduced", "**outside tolerance**"]
    assert table[0][1:5] == ["test/acc", "0.96 (L1)", "0.955", "±0.01"]


def test_rows_record_experiments_without_a_target_and_failed_runs():
    (recorded,) = rows(result(**{"val/loss": 0.5, "test/acc": 0.9}))
    assert recorded[5] == "recorded" and "test/acc 0.9" in recorded[3]
    (failed,) = rows(result(status="failed", error="nnrun: error: boom"))
    assert "run failed" in failed[5] and "boom" in failed[5]
    (refused,) = rows(result(status="not run", error="nnrun: error: data.path=x does not exist"))
    assert refused[5] == "**not run**: nnrun: error: data.path=x does not exist"


def test_the_report_has_its_header_rows_and_notes(tmp_path):
    checks = [{"metric": "val/rmse", "value": 5.0, "tolerance": 0.1, "source": "L2",
               "measured": 5.3, "verdict": "outside tolerance", "note": "the book rounds"}]
    out = tmp_path / "REPRODUCTION.md"
    write_report([result(expected=checks)], out, "python -m nnrun.report doc/x", SOURCE,
                 threads=1, jobs=2)
    text = out.read_text()
    assert "- code: commit 0123abc, clean tree" in text
    assert "- packages: nnrun 0.1.0, torch 2.14.1; Python 3." in text
    assert ("- command: `python -m nnrun.report doc/x`; 2 run(s) at a time, 1 intra-op "
            "thread(s) each") in text
    assert "| doc/x | val/rmse | 5 (L2) | 5.3 | ±0.1 | **outside tolerance** |" in text
    # a note is the preset's hand-written context, under a heading that says so
    notes = text.split("## Notes from the presets")[1]
    assert "not by these runs" in notes and "**doc/x**, val/rmse: the book rounds" in notes


def test_orderings_say_whether_each_pair_holds(tmp_path):
    ladder = {"dlfs/ch4_mse": 0.72, "dlfs/ch4_softmax_ce": 0.91, "dlfs/ch4_momentum": 0.90}
    results = [result(preset=p, **{"test/acc": acc}) for p, acc in ladder.items()]
    results.append(result(preset="dlfs/ch4_linear_decay", status="failed", error="boom"))
    table = ordering_rows(results)  # pairs with a preset that was not run are left out
    assert [(r[2], r[3], r[4]) for r in table] == [
        ("dlfs/ch4_mse < dlfs/ch4_softmax_ce", "0.72 < 0.91", "holds"),
        ("dlfs/ch4_softmax_ce < dlfs/ch4_momentum", "0.91 < 0.9", "**does not hold**"),
        ("dlfs/ch4_momentum < dlfs/ch4_linear_decay", "0.9 < None", "**missing**")]
    out = tmp_path / "REPRODUCTION.md"
    write_report(results, out, "python -m nnrun.report --all", SOURCE)
    assert "## Orderings across presets" in out.read_text()
    presets = group_options("experiment")
    assert all(p in presets for _, _, pairs in ORDERINGS for pair in pairs for p in pair)


def test_every_preset_is_listed():
    assert "examples/mnist_cnn" in group_options("experiment")


def test_provenance_names_the_checkouts_commit_and_the_packages():
    source = provenance()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (CI's clean clone is one)
        assert source["commit"].startswith(head.stdout.strip())
    import torch

    assert f"torch {torch.__version__.split('+')[0]}" in source["packages"]


def test_a_report_of_a_real_run(tmp_path):
    """`python -m nnrun.report` runs the preset through the CLI and reports its verdict."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "nnrun.report", "lecture2/linreg_manual",
                           "--out", str(tmp_path / "R.md"), "--runs", str(tmp_path / "runs")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "R.md").read_text()
    assert "- code: commit " in text and "- packages: nnrun " in text
    (row,) = [line for line in text.splitlines() if line.startswith("| lecture2/linreg_manual")]
    assert "| train/loss | 1e-08 (" in row and "| reproduced |" in row
