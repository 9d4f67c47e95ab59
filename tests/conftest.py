"""Fixtures the tests share: a writable copy of the real data, and a small text corpus."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The datasets the tests read under the data root: CI provides all of them.
DATASETS = ("MNIST/raw", "Cora/raw", "boston", "timeseries", "text", "tatoeba")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root built from $NNRUN_DATA_ROOT: MNIST linked, Cora copied (PyG writes
    Cora/processed beside the raw files), every other folder (timeseries, boston, text: only
    read) linked. Tests that need real data skip without the variable, except on CI
    (`CI=true`), which is set up to provide every dataset: there a missing one fails."""
    source = os.environ.get("NNRUN_DATA_ROOT")
    missing = [d for d in DATASETS if not source or not (Path(source) / d).is_dir()]
    if missing:
        reason = (f"NNRUN_DATA_ROOT={source} lacks {', '.join(missing)}; point it at a folder "
                  "laid out like ../shared/data")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("data")
    (root / "MNIST").mkdir()
    (root / "MNIST" / "raw").symlink_to(Path(source, "MNIST", "raw").resolve())
    shutil.copytree(Path(source, "Cora", "raw"), root / "Cora" / "raw")
    for folder in Path(source).iterdir():
        if folder.is_dir() and folder.name not in ("MNIST", "Cora"):
            (root / folder.name).symlink_to(folder.resolve())
    return root




@pytest.fixture
def text_corpus(tmp_path: Path) -> tuple[Path, str]:
    """A data root holding `text/tiny.txt`, a short repeated line; returns the root and the text."""
    text = "to be, or not to be: that is the question.\n" * 20
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "tiny.txt").write_text(text)
    return tmp_path, text
