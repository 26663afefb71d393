"""`fedplat-certs`: the CA, the SuperLink certificate and the SuperNode key pairs it writes."""

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fedplat.runtime import certs


def test_certificates_are_valid_for_the_hosts(tmp_path):
    made = certs.generate(tmp_path, ["10.1.2.3", "link.example"], num_nodes=2, days=30)
    cert = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["link.example", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3",
                                                                            "127.0.0.1"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "10.1.2.3"
    ca = x509.load_pem_x509_certificate(made.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=30, minutes=5)


def test_keys_are_private_and_in_the_forms_flower_takes(tmp_path):
    made = certs.generate(tmp_path, num_nodes=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt", "ca.key", "node-0", "node-0.pub", "node-1", "node-1.pub", "server.key",
        "server.pem"]
    for path in (tmp_path / "ca.key", made.server_key, made.node_keys[0][0]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    server_key = serialization.load_pem_private_key(made.server_key.read_bytes(), None)
    assert isinstance(server_key, rsa.RSAPrivateKey) and server_key.key_size == 2048
    cert = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    assert cert.public_key() == server_key.public_key()
    private, public = made.node_keys[1]
    node_key = serialization.load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(node_key, ec.EllipticCurvePrivateKey)
    assert node_key.curve.name == "secp384r1"
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert serialization.load_ssh_public_key(public.read_bytes()) == node_key.public_key()
    assert made.node_keys[0][1].read_bytes() != public.read_bytes()  # one pair per node


def test_without_hosts_the_certificate_is_for_localhost(tmp_path):
    made = certs.generate(tmp_path)
    cert = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert made.node_keys == []


@pytest.mark.parametrize("args", [["--nodes", "-1"], ["--days", "0"]])
def test_cli_refuses_bad_counts_with_exit_2(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as info:
        certs.main([str(tmp_path / "out"), *args])
    assert info.value.code == 2
    assert "--nodes must be >= 0 and --days >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_writes_and_lists_the_files(tmp_path, capsys):
    certs.main([str(tmp_path), "--host", "link.example", "--nodes", "1"])
    out = capsys.readouterr().out
    assert f"CA certificate      {tmp_path / 'ca.crt'}" in out
    assert out.count("SuperNode key pair") == 1 and (tmp_path / "node-0.pub").is_file()
