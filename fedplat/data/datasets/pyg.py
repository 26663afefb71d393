"""`dataset=cora|citeseer|pubmed` (Planetoid) and `computers|photo` (Amazon) through PyG.

One loader serves the five: they differ only in PyG's class, folder and raw files. Raw files
are looked up in `dataset.root` (only there when it is set), else `$FEDPLAT_DATA_DIR/<group>`,
`../shared/data/<group>` and a copy made by an earlier run in the cache; found elsewhere they
are **copied** into the cache, because PyG writes its processed files next to the raw ones
and the user's (or the shared) folder must stay untouched. Without local files they download
into the cache only when `dataset.allow_download=true` (specs/datasets.md section 2.6).
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.base import GRAPH, DatasetInfo
from fedplat.data.graphs import RawGraph, graph_spec
from fedplat.data.provenance import DataSource, package_version
from fedplat.errors import UserError


@dataclass(frozen=True)
class PygSource:
    """Where PyG keeps one dataset: its loader, folder names and raw files."""

    loader: str  # "planetoid" | "amazon"
    pyg_name: str  # name passed to the PyG class
    folder: str  # searched as <dir>/<folder>/raw/
    raw_files: tuple[str, ...]
    num_features: int
    num_classes: int
    group: str  # subdirectory of the data roots ("planetoid", "amazon")


def _planetoid(name: str, key: str, feats: int, classes: int) -> PygSource:
    files = tuple(f"ind.{key}.{s}" for s in ("x", "y", "tx", "ty", "allx", "ally", "graph",
                                               "test.index"))
    return PygSource("planetoid", name, name, files, feats, classes, "planetoid")


PYG_SOURCES: dict[str, PygSource] = {
    "cora": _planetoid("Cora", "cora", 1433, 7),
    "citeseer": _planetoid("CiteSeer", "citeseer", 3703, 6),
    "pubmed": _planetoid("PubMed", "pubmed", 500, 3),
    "computers": PygSource("amazon", "Computers", "Computers",
                           ("amazon_electronics_computers.npz",), 767, 10, "amazon"),
    "photo": PygSource("amazon", "Photo", "Photo", ("amazon_electronics_photo.npz",), 745, 8,
                       "amazon"),
}


def _raw_dir(src: PygSource, ds: DictConfig) -> Path | None:
    """The first folder holding all raw files: <d>/<Name>/raw, <d>/<Name> or <d> itself."""
    for d in sources.candidate_dirs(src.group, ds.get("root") or None):
        for cand in (d / src.folder / "raw", d / src.folder, d / "raw", d):
            if all((cand / f).is_file() for f in src.raw_files):
                return cand
    return None


def _searched(src: PygSource, ds: DictConfig) -> str:
    """The folders looked in for `src`'s raw files, for error lines."""
    return ", ".join(str(d) for d in sources.candidate_dirs(src.group, ds.get("root") or None))


def _require_pyg(what: str) -> None:
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs PyTorch Geometric: pip install 'fedplat[graph]'") from None


def load_pyg(src: PygSource, ds: DictConfig, cache: Path) -> RawGraph:
    """Raw (x, y, edge_index) through PyG, processed inside the cache only."""
    _require_pyg(f"dataset '{ds.name}'")
    root = cache / src.group
    target = root / src.folder / "raw"
    found = _raw_dir(src, ds)
    have_cached = all((target / f).is_file() for f in src.raw_files)
    if found is not None and found.resolve() != target.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for f in src.raw_files:
            if not (target / f).is_file() or \
                    (target / f).stat().st_size != (found / f).stat().st_size:
                shutil.copyfile(found / f, target / f)
    elif found is None and (ds.get("root") or not have_cached) and \
            not ds.get("allow_download", False):
        raise UserError(f"{src.pyg_name} raw files not found in [{_searched(src, ds)}] (as "
                        f"<dir>/{src.folder}/raw/: {', '.join(src.raw_files)}); set "
                        "dataset.root=DIR or dataset.allow_download=true on a machine that "
                        "is online")
    try:
        if src.loader == "planetoid":
            from torch_geometric.datasets import Planetoid

            data = Planetoid(str(root), src.pyg_name)[0]
        else:
            from torch_geometric.datasets import Amazon

            data = Amazon(str(root), src.pyg_name)[0]
    except (OSError, ValueError, EOFError) as exc:  # offline download, corrupt pickle, ...
        raise UserError(f"could not load {src.pyg_name} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}) from {target}; "
                        f"folders searched: [{_searched(src, ds)}]; provide fresh raw files "
                        f"({', '.join(src.raw_files)}) in dataset.root or check the "
                        "network") from None
    read = found if found is not None else target
    files = tuple(str(read / f) for f in src.raw_files if (read / f).is_file())
    origin = DataSource(__name__, "pyg-raw", f"from {read}", files,
                        package_version("torch_geometric"),
                        details={"pyg_class": src.loader, "pyg_name": src.pyg_name})
    return RawGraph(data.x.numpy().astype(np.float32), data.y.numpy().astype(np.int64),
                    data.edge_index.numpy().astype(np.int64), src.num_classes, source=origin)


#: Nodes of each published graph (before `dataset.lcc` keeps its largest component).
PYG_NUM_NODES: dict[str, int] = {"cora": 2708, "citeseer": 3327, "pubmed": 19717,
                                 "computers": 13752, "photo": 7650}


def declared(name: str, ds: DictConfig) -> DatasetInfo:
    """A graph's info without reading its files: features and classes, all its nodes."""
    src = PYG_SOURCES[name]
    return DatasetInfo(name, (src.num_features,), src.num_classes, GRAPH, PYG_NUM_NODES[name])


SPECS = tuple(graph_spec(name, functools.partial(load_pyg, src),
                         declared=functools.partial(declared, name))
              for name, src in PYG_SOURCES.items())
