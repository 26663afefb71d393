"""`dataset=wisdm`: WISDM v1.1 transformed (a local ARFF file), 36 users, per-user test parts.

The file's header is not valid ARFF, so it is parsed by hand here; every sample keeps its user
id, so `partition=natural` can give one client per user.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data import sources
from fedplat.data.base import DatasetInfo, DatasetSpec, RawDataset, check_via_info
from fedplat.data.provenance import DataSource
from fedplat.errors import UserError

WISDM_FILE = "WISDM_ar_v1.1_transformed.arff"
#: The global label map: activities in the order of the dataset's description.
WISDM_CLASSES = ("Walking", "Jogging", "Upstairs", "Downstairs", "Sitting", "Standing")
#: Columns with missing values ('?', 615 in all although the description says none).
WISDM_PEAKS = ("XPEAK", "YPEAK", "ZPEAK")
#: Constant 0 in every row: standardising it would divide by zero.
WISDM_CONSTANT = ("XAVG",)


@dataclass(frozen=True)
class WisdmTable:
    """The parsed ARFF: 43 feature columns (NaN where the file says '?'), labels and users."""

    features: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    users: np.ndarray


def parse_wisdm_arff(text: str, source: str = "WISDM file") -> WisdmTable:
    """Parse WISDM's transformed ARFF by hand.

    Its header is not valid ARFF (`@attribute "user"` and `@attribute class` have no type), so
    scipy's and liac-arff's readers reject it. Rows are the comma-separated lines after `@data`.
    """
    names: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if not in_data:
            if low.startswith("@attribute"):
                parts = line.split(None, 2)
                names.append(parts[1].strip('"\'') if len(parts) > 1 else "")
            elif low.startswith("@data"):
                in_data = True
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(names):
            raise UserError(f"corrupt {source}: line {number} has {len(values)} values, the "
                            f"header names {len(names)}; provide a fresh copy")
        rows.append(values)
    needed = ("UNIQUE_ID", "user", "class")
    if not rows or any(n not in names for n in needed):
        raise UserError(f"corrupt {source}: no @data rows or no UNIQUE_ID/user/class "
                        "attributes; provide a fresh copy")
    table = np.array(rows, dtype=object)
    feats = tuple(n for n in names if n not in needed)
    cols = [names.index(n) for n in feats]
    try:
        x = np.array([[np.nan if v == "?" else float(v) for v in r] for r in table[:, cols]],
                     dtype=np.float64)
        users = table[:, names.index("user")].astype(np.int64)
    except ValueError as exc:
        raise UserError(f"corrupt {source}: {exc}; provide a fresh copy") from None
    labels = table[:, names.index("class")]
    unknown = sorted(set(labels) - set(WISDM_CLASSES))
    if unknown:
        raise UserError(f"corrupt {source}: unknown activities {unknown[:3]}; expected "
                        f"{', '.join(WISDM_CLASSES)}")
    y = np.array([WISDM_CLASSES.index(v) for v in labels], dtype=np.int64)
    return WisdmTable(feats, x, y, users)


def _path(ds: DictConfig) -> Path:
    dirs = sources.candidate_dirs("wisdm", ds.get("root") or None)
    found = sources.find_files(dirs, (WISDM_FILE,))
    if found is None:
        raise UserError(f"WISDM v1.1 not found: put {WISDM_FILE} (WISDM Lab, Activity "
                        f"Prediction v1.1) in one of [{', '.join(str(d) for d in dirs)}] or "
                        "set dataset.root=DIR")
    return sources.resolve_file(found, WISDM_FILE)


@functools.lru_cache(maxsize=4)
def _table(path: str, mtime_ns: int, size: int) -> WisdmTable:
    p = Path(path)
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        text = raw.decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {p}: {exc}; provide a fresh copy") from None
    return parse_wisdm_arff(text, str(p))


def wisdm_table(ds: DictConfig) -> WisdmTable:
    """The parsed WISDM file named by the config (parsed once per process and file version)."""
    path = _path(ds)
    st = path.stat()
    return _table(str(path), st.st_mtime_ns, st.st_size)


def stratified_group_split(y: np.ndarray, groups: np.ndarray, test_fraction: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Boolean test mask: within every (group, class), round(f * count) random samples.

    Stratified where possible: a class a user has once stays in training (round(f) = 0 for
    f < 0.5), so some users' test splits lack classes they train on.
    """
    test = np.zeros(len(y), dtype=bool)
    for g in np.unique(groups):
        for c in np.unique(y[groups == g]):
            idx = rng.permutation(np.flatnonzero((groups == g) & (y == c)))
            test[idx[:math.floor(test_fraction * len(idx) + 0.5)]] = True
    return test


def _settings(ds: DictConfig) -> tuple[float, str]:
    f = ds.get("test_fraction", 0.3)
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
        raise UserError(f"dataset.test_fraction={f!r} must be in (0, 1)")
    missing = ds.get("missing", "impute")
    if missing not in ("impute", "drop"):
        raise UserError(f"dataset.missing={missing!r} is not valid (choose from: impute, drop)")
    seed = ds.get("split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"dataset.split_seed={seed!r} must be an integer >= 0")
    return float(f), str(missing)


def _columns(table: WisdmTable, missing: str) -> list[int]:
    drop = set(WISDM_CONSTANT) | (set(WISDM_PEAKS) if missing == "drop" else set())
    return [i for i, n in enumerate(table.features) if n not in drop]


def info(ds: DictConfig) -> DatasetInfo:
    """Feature count after dropping columns, 6 activities, samples and users of the file."""
    _, missing = _settings(ds)
    table = wisdm_table(ds)
    return DatasetInfo("wisdm", (len(_columns(table, missing)),), len(WISDM_CLASSES),
                       "vector", len(table.y), num_groups=len(np.unique(table.users)))


#: WISDM v1.1 transformed as published: feature columns, rows and users.
WISDM_SHAPE = (43, 5418, 36)


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without reading the file: the published table's columns, rows and users."""
    _, missing = _settings(ds)
    dropped = len(WISDM_CONSTANT) + (len(WISDM_PEAKS) if missing == "drop" else 0)
    features, rows, users = WISDM_SHAPE
    return DatasetInfo("wisdm", (features - dropped,), len(WISDM_CLASSES), "vector", rows,
                       num_groups=users)


def load(ds: DictConfig, cache: Path) -> RawDataset:
    """Per-user stratified train/test parts; imputation and scaling fit on the train part.

    The test part is a `dataset.test_fraction` share of every (user, activity), drawn with
    `dataset.split_seed` (fixed across run seeds, like an official test set). Missing PEAK
    values get the training part's column median (`missing=impute`) or the three PEAK columns
    are dropped (`missing=drop`); XAVG (constant) is always dropped. One standardisation
    (training part's per-column mean and std) applies to every split and every client.
    """
    fraction, missing = _settings(ds)
    table = wisdm_table(ds)
    x = table.x[:, _columns(table, missing)]
    rng = np.random.default_rng(int(ds.get("split_seed", 0)))
    test = stratified_group_split(table.y, table.users, fraction, rng)
    train = ~test
    median = np.nanmedian(x[train], axis=0)
    x = np.where(np.isnan(x), median, x)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    path = _path(ds)
    origin = DataSource(__name__, "arff", f"from {path}", (str(path),),
                        details={"test_fraction": fraction, "missing": missing,
                                 "split_seed": int(ds.get("split_seed", 0))})
    return RawDataset(info(ds), x[train], table.y[train], x[test], table.y[test],
                      table.users[train], table.users[test], source=origin)


SPECS = (DatasetSpec("wisdm", info, check_via_info(info), load, declared),)
