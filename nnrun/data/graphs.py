"""Graph datasets: Cora, read by PyTorch Geometric from its files under `data.root`."""

from __future__ import annotations

from nnrun.data import Data, Sizes, data_root, missing_dataset
from nnrun.data.batches import FullBatch
from nnrun.errors import GRAPH_EXTRA, ConfigError


def cora(root: str | None = None, normalize_features: bool = True, download: bool = True) -> Data:
    """Cora through PyTorch Geometric's Planetoid (`root/Cora/raw`): one graph, split by masks.

    Every split is the whole graph plus its mask; train, val and test share one copy of it.
    """
    try:
        from torch_geometric.datasets import Planetoid
    except ImportError:
        raise ConfigError(GRAPH_EXTRA.format(what="data=cora")) from None

    path = data_root(root)
    raw = path / "Cora" / "raw"
    if not download and not raw.is_dir():
        raise missing_dataset("Cora", path, "Cora/raw", download, FileNotFoundError(str(raw)))
    try:
        graph = Planetoid(str(path), "Cora")[0]
    except Exception as err:  # PyG raises URLError, OSError, or its own errors offline
        raise missing_dataset("Cora", path, "Cora/raw", download, err) from None
    x = graph.x
    if normalize_features:
        x = x / x.sum(1, keepdim=True).clamp(min=1)
    train, val, test = (FullBatch(x, graph.edge_index, graph.y, mask)
                        for mask in (graph.train_mask, graph.val_mask, graph.test_mask))
    return Data(train=train, val=val, test=test,
                sizes=Sizes((x.shape[1],), int(graph.y.max()) + 1))
