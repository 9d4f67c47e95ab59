"""nnrun: a Hydra-configured experiment runner for PyTorch.

Importing the package imports neither torch nor Hydra, so `nnrun --cfg job` stays fast.
"""

__version__ = "0.1.0"
