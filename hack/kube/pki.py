"""The harness's certificates, made with the openssl command (already a CI prerequisite): a CA
and leaf certificates it signs, for the kubelet's client authentication and for the ingress
controller's HTTPS. Nothing here is for production use."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Long enough that `kubectl joyn test-connection` (which warns under 14 days, as it should for
# a real certificate) does not warn about the demo's and the tests' certificates, which are
# made anew for every cluster anyway: the life of a public ACME certificate.
DAYS = "90"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str, common_name: str, days: str = DAYS) -> tuple[Path, Path]:
    """A self-signed CA valid for DAYS: (certificate, key) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", days,
             "-subj", f"/CN={common_name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key.chmod(0o600)
    return cert, key


def issue(ca: tuple[Path, Path], folder: Path, name: str, common_name: str, *,
          organization: str | None = None, dns: tuple[str, ...] = (),
          client: bool = False, days: str = DAYS) -> tuple[Path, Path]:
    """A certificate signed by `ca`: a server certificate for `dns`, or a client certificate
    (CN = user, O = group, the way the API server reads them). (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject)
    ext = folder / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
    if dns:
        lines.append("subjectAltName=" + ",".join(f"DNS:{d}" for d in dns))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", days, "-extfile", str(ext))
    key.chmod(0o600)
    csr.unlink()
    ext.unlink()
    return cert, key
