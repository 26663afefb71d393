"""Network addresses: the one loopback test of the deployment helpers and the Ray launcher."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback interface.

    127.0.0.0/8, ::1 (with or without brackets), `localhost`, or 127.x mapped into IPv6
    (`::ffff:127.0.0.1`, how Ray's gRPC servers bind). Any other name is not: it may resolve
    anywhere.
    """
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
