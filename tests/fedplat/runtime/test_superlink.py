"""fedplat-superlink: bad addresses are one line and exit 2; the Fleet port serves only Fleet."""

import asyncio

import pytest

from fedplat.runtime.superlink import FleetOnlyOnPort, main, split_address


@pytest.mark.parametrize("argv, message", [
    (["--fleet-address", "0.0.0.0:9092", "--control-address", "0.0.0.0:9093"],
     "--control-address=0.0.0.0:9093: the Control API has no authentication, keep it on "
     "loopback"),
    (["--fleet-address", "0.0.0.0:9092", "--control-address", "10.0.0.5:9093"],
     "--control-address=10.0.0.5:9093: the Control API has no authentication"),
    (["--fleet-address", "0.0.0.0:9093"],
     "--fleet-address=0.0.0.0:9093 and --control-address=127.0.0.1:9093 need different ports"),
    (["--fleet-address", "0.0.0.0"], "--fleet-address=0.0.0.0: expected HOST:PORT"),
    (["--fleet-address", "::1:9092"], "--fleet-address=::1:9092: expected HOST:PORT"),
    (["--fleet-address", "0.0.0.0:70000"], "--fleet-address=0.0.0.0:70000: expected HOST:PORT"),
    (["--fleet-address", "0.0.0.0:9092", "--host", "0.0.0.0"],
     "--host is not used here; give --control-address (loopback) and --fleet-address"),
    (["--fleet-address", "0.0.0.0:9092", "--port=8000"], "--port is not used here"),
    (["--fleet-address", "0.0.0.0:9092", "--simulation"], "--simulation has no Fleet API"),
])
def test_bad_addresses_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--insecure", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(f"fedplat-superlink: error: {message}"), err
    assert err.count("\n") == 1


def test_a_port_in_use_is_one_line(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["--insecure", "--fleet-address", "127.0.0.1:9", "--control-address",
                  f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(f"fedplat-superlink: error: --control-address=127.0.0.1:{port}: "
                          "cannot listen there (Address already in use); choose a free port")


def test_split_address_reads_ipv6_in_brackets():
    assert split_address("[::1]:9093", "--x") == ("::1", 9093)
    assert split_address(" 10.0.0.5:9092", "--x") == ("10.0.0.5", 9092)


def _call(app, port, path):
    """Status an ASGI app answers for one request that arrived on `port`."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "server": ("127.0.0.2", port), "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_only_fleet_paths_pass_on_the_fleet_port():
    async def flower(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = FleetOnlyOnPort(flower, fleet_port=9092)
    assert _call(app, 9092, "/v1/fleet/pull-messages") == 200
    for path in ("/v1/control/start-run", "/v1/runtime/get-nodes", "/health", "/docs",
                 "/v1/fleet", "/v1/fleetx/pull-messages"):
        assert _call(app, 9092, path) == 404, path
    # the Control port (loopback) serves every API
    assert _call(app, 9093, "/v1/control/start-run") == 200
