"""Model options (`model=...`): each is a `torch.nn.Module` in a module of this package, one file
per family (`recurrent`, `conv`, `graph`, `transformer`, the documents' `dlfs`, ...).

A model takes its hyperparameters as keyword arguments from its YAML and, by name, whichever of
the data's sizes (`nnrun.data.Sizes`: `in_shape`, `out_features`, `vocab_size`, `seq_len`) its
constructor asks for; nothing else reaches it. This module holds the one interface the runner
knows besides `nn.Module`: `ClosedForm`, for models fitted from their data in one call.

A model that reads only one kind of data says so in a class attribute `reads` ("graph data: use
data=cora"): when one forward pass on the chosen data fails before a run starts, the refusal
quotes it, so the user learns what fits. A graph model also sets `reads_graph = True`, and is
then given the graph's edges besides the node features.
"""

from __future__ import annotations

from torch import nn

from nnrun.data import Batches

__all__ = ["ClosedForm"]


class ClosedForm(nn.Module):
    """A model fitted from its training split in one call, not by gradient steps (least squares,
    a Hopfield network's Hebbian storage).

    The runner calls `fit(data.train)` once after building it (not when resuming: the
    checkpoint holds the fitted weights). Its parameters do not require gradients, so the
    trainer takes no optimizer step: the run evaluates the fitted model.
    """

    def fit(self, train: Batches) -> None:
        """Set the weights from one pass over `train`, in order."""
        raise NotImplementedError
