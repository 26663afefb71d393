"""`fedplat-superlink`: Flower's SuperLink with its Control API on loopback only.

    fedplat-superlink --fleet-address 0.0.0.0:9092 --control-address 127.0.0.1:9093
        --ssl-ca-certfile certs/ca.crt --ssl-certfile certs/server.pem
        --ssl-keyfile certs/server.key --enable-supernode-auth

Why: Flower 1.41's `flower-superlink` serves three APIs from one HTTP server on one `--host`
and `--port`: the Fleet API (`/v1/fleet/*`, what SuperNodes call), the Control API
(`/v1/control/*`: `flwr run`, `flwr supernode register`, `flwr ls`, `flwr stop`) and the Runtime
API (`/v1/runtime/*`, what the ServerApp process uses). The Control API has no authentication
in the open-source build (its authentication plugin is a no-op): whoever reaches that port,
and holds the CA certificate when TLS is on, can register a SuperNode key and submit or stop a
run. With one port, exposing the Fleet API to devices exposes the Control API too.

This command runs the very same SuperLink application (Flower's `create_app` with Flower's own
argument parsing, state and SuperExec) on two sockets: `--control-address`, which must be a
loopback address, serves every API; `--fleet-address`, where SuperNodes connect, answers only
`/v1/fleet/*` and refuses everything else with 404 before it reaches Flower. The operator
runs `flwr` on the server machine or through an SSH tunnel. Every other option is
`flower-superlink`'s and is passed on unchanged. flwr is pinned (==1.41.0): the entry points
used here (`_parse_superlink_lifespan_config`, `SuperLinkLifespan`) are internal.
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fedplat.errors import UserError
from fedplat.runtime.net import is_loopback

#: The only path prefix the Fleet address serves.
FLEET_PREFIX = "/v1/fleet/"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FleetOnlyOnPort:
    """ASGI wrapper: requests that arrive on `fleet_port` reach only the Fleet API.

    The port a request arrived on is the listening socket's (`scope["server"]`, set by uvicorn
    from the connection), so the Control API cannot be reached through the Fleet address
    whatever the request says.
    """

    def __init__(self, app: ASGIApp, fleet_port: int) -> None:
        self.app = app
        self.fleet_port = fleet_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass Fleet requests (and lifespan events) on; answer anything else with 404."""
        server = scope.get("server") or (None, None)
        on_fleet = scope["type"] in ("http", "websocket") and server[1] == self.fleet_port
        if on_fleet and not str(scope.get("path", "")).startswith(FLEET_PREFIX):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = b"not served on the Fleet address\n"
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def split_address(text: str, option: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) into (host, port); one line on a malformed value."""
    host, sep, port = text.strip().rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not bare or not port.isdigit() or not 1 <= int(port) <= 65535 or \
            (":" in bare and not host.startswith("[")):
        raise UserError(f"{option}={text}: expected HOST:PORT with a port in 1..65535 "
                        "(IPv6 in brackets, e.g. [::1]:9093)")
    return bare, int(port)


def bind(host: str, port: int, option: str) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"{option}={host}:{port}: cannot listen there ({exc.strerror}); "
                        "choose a free port on an address of this machine") from exc
    sock.set_inheritable(True)
    return sock


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split fedplat's two options from the rest, which are flower-superlink's."""
    parser = argparse.ArgumentParser(
        prog="fedplat-superlink",
        description="Flower's SuperLink with the Control API on loopback and only the Fleet "
                    "API on the devices' address. Other options are flower-superlink's.")
    parser.add_argument("--fleet-address", required=True,
                        help="HOST:PORT where SuperNodes connect (e.g. 0.0.0.0:9092, or the "
                             "address of the interface facing the devices)")
    parser.add_argument("--control-address", default="127.0.0.1:9093",
                        help="loopback HOST:PORT of the Control and Runtime APIs (flwr run, "
                             "flwr supernode register; the ServerApp); default %(default)s")
    args, rest = parser.parse_known_args(list(argv))
    for flag in ("--host", "--port", "--fleet-api-address", "--control-api-address"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            raise UserError(f"{flag} is not used here; give "
                            "--control-address (loopback) and --fleet-address instead")
    if "--simulation" in rest:
        raise UserError("--simulation has no Fleet API to expose; run "
                        "flower-superlink --simulation directly")
    return args, rest


def serve(argv: Sequence[str]) -> None:
    """Check the addresses, then run Flower's SuperLink on the two sockets (blocks)."""
    import uvicorn
    from flwr.supercore.http_logging import get_uvicorn_log_config
    from flwr.supercore.logger import console_handler
    from flwr.superlink.main import create_app

    # the module, not the function of the same name that flwr.superlink.cli exports
    flwr_link = importlib.import_module("flwr.superlink.cli.flower_superlink")

    args, rest = parse(argv)
    control_host, control_port = split_address(args.control_address, "--control-address")
    fleet_host, fleet_port = split_address(args.fleet_address, "--fleet-address")
    if not is_loopback(control_host):
        raise UserError(f"--control-address={args.control_address}: the Control API has no "
                        "authentication, keep it on loopback (127.0.0.1 or [::1]) and reach it "
                        "over SSH (README, Deployment)")
    if fleet_port == control_port:
        raise UserError(f"--fleet-address={args.fleet_address} and --control-address="
                        f"{args.control_address} need different ports")
    control = bind(control_host, control_port, "--control-address")
    try:
        sockets = [control, bind(fleet_host, fleet_port, "--fleet-address")]
    except UserError:
        control.close()
        raise
    sys.argv = ["flower-superlink", *rest, "--host", control_host, "--port", str(control_port)]
    config = flwr_link._parse_superlink_lifespan_config()
    app = create_app(config, flwr_link.SuperLinkLifespan)
    print(f"fedplat-superlink: Control and Runtime APIs on {args.control_address} (loopback), "
          f"Fleet API only on {args.fleet_address}", flush=True)
    server = uvicorn.Server(uvicorn.Config(
        FleetOnlyOnPort(app, fleet_port), host=control_host, port=control_port, reload=False,
        access_log=True, log_config=get_uvicorn_log_config(console_handler.level),
        ssl_keyfile=config.ssl_keyfile, ssl_certfile=config.ssl_certfile, workers=1))
    server.run(sockets=sockets)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `fedplat-superlink`: bad input is one line and exit code 2."""
    try:
        serve(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"fedplat-superlink: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
