"""One run seed, many independent streams.

Every random choice in fedplat draws from a generator derived from `(seed, stream, *ids)`, e.g.
`(seed, SAMPLING, round)` or `(seed, CLIENT, round, client_id)`. Results therefore do not depend
on which Ray worker ran a client, in which order replies arrived, or whether a run was resumed:
the same config gives the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

PARTITION = 1
SPLIT = 2
SAMPLING = 3
INIT = 4
CLIENT = 5
FAULTS = 6
SCENARIO = 7
CAPTURE = 8
LABELS = 9
#: `dataset.max_samples`'s subset (keyed by the cap, not the run seed).
SUBSET = 10


def derive_seed(seed: int, *ids: int) -> int:
    """A 63-bit seed that is a stable function of `(seed, *ids)`."""
    state = np.random.SeedSequence([int(seed), *(int(i) for i in ids)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def rng(seed: int, *ids: int) -> np.random.Generator:
    """A numpy generator for the stream `(seed, *ids)`."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(i) for i in ids)]))


def torch_generator(seed: int, *ids: int) -> torch.Generator:
    """A CPU torch generator for the stream `(seed, *ids)` (batch order, masks, ...)."""
    return torch.Generator().manual_seed(derive_seed(seed, *ids))


def seed_torch(seed: int, *ids: int) -> None:
    """Seed torch's global RNG (weight init, dropout) for the stream `(seed, *ids)`.

    The CPU generator, plus every CUDA device's when CUDA exists. Not `torch.manual_seed`: on a
    machine without CUDA it still queues a lazy CUDA seeding that captures a stack trace each
    call (about 3 ms), which a node serving many clients pays several times per client.
    """
    value = derive_seed(seed, *ids)
    torch.default_generator.manual_seed(value)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(value)
