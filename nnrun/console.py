"""What a run shows on the console: the config as a compact tree, a progress bar, a summary."""

from __future__ import annotations

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


class ProgressBar:
    """A rich progress bar over optimizer steps: epoch, step, loss and ETA. `enabled=False`
    turns every call into a no-op."""

    def __init__(self, enabled: bool, total_steps: int, completed: int, epochs: int) -> None:
        self.enabled, self.epochs = enabled, epochs
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


def print_summary(result: dict[str, Any], best: dict[str, Any], run_dir: Path) -> None:
    """The final table: final and best metrics, the run directory, checkpoints, TensorBoard."""
    table = Table(title=f"nnrun: {result['status']}", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("value", overflow="fold")
    for name, value in result.items():
        if "/" in name:
            table.add_row(name, _short(value))
    for name, value in best.items():
        table.add_row(name, _short(value))
    for check in result.get("expected", []):
        measured = "-" if check["measured"] is None else _short(check["measured"])
        table.add_row(f"expected {check['metric']}",
                      f"{_short(check['value'])} ± {_short(check['tolerance'])}: measured "
                      f"{measured}, {check['verdict']} ({check['source']})")
    table.add_row("epochs / steps", f"{result['epochs']} / {result['steps']}")
    table.add_row("wall time", time.strftime("%H:%M:%S", time.gmtime(result["wall_s"])))
    table.add_row("run directory", str(run_dir))
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.exists():
            table.add_row(name, str(path))
    table.add_row("tensorboard", f"tensorboard --logdir {run_dir / 'tb'}")
    if "error" in result:
        table.add_row("[red]error", result["error"])
    console.print(table)
