import time

import pytest

from fedplat.transport import faults
from tests.helpers import make_cfg


def test_dropout_is_seeded_and_near_its_rate():
    cfg = make_cfg("faults.dropout_prob=0.3")
    a = [faults.dropped(cfg, r, list(range(100))) for r in range(1, 6)]
    b = [faults.dropped(cfg, r, list(range(100))) for r in range(1, 6)]
    assert a == b
    rate = sum(len(x) for x in a) / 500
    assert 0.2 < rate < 0.4
    assert faults.dropped(make_cfg(), 1, list(range(10))) == []


def test_crash_and_straggler_injection():
    with pytest.raises(faults.InjectedFault, match="client 3"):
        faults.inject(make_cfg("faults.crash_clients=[3]"), 3, 1)
    faults.inject(make_cfg("faults.crash_clients=[3]"), 2, 1)  # others are fine
    cfg = make_cfg("faults.slow_clients=[1]", "faults.slow_delay_s=0.2")
    assert faults.inject(cfg, 1, 1) == 0.2  # the straggler's delay, for the node to count
    assert faults.inject(cfg, 0, 1) == 0.0


def test_a_straggler_is_held_for_its_delay_but_never_past_the_deadline():
    t0 = time.perf_counter()
    faults.hold(0.2, None)
    assert time.perf_counter() - t0 >= 0.2
    t0 = time.perf_counter()
    faults.hold(5.0, 0.1)  # late anyway: held only until the deadline
    assert 0.1 <= time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("bad", ["faults.dropout_prob=1.5", "faults.slow_delay_s=-1",
                                 "faults.slow_clients=[99]"])
def test_fault_settings_are_validated(bad):
    from fedplat.errors import UserError

    with pytest.raises(UserError):
        make_cfg(bad)
