"""`nnrun-eval RUN_DIR`: use a trained run, given only its directory.

    nnrun-eval outputs/2026-12-02/10-00-00                    # test metrics of best.pt
    nnrun-eval RUN_DIR --checkpoint last --split val          # another checkpoint or split
    nnrun-eval RUN_DIR --views                                # the task's pictures and texts
    nnrun-eval RUN_DIR --generate "ROMEO:" --temperature 0.8  # a character model's text
    nnrun-eval RUN_DIR --generate "How are you?"              # a translator's translation

The run's recorded config (`.hydra/config.yaml`) builds everything; `key=value` arguments change
it for this evaluation only (`data.root=...` where the data has moved, `device=cpu`). The run's
own files are never changed: what an evaluation finds is printed and written under
`RUN_DIR/evaluations/`. `--generate` reads no data at all: the model is built from the sizes
and vocabularies its checkpoint carries.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nnrun.errors import CheckpointError, ConfigError, NnrunError
from nnrun.rundir import timestamp

SPLITS = ("test", "val", "train")


@dataclass
class Restored:
    """A trained run, rebuilt: its model (weights loaded, in eval mode, on `device`), the
    config it was trained with, the sizes its model was built for, its task, and the
    checkpoint it came from (`state`: `nnrun.checkpoint.load`'s dict)."""

    model: Any
    config: DictConfig
    sizes: Any
    task: Any
    state: dict[str, Any]
    path: Path
    data: Any = None


def recorded_config(run_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The config a run was trained with, from its `.hydra/config.yaml`, with `overrides`
    (`key=value`) applied for this use only."""
    recorded = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir() or not recorded.is_file():
        raise ConfigError(f"{run_dir} is not an nnrun run (it has no .hydra/config.yaml); pass "
                          "a run directory, such as outputs/<date>/<time> or a sweep's "
                          "multirun/<date>/<time>/<job>")
    cfg = OmegaConf.load(recorded)
    absent = object()
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key or OmegaConf.select(cfg, key, default=absent) is absent:
            raise ConfigError(f"{override!r}: give key=value for a key of the run's config, "
                              "e.g. data.root=/data")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
    return cfg


def restore(run_dir: Path, which: str = "best", overrides: list[str] = (), device: str = "auto",
            with_data: bool = True) -> Restored:
    """Rebuild a trained run's model from its recorded config and checkpoint.

    With `with_data`, the data is built too (`Restored.data`: an evaluation needs its splits)
    and the model is checked against it as a run is; without it, the model is built from the
    sizes the checkpoint carries, and nothing is read from the dataset.

    Raises:
        NnrunError: not a run, no such checkpoint, a checkpoint that does not load, or a
            recorded config that no longer builds (naming the key).
    """
    from nnrun import checkpoint
    from nnrun.api import CHECKPOINTS, checkpoint_file, rebuild_model
    from nnrun.run import assemble, build, select_device

    cfg = recorded_config(run_dir, list(overrides))
    named = which in CHECKPOINTS
    path = checkpoint_file(run_dir if named else Path(which), which if named else "best",
                           "--checkpoint")
    state = checkpoint.load(path, "--checkpoint")
    torch_device = select_device(device)

    def built(group: str, make: Any) -> Any:
        """`make()`, with a failure named by the config group whose recorded node failed."""
        try:
            return make()
        except (ConfigError, OmegaConfBaseException, ImportError) as err:
            target = OmegaConf.select(cfg, f"{group}._target_", default="?")
            reason = ("it cannot be imported" if isinstance(err, ImportError)
                      else str(err).splitlines()[0])
            raise ConfigError(f"{run_dir}/.hydra/config.yaml: {group}._target_={target} no "
                              f"longer builds ({reason}); evaluate with the nnrun that trained "
                              "it, or correct the key (key=value after the run directory)"
                              ) from None

    task = built("task", lambda: build(cfg.task))
    if not with_data:  # from the sizes the checkpoint carries: no data is read
        model, _, sizes = rebuild_model(state, path, "--checkpoint")
        return Restored(model.to(torch_device), cfg, sizes, task, state, path)
    data = built("data", lambda: build(cfg.data).to(torch_device))
    model = built("model", lambda: assemble(cfg, task, data, torch_device))
    checkpoint.check_weights(state, path, model, "--checkpoint")
    model.load_state_dict(state["model"])
    model.eval()
    return Restored(model, cfg, data.sizes, task, state, path, data)


def evaluate(restored: Restored, split: str) -> dict[str, float]:
    """The task's metrics of the restored model on one split of its data, as the trainer
    measures them (the run's own autocast setting included)."""
    from nnrun.trainer import evaluate_split

    batches = getattr(restored.data, split)
    if batches is None:
        raise ConfigError(f"--split {split}: this run's data has no {split} split; use "
                          "--split val")
    bf16 = bool(OmegaConf.select(restored.config, "trainer.bf16", default=False))
    return {f"{split}/{k}": v for k, v in evaluate_split(restored.model, restored.task,
                                                          batches, bf16).items()}


def write_views(restored: Restored, split: str, folder: Path) -> list[Path]:
    """The task's views of one split (`Task.views`) as files in `folder`: text as Markdown,
    images and figures as PNG, scalars in `scalars.json`; points for the projector are left
    out (they need TensorBoard)."""
    import torch
    from torchvision.utils import save_image

    from nnrun.checkpoint import write_json

    views = restored.task.views(restored.model, getattr(restored.data, split))
    folder.mkdir(parents=True, exist_ok=True)
    written, scalars = [], {}
    for tag, view in views.items():
        name = tag.replace("/", "_")
        if isinstance(view, float):
            scalars[tag] = view
            continue
        if isinstance(view, str):
            path = folder / f"{name}.md"
            path.write_text(view + "\n")
        elif isinstance(view, torch.Tensor):
            path = folder / f"{name}.png"
            save_image(view.float().cpu(), path)
        elif hasattr(view, "savefig"):
            path = folder / f"{name}.png"
            view.savefig(path)
        else:
            continue
        written.append(path)
    if scalars:
        write_json(scalars, folder / "scalars.json")
        written.append(folder / "scalars.json")
    return written


def command(argv: list[str] | None = None) -> int:
    """`nnrun-eval` in this process; returns its exit status (0, 1 for a failure while
    evaluating, 2 for bad input)."""
    parser = argparse.ArgumentParser(
        prog="nnrun-eval", description="Evaluate or use a trained nnrun run, given its "
        "directory; nothing of the run is changed (results go to RUN_DIR/evaluations/).")
    parser.add_argument("run_dir", type=Path, help="the run's directory")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="change the recorded config for this evaluation (data.root=...)")
    parser.add_argument("--checkpoint", default="best",
                        help="best (default), last, or a checkpoint file")
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: test")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1")
    parser.add_argument("--views", action="store_true",
                        help="also write the task's pictures and texts of the split")
    parser.add_argument("--generate", nargs="+", metavar="PROMPT",
                        help="text from the model instead: continue each prime (character "
                             "models) or translate each sentence (translators)")
    parser.add_argument("--length", type=int, default=200, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    args = parser.parse_args(argv)
    # Hydra logs a target it cannot import before raising; the raise becomes our one line
    logging.getLogger("hydra.utils").addHandler(logging.NullHandler())
    logging.getLogger("hydra.utils").propagate = False
    try:
        return _command(args)
    except NnrunError as err:
        print(f"nnrun-eval: error: {err}", file=sys.stderr)
        return err.exit_code


def _command(args: argparse.Namespace) -> int:
    from nnrun.checkpoint import write_json

    run_dir = args.run_dir
    out = run_dir / "evaluations"
    stem = Path(args.checkpoint).stem
    if args.generate:
        restored = restore(run_dir, args.checkpoint, args.overrides, args.device,
                           with_data=False)
        vocabularies = restored.state["vocabularies"]
        if not vocabularies:
            raise CheckpointError(f"--generate: {restored.path} carries no vocabularies (a run "
                                  "of token data from before nnrun kept them, or not token "
                                  "data); train it again with this nnrun")
        texts = restored.task.generate(restored.model, args.generate, vocabularies,
                                       length=args.length, temperature=args.temperature,
                                       seed=args.seed)
        for text in texts:
            print(text)
        write_json({"checkpoint": str(restored.path), "step": restored.state["step"],
                    "at": timestamp(), "options": {"length": args.length,
                                              "temperature": args.temperature,
                                              "seed": args.seed},
                    "generated": [{"prompt": p, "text": t}
                                  for p, t in zip(args.generate, texts, strict=True)]},
                   out / f"{stem}-generated.json")
        return 0
    restored = restore(run_dir, args.checkpoint, args.overrides, args.device)
    metrics = evaluate(restored, args.split)
    for name, value in metrics.items():
        print(f"{name:<16} {value:.6g}")
    record = {"checkpoint": str(restored.path), "step": restored.state["step"],
              "split": args.split, "at": timestamp(), **metrics}
    write_json(record, out / f"{stem}-{args.split}.json")
    print(f"recorded in {out / f'{stem}-{args.split}.json'}")
    if args.views:
        for path in write_views(restored, args.split, out / f"{stem}-{args.split}"):
            print(f"view: {path}")
    return 0


def main() -> None:
    """Entry point of the `nnrun-eval` console script."""
    with contextlib.suppress(BrokenPipeError):
        sys.exit(command())
