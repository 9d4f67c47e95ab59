"""The reproduction report: run experiment presets for real and write experiments/REPRODUCTION.md.

    python -m nnrun.report --all                       # every preset
    python -m nnrun.report rnn_lab/legendre3 dlfs/...  # a chosen set
    python -m nnrun.report --all --jobs 2 --out experiments/REPRODUCTION.md

Each preset runs through the real command line (`nnrun experiment=<id>`) in its own run
directory under `--runs`; its `metrics.json` gives nnrun's numbers and the verdict on each
`expected:` target. The report is only ever written by this command, from those runs, and its
header says what produced them: the commit, whether the tree was clean, the package versions
and the threads per run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from nnrun.cli import group_options
from nnrun.rundir import source_commit

# The packages whose versions shape the numbers, in the header's order.
PACKAGES = ("nnrun", "torch", "torchvision", "torch_geometric", "hydra-core", "numpy", "scipy",
            "tensorboard", "rapidfuzz")


def provenance() -> dict[str, str]:
    """What the runs are made of: the git commit of the checkout nnrun is imported from (and
    whether its tree held uncommitted changes), and the installed versions of `PACKAGES`."""
    commit = source_commit() or "unknown: nnrun is not imported from a git checkout"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {"commit": commit, "packages": ", ".join(versions)}


def run_preset(preset: str, runs: Path, threads: int) -> dict[str, Any]:
    """Run one preset through the CLI; its metrics.json plus wall time and exit status."""
    run_dir = runs / preset
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("HYDRA_FULL_ERROR", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnrun", f"experiment={preset}",
                           "trainer.progress=false", f"hydra.run.dir={run_dir}"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        metrics.setdefault("error", lines[-1])
        # Exit 2 is input nnrun refused before training (a missing dataset); 1 a failed run.
        metrics["status"] = "not run" if done.returncode == 2 else "failed"
    print(f"{preset}: {metrics.get('status')} in {wall:.0f} s", file=sys.stderr)
    return {**metrics, "preset": preset, "total_s": wall, "run_dir": run_dir}


# Claims that span presets: each (worse, better) pair says the second preset's metric is higher.
ORDERINGS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Deep Learning from Scratch ch. 4: each step of the MNIST ladder improves on the one before, "
     "up to ch4_dropout, and the deep net needs dropout (seed-003 L3709-4231; catalog/003a)",
     "test/acc",
     [("dlfs/ch4_mse", "dlfs/ch4_softmax_ce"), ("dlfs/ch4_softmax_ce", "dlfs/ch4_momentum"),
      ("dlfs/ch4_momentum", "dlfs/ch4_linear_decay"),
      ("dlfs/ch4_linear_decay", "dlfs/ch4_exp_decay"),
      ("dlfs/ch4_linear_decay", "dlfs/ch4_glorot_linear"),
      ("dlfs/ch4_exp_decay", "dlfs/ch4_glorot_exp"),
      ("dlfs/ch4_glorot_linear", "dlfs/ch4_dropout"), ("dlfs/ch4_glorot_exp", "dlfs/ch4_dropout"),
      ("dlfs/ch4_deep_no_dropout", "dlfs/ch4_dropout"),
      ("dlfs/ch4_deep_no_dropout", "dlfs/ch4_deep_dropout")]),
]


def ordering_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per (worse, better) pair of `ORDERINGS` whose presets were both run: the two
    values and whether the order holds."""
    by_preset = {r["preset"]: r for r in results}
    out = []
    for claim, metric, pairs in ORDERINGS:
        for worse, better in pairs:
            if worse not in by_preset or better not in by_preset:
                continue
            a, b = (by_preset[p].get(metric) for p in (worse, better))
            if not (isinstance(a, float) and isinstance(b, float)):
                verdict = "**missing**"
            else:
                verdict = "holds" if a < b else "**does not hold**"
            out.append([claim.split(":")[0], metric, f"{worse} < {better}",
                        f"{_num(a)} < {_num(b)}", verdict])
    return out


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def rows(result: dict[str, Any]) -> list[list[str]]:
    """Report rows for one preset: one per target, or one 'recorded' row without targets."""
    run_dir = Path(os.path.relpath(result["run_dir"]))
    common = [f"{result['total_s']:.0f} s", f"`{run_dir}`"]
    if result["status"] in ("failed", "not run"):
        verdict = "**run failed**" if result["status"] == "failed" else "**not run**"
        return [[result["preset"], "-", "-", "-", "-", f"{verdict}: {result['error']}", *common]]
    checks = result.get("expected", [])
    if not checks:
        shown = [k for k in result if k.startswith("test/")] or \
                [k for k in result if k.startswith("val/")]
        measured = ", ".join(f"{k} {_num(result[k])}" for k in shown[:4])
        return [[result["preset"], "-", "(none reported)", measured, "-", "recorded", *common]]
    out = []
    for c in checks:
        verdict = {"reproduced": "reproduced", "outside tolerance": "**outside tolerance**",
                   "missing": "**missing**"}[c["verdict"]]
        out.append([result["preset"], c["metric"], f"{_num(c['value'])} ({c['source']})",
                    _num(c["measured"]), f"±{_num(c['tolerance'])}", verdict, *common])
    return out


def write_report(results: list[dict[str, Any]], out: Path, command: str,
                 source: dict[str, str], threads: int | None = None, jobs: int = 1) -> None:
    """The report of `results`, from runs of the code `source` (`provenance()`) describes."""
    import torch  # only to say whether a GPU was there

    header = ["experiment", "metric", "document", "nnrun", "tolerance", "verdict", "wall",
              "run directory"]
    lines = [
        "# Reproduction report",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- code: commit {source['commit']}",
        f"- packages: {source['packages']}; Python {platform.python_version()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}" + (", CUDA" if torch.cuda.is_available() else ", no GPU"),
        f"- command: `{command}`"
        + (f"; {jobs} run(s) at a time, {threads} intra-op thread(s) each (OMP_NUM_THREADS)"
           if threads else ""),
        "",
        "Written by `python -m nnrun.report` from real runs; never edited by hand. Every number "
        "in the tables was measured by these runs. A target is reproduced when nnrun's number "
        "lies within the tolerance of the document's.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for result in results:
        for row in rows(result):
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    ordering = ordering_rows(results)
    if ordering:
        lines += ["", "## Orderings across presets", ""]
        lines += [f"- {claim}" for claim, _, _ in ORDERINGS]
        lines += ["", "| claim | metric | order | nnrun | verdict |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in ordering]
    notes = [(r["preset"], c) for r in results for c in r.get("expected", []) if c.get("note")]
    if notes:
        lines += ["", "## Notes from the presets", "",
                  "Written by hand in each preset's target (`note:`), not by these runs: a "
                  "number in a note is an earlier measurement, kept for context.", ""]
        lines += [f"- **{preset}**, {c['metric']}: {c['note']}" for preset, c in notes]
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="experiment ids such as rnn_lab/legendre3")
    parser.add_argument("--all", action="store_true", help="run every preset")
    parser.add_argument("--out", type=Path, default=Path("experiments/REPRODUCTION.md"))
    parser.add_argument("--runs", type=Path, default=Path("outputs/reproduction"),
                        help="where the runs' directories go")
    parser.add_argument("--jobs", type=int, default=1, help="presets run side by side")
    args = parser.parse_args(argv)
    known = group_options("experiment")
    chosen = known if args.all else args.presets
    unknown = sorted(set(chosen) - set(known))
    if not chosen or unknown:
        parser.error(f"unknown presets {unknown}" if unknown else "name presets or pass --all")
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runs = (args.runs / stamp).resolve()
    source = provenance()  # before the runs: the code they run
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda p: run_preset(p, runs, threads), chosen))
    command = "python -m nnrun.report " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(results, args.out, command, source, threads, args.jobs)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
