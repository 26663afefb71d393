import torch

from fedplat.core import seeding


def test_streams_are_stable_and_distinct():
    assert seeding.derive_seed(0, 1, 2) == seeding.derive_seed(0, 1, 2)
    assert seeding.derive_seed(0, 1, 2) != seeding.derive_seed(0, 2, 1)
    assert seeding.derive_seed(0, 1) != seeding.derive_seed(1, 1)
    assert 0 <= seeding.derive_seed(123, 4) < 2**63
    a = seeding.rng(5, seeding.SAMPLING, 3).random(4)
    b = seeding.rng(5, seeding.SAMPLING, 3).random(4)
    assert (a == b).all()
    g1 = torch.randperm(10, generator=seeding.torch_generator(1, 2))
    g2 = torch.randperm(10, generator=seeding.torch_generator(1, 2))
    assert torch.equal(g1, g2)
