"""What a run shows on the console: the config as a compact tree, a progress bar, a summary.

A person at a terminal gets the rich bar and table. Logs (`trainer.progress=false`, or stdout
that is a file or a pipe: batch jobs, CI, SLURM) get plain lines instead, written at epoch ends
and evaluations only: a start line, one line per epoch or evaluation, the summary. Every one of
those lines also goes to the run's `nnrun.log` through the `nnrun` logger (Hydra's file handler
on the root logger), whichever the console shows.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

# Logs and pipes get a wide console (unless COLUMNS says otherwise): rich would fold tables
# to 80 columns there.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
log = logging.getLogger("nnrun")


def live(progress: bool) -> bool:
    """The rich bar and table, which redraw in place: only for a terminal, and only with
    `trainer.progress`. A file or a pipe would get the bar once, at the end."""
    return progress and sys.stdout.isatty()


def say(line: str, show: bool = True) -> None:
    """One line of the run's record: on the console (unless `show` is false, where the bar or
    table shows it instead) and in `nnrun.log`. The root logger has only the file handler
    (conf/config.yaml), so the line is there once; run from Python without Hydra's logging, it
    goes to the console alone."""
    if show:
        print(line, flush=True)  # a log file or pipe sees it now, not when a buffer fills
    log.info(line)


def device_name(start: dict[str, Any]) -> str:
    """The device a run really uses, from its `run.json` entry (`rundir.provenance`): `cpu`,
    `cuda (NVIDIA H200)`; what `device=auto` chose, not the option."""
    name = start.get("device_name")
    return f"{start['device']} ({name})" if name else str(start["device"])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def print_config(config: dict[str, Any]) -> None:
    """One line per group: `model  LSTMNet(hidden_size=32, ...)`; plain keys as `key: value`."""
    tree = Tree("[bold]config")
    for group, node in config.items():
        if isinstance(node, dict):
            target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
            args = ", ".join(f"{k}={_short(v)}" for k, v in node.items() if not k.startswith("_"))
            tree.add(f"[cyan]{group}[/]  " + (f"{target}({args})" if target else args))
        else:
            tree.add(f"[cyan]{group}[/]: {_short(node)}")
    console.print(tree)


class EpochLines:
    """Progress as plain lines, for logs: nothing between steps, one line at each epoch end and
    each evaluation (`mark`), e.g. `epoch 3/20  step 75/500  train/loss 0.0123  val/loss
    0.015  lr 0.001`, on the console (if `show`) and in nnrun.log."""

    def __init__(self, total_steps: int, epochs: int, show: bool = True) -> None:
        self.total_steps, self.epochs, self.show = total_steps, epochs, show

    def update(self, step: int, epoch: int, loss: float | None = None) -> None:
        """A new training loss: a bar would redraw; a line waits for the epoch's end."""

    def mark(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """Epoch `epoch` (1-based: the one ending or under way) at `step`, with `values`."""
        shown = "  ".join(f"{name} {_short(value)}" for name, value in values.items())
        say(f"epoch {epoch}/{self.epochs}  step {step}/{self.total_steps}  {shown}", self.show)

    def close(self) -> None:
        pass


class ProgressBar(EpochLines):
    """A rich progress bar over optimizer steps: epoch, step, loss and ETA; the lines of
    `EpochLines` go to nnrun.log alone. `enabled=False`: no bar."""

    def __init__(self, enabled: bool, total_steps: int, completed: int, epochs: int) -> None:
        super().__init__(total_steps, epochs, show=False)
        self.enabled = enabled
        if not enabled:
            return
        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                            BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                            console=console)
        self.task = self.bar.add_task("train", total=total_steps, completed=completed,
                                      epoch=0, epochs=epochs, loss="-")
        self.bar.start()

    def update(self, step: int, epoch: int, loss: float | None = None) -> None:
        if self.enabled:
            fields = {"loss": f"{loss:.4g}"} if loss is not None else {}
            self.bar.update(self.task, completed=step, epoch=min(epoch + 1, self.epochs), **fields)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def watcher(progress: bool, total_steps: int, completed: int, epochs: int) -> EpochLines:
    """What shows a run's progress: the rich bar where it is `live`, plain lines otherwise."""
    if live(progress):
        return ProgressBar(True, total_steps, completed, epochs)
    return EpochLines(total_steps, epochs)


def summary_rows(result: dict[str, Any], best: dict[str, Any],
                 run_dir: Path) -> list[tuple[str, str]]:
    """The summary's (name, value) rows: final and best metrics, each expected number against
    the measured one, the run directory, checkpoints, TensorBoard, the error if any."""
    rows = [(name, _short(value)) for name, value in result.items() if "/" in name]
    rows += [(name, _short(value)) for name, value in best.items()]
    for check in result.get("expected", []):
        measured = "-" if check["measured"] is None else _short(check["measured"])
        rows.append((f"expected {check['metric']}",
                     f"{_short(check['value'])} ± {_short(check['tolerance'])}: measured "
                     f"{measured}, {check['verdict']} ({check['source']})"))
    rows.append(("epochs / steps", f"{result['epochs']} / {result['steps']}"))
    rows.append(("wall time", time.strftime("%H:%M:%S", time.gmtime(result["wall_s"]))))
    rows.append(("run directory", str(run_dir)))
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.exists():
            rows.append((name, str(path)))
    rows.append(("tensorboard", f"tensorboard --logdir {run_dir / 'tb'}"))
    if "error" in result:
        rows.append(("error", result["error"]))
    return rows


def print_summary(result: dict[str, Any], best: dict[str, Any], run_dir: Path,
                  as_table: bool = True) -> None:
    """The summary: a rich table (`as_table`, for a terminal), else plain lines (`nnrun:
    completed`, then `  name  value`); the lines go to nnrun.log either way."""
    title, rows = f"nnrun: {result['status']}", summary_rows(result, best, run_dir)
    width = max(len(name) for name, _ in rows)
    for line in [title, *(f"  {name:<{width}}  {value}" for name, value in rows)]:
        say(line, show=not as_table)
    if not as_table:
        return
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(f"[red]{name}" if name == "error" else name, value)
    console.print(table)
