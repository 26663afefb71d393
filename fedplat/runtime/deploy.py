"""A SuperLink and N SuperNodes on loopback: the deployment path, runnable on one machine.

`LoopbackFederation` starts the SuperLink (deployment mode, not simulation) as the README
deploys it, with `fedplat-superlink` (`fedplat.runtime.superlink`): the Control API on
127.0.0.1, the Fleet API alone on `fleet_host` (another loopback address in tests, to tell the
two apart). It starts one `flower-supernode` per client on random free ports, optionally with
TLS and SuperNode authentication (keys from `fedplat.runtime.certs`), and runs fedplat's apps on
them with `flwr run`, exactly as on real devices. Every process it starts (and their children,
such as the SuperExec processes Flower spawns) is ended when the context exits, also on failure.

    with LoopbackFederation(Path("deploy"), num_nodes=2) as fed:
        fed.run("strategy=fedavg num_rounds=2 num_clients=2", Path("/abs/results"))
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from fedplat.runtime import certs

#: The source checkout whose pyproject.toml declares the Flower app (`flwr run` packs it).
APP_DIR = Path(__file__).resolve().parents[2]
CONNECTION = "fedplat-loopback"


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Listening:
    """One listening TCP socket of a process: which process, which address, which port."""

    pid: int
    name: str
    ip: str
    port: int


def listening(pids: list[int]) -> list[Listening]:
    """The listening TCP sockets of processes `pids` and all their children, now.

    What a deployment or a simulation exposes is what its processes listen on: this reads it
    from the kernel (psutil), not from the command lines or the logs.
    """
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for p in (root, *root.children(recursive=True)):
                procs[p.pid] = p
    found = []
    for pid, p in sorted(procs.items()):
        with contextlib.suppress(psutil.Error):
            name = p.name()
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.append(Listening(pid, name, str(c.laddr.ip), int(c.laddr.port)))
    return found


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class LoopbackFederation:
    """SuperLink + SuperNodes on 127.0.0.1 (see module docstring)."""

    workdir: Path
    num_nodes: int
    tls: bool = False
    auth: bool = False
    app_dir: Path = APP_DIR
    startup_timeout_s: float = 90.0
    port: int = 0
    #: Where the SuperNodes connect: the Fleet API's address (port chosen at start).
    fleet_host: str = "127.0.0.1"
    fleet_port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    certs: certs.DeploymentCerts | None = None

    # -- set-up --------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for Flower commands: own FLWR_HOME, offline, this venv first on PATH."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, "FLWR_HOME": str(self.workdir / "flwr-home"), "PATH": path,
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("wb")
        proc = subprocess.Popen(args, cwd=self.workdir, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        """Text of one process log (superlink.log, node-<i>.log)."""
        path = self.workdir / name
        return path.read_text(errors="replace") if path.is_file() else ""

    def _tls_args(self, server: bool) -> list[str]:
        if not self.tls:
            return ["--insecure"]
        assert self.certs is not None
        if server:
            return ["--ssl-ca-certfile", str(self.certs.ca_cert), "--ssl-certfile",
                    str(self.certs.server_cert), "--ssl-keyfile", str(self.certs.server_key)]
        return ["--root-certificates", str(self.certs.ca_cert)]

    def start(self) -> None:
        """Start the SuperLink, register node keys (auth), start the SuperNodes."""
        if self.auth and not self.tls:
            raise ValueError("SuperNode authentication needs TLS (tls=True)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "flwr-home"
        home.mkdir(exist_ok=True)
        if self.tls:
            # one spare key pair: tests use it as an unregistered node
            self.certs = certs.generate(self.workdir / "certs",
                                        list(dict.fromkeys(["127.0.0.1", self.fleet_host])),
                                        self.num_nodes + 1)
        self.port = free_port()
        self.fleet_port = free_port()
        security = (f'root-certificates = "{self.certs.ca_cert}"' if self.certs
                    else "insecure = true")
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}\n')
        args = [sys.executable, "-m", "fedplat.runtime.superlink", *self._tls_args(server=True),
                "--control-address", f"127.0.0.1:{self.port}",
                "--fleet-address", f"{self._fleet_host_port()}"]
        if self.auth:
            args.append("--enable-supernode-auth")
        link = self._spawn(args, "superlink.log")
        self._wait_for_port(link)
        for i in range(self.num_nodes):
            if self.auth:
                self.register(i)
            self.start_node(i)

    def _fleet_host_port(self) -> str:
        host = f"[{self.fleet_host}]" if ":" in self.fleet_host else self.fleet_host
        return f"{host}:{self.fleet_port}"

    def _wait_for_port(self, link: subprocess.Popen[bytes]) -> None:
        deadline = time.time() + self.startup_timeout_s
        wanted = [("127.0.0.1", self.port), (self.fleet_host, self.fleet_port)]
        while time.time() < deadline:
            if link.poll() is not None:
                raise RuntimeError(f"the SuperLink exited: {self.log('superlink.log')[-2000:]}")
            while wanted:
                host, port = wanted[0]
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family) as s:
                    if s.connect_ex((host, port)) != 0:
                        break
                wanted.pop(0)
            if not wanted:
                return
            time.sleep(0.3)
        raise RuntimeError(f"the SuperLink did not open ports {self.port} and "
                           f"{self.fleet_port} within {self.startup_timeout_s:.0f} s")

    def register(self, key_index: int) -> None:
        """`flwr supernode register` the public key of node key pair `key_index`."""
        assert self.certs is not None
        pub = self.certs.node_keys[key_index][1]
        done = subprocess.run([_bin("flwr"), "supernode", "register", str(pub), CONNECTION],
                              cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"registering {pub} failed: {done.stdout}{done.stderr}")

    def start_node(self, partition_id: int, key_index: int | None = None,
                   extra_config: str = "") -> subprocess.Popen[bytes]:
        """Start one SuperNode serving client `partition_id` (auth key `key_index`)."""
        config = f"partition-id={partition_id} num-partitions={self.num_nodes} {extra_config}"
        args = [_bin("flower-supernode"), *self._tls_args(server=False), "--superlink",
                self._fleet_host_port(), "--port", str(free_port()),
                "--node-config", config.strip()]
        if self.auth:
            assert self.certs is not None
            key = self.certs.node_keys[partition_id if key_index is None else key_index][0]
            args += ["--auth-supernode-private-key", str(key)]
        name = f"node-{partition_id}" + (f"-key{key_index}" if key_index is not None else "")
        return self._spawn(args, f"{name}.log")

    # -- running -------------------------------------------------------------------------------

    def run(self, overrides: str, output_dir: Path,
            timeout_s: float = 900.0) -> subprocess.CompletedProcess[str]:
        """`flwr run` fedplat's apps on this federation with Hydra-style `overrides`."""
        run_config = f'overrides="{overrides}" output-dir="{Path(output_dir).resolve()}"'
        return subprocess.run(
            [_bin("flwr"), "run", str(self.app_dir), CONNECTION, "--stream", "--run-config",
             run_config], cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=timeout_s)

    # -- tear-down -----------------------------------------------------------------------------

    def stop(self) -> None:
        """End every started process and its children (SuperExec, ClientApp processes)."""
        victims: list[psutil.Process] = []
        for proc in self.procs:
            try:
                parent = psutil.Process(proc.pid)
                victims += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for p in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(victims, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> LoopbackFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
