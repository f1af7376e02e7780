"""Pairing and TLS for the network-facing teleop servers: nobody else on the lab network can drive the robot.

A server (the WebXR source) that takes operator input over the network:
- listens only on the configured interface (``check_bind_host``: the default is ``127.0.0.1``; a wildcard address,
  ``0.0.0.0`` / ``::`` / empty, only when it is asked for with ``allow_any=True``);
- makes a random session token at start (``new_token``) and shows it to the operator (the page URL carries it);
  it accepts a client only after the client presented the token (``token_matches``, a constant-time compare);
- talks TLS (``server_ssl_context``) with a given certificate and key, or a self-signed one made on the fly
  (``self_signed_cert``, needs ``cryptography``) whose SHA-256 fingerprint (``cert_fingerprint``) is printed so
  the operator can check what the browser shows before accepting it.

The Apple Vision Pro source is a gRPC *client* of the app on the headset: pairing and TLS there are the app's; our
side only connects to the one configured address.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import importlib
import ipaddress
import secrets
import socket
import ssl
import tempfile
from pathlib import Path

TOKEN_BYTES = 16  # 128 bits of randomness, url-safe base64 -> 22 characters
_WILDCARD = {"", "0.0.0.0", "::", "[::]", "*"}


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    """A fresh random session token (URL-safe)."""
    return secrets.token_urlsafe(nbytes)


def token_matches(presented: object, expected: str) -> bool:
    """True only when ``presented`` is exactly the session token (constant-time; a non-string never matches)."""
    if not isinstance(presented, str) or not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def check_bind_host(host: str | None, allow_any: bool = False) -> str:
    """The address to bind: ``host`` itself (default ``127.0.0.1``). A wildcard address (every interface) raises
    ValueError unless ``allow_any`` is given, so a server never listens on the whole lab network by accident."""
    host = "127.0.0.1" if host is None else str(host).strip()
    if host in _WILDCARD and not allow_any:
        raise ValueError(
            f"refusing to listen on every interface ({host!r}): give the one interface address the operator's "
            "headset reaches (e.g. the lab-network IP of this machine), or allow_any=True explicitly"
        )
    return host


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses that a socket can bind (best effort; for messages and tests)."""
    out: set[str] = {"127.0.0.1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            out.add(info[4][0])
    except OSError:
        pass
    try:  # the address of the default route, without sending anything
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            out.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(out)


def _require_cryptography():
    try:
        importlib.import_module("cryptography")
    except ImportError as e:  # pragma: no cover - cryptography is in requirements.txt
        raise ImportError(
            "making a self-signed TLS certificate needs 'cryptography' (pip install -r requirements.txt); "
            "or pass cert= and key= files"
        ) from e


def self_signed_cert(out_dir: str | Path | None = None, hosts: list[str] | tuple[str, ...] = ("127.0.0.1",),
                     days: int = 30) -> tuple[Path, Path]:
    """Makes a self-signed certificate (EC P-256) for ``hosts`` (IP addresses and/or DNS names as subject
    alternative names) and its key; writes ``cert.pem`` / ``key.pem`` (key mode 0600) into ``out_dir`` (a new
    temporary directory when None). Returns (cert_path, key_path)."""
    _require_cryptography()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="jala-teleop-tls-"))
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(list(hosts) + ["localhost"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"jala-teleop {hosts[0] if hosts else 'localhost'}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def cert_fingerprint(cert_path: str | Path) -> str:
    """SHA-256 fingerprint of a PEM certificate, as browsers show it (AA:BB:...)."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_ssl_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or newer) for ``cert`` / ``key``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx
