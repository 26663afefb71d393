"""The one loopback test of the deployment helpers and the Ray launcher."""

import pytest

from fedplat.runtime.net import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost",
                                  "::ffff:127.0.0.1"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.0.2.2", "::ffff:10.0.0.5",
                                  "example.org", "", "not a host!"])
def test_other_addresses_and_names_are_not(host):
    assert not is_loopback(host)
