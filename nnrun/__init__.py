"""nnrun: a Hydra-configured experiment runner for PyTorch.

From Python and notebooks: `nnrun.train(*overrides, run_dir=None)` trains as the `nnrun`
command would, and `nnrun.load(run_dir_or_checkpoint)` gives back the trained model (see
`nnrun.api`).

Importing the package imports neither torch nor Hydra, so `nnrun --cfg job` stays fast: `train`
and `load` are imported on first use.
"""

__version__ = "0.1.0"

__all__ = ["load", "train"]

LAZY = {"train": "nnrun.api", "load": "nnrun.api"}  # name -> the module that defines it


def __getattr__(name: str):
    """`nnrun.train` and `nnrun.load`, imported when first used (PEP 562)."""
    if name in LAZY:
        from importlib import import_module

        return getattr(import_module(LAZY[name]), name)
    raise AttributeError(f"module 'nnrun' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY])
