"""`fedplat-certs`: a CA, a SuperLink certificate and SuperNode key pairs for a deployment.

    fedplat-certs certs/ --host 192.168.1.10 --host superlink.lab --nodes 3

writes `ca.crt`/`ca.key` (the CA: keep `ca.key` offline), `server.pem`/`server.key` (the
SuperLink's TLS certificate, valid for every --host, plus localhost and 127.0.0.1) and
`node-<i>`/`node-<i>.pub` (one EC P-384 key pair per SuperNode in OpenSSH format, the form that
`flwr supernode register` and `flower-supernode --auth-supernode-private-key` take). Flower's
own docs use openssl/ssh-keygen scripts for this; this does the same in Python so tests and
users on machines without those tools get identical files. Every certificate, key and encoding
is the `cryptography` package's (X.509 builder, PEM and OpenSSH serialisation, which Flower
itself depends on): nothing here writes ASN.1 or key formats by hand.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class DeploymentCerts:
    """Paths of the generated files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: list[tuple[Path, Path]]  # (private, public) per SuperNode


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedplat")])


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def node_key_pair(private_path: Path, public_path: Path) -> None:
    """One SuperNode authentication key pair (EC P-384, OpenSSH encoding)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                          serialization.PublicFormat.OpenSSH))


def generate(out_dir: Path, hosts: Sequence[str] = (), num_nodes: int = 0,
             days: int = 365) -> DeploymentCerts:
    """Write a CA, a server certificate for `hosts` and `num_nodes` node key pairs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fedplat deployment CA")).issuer_name(_name("fedplat deployment CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else "localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(ca_key, out / "ca.key")
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, out / "server.key")
    (out / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    nodes = []
    for i in range(num_nodes):
        pair = (out / f"node-{i}", out / f"node-{i}.pub")
        node_key_pair(*pair)
        nodes.append(pair)
    return DeploymentCerts(out / "ca.crt", out / "server.pem", out / "server.key", nodes)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `fedplat-certs`: exit 0 done, 2 bad input (one line)."""
    from fedplat.config.diagnose import OneLineParser, check_host, check_output_dir
    from fedplat.errors import UserError

    parser = OneLineParser(prog="fedplat-certs", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--host", action="append", default=[],
                        help="SuperLink host name or IP the SuperNodes connect to (repeatable)")
    parser.add_argument("--nodes", type=int, default=0, help="SuperNode key pairs to create")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args(argv)
    if args.nodes < 0 or args.days < 1:
        print("fedplat-certs: error: --nodes must be >= 0 and --days >= 1", file=sys.stderr)
        raise SystemExit(2)
    try:
        hosts = [check_host(h, "--host") for h in args.host]
        check_output_dir(args.out_dir, "OUT_DIR")
        made = generate(args.out_dir, hosts, args.nodes, args.days)
    except UserError as exc:
        print(f"fedplat-certs: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"fedplat-certs: error: cannot write in {args.out_dir} ({exc.strerror}: "
              f"{exc.filename}); choose a directory you can write to", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"CA certificate      {made.ca_cert}  (give to every SuperNode and flwr CLI user)")
    print(f"SuperLink TLS       {made.server_cert}, {made.server_key}")
    for priv, pub in made.node_keys:
        print(f"SuperNode key pair  {priv} (stays on the device), {pub} (register it)")


if __name__ == "__main__":
    main()
