"""The lab's own certificate authority, made with openssl, for registries that answer over TLS as public ones do.

A CA of its own (not in the machine's trust store, as a site registry's CA is not), server certificates signed by
it for loopback names and addresses, client certificates for tests that check nobody presents one where it must
not, and a key pair with a self-signed certificate for signing registry tokens (Distribution verifies tokens
against that certificate: `auth.token.rootcertbundle`).
"""
import ssl
import subprocess
from pathlib import Path


def _openssl(*args, cwd=None):
    proc = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), proc.stdout))
    return proc.stdout


class LabCA:
    """A CA in `directory` (made once): `cert` is the PEM clients must trust; `issue()` makes certificates."""

    def __init__(self, directory, name="llmops lab registry CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        if not self.cert.is_file():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", str(self.cert),
                     "-days", "30", "-subj", "/CN=%s" % name,
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name, dns=(), ips=(), client=False):
        """(certificate, key) paths for `name`, signed by this CA, with the given subject alternative names."""
        cert, key, csr = (self.dir / ("%s.%s" % (name, ext)) for ext in ("pem", "key", "csr"))
        if cert.is_file():
            return cert, key
        sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        ext = self.dir / ("%s.ext" % name)
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=%s" % ("clientAuth" if client else "serverAuth")]
        if sans:
            lines.append("subjectAltName=%s" % ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=%s" % name)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
                 "-out", str(cert), "-days", "30", "-extfile", str(ext))
        return cert, key

    def server_context(self, name, dns=("localhost",), ips=("127.0.0.1",), ask_client_cert=True):
        """A TLS server context with a certificate for `name`. It asks for (but does not require) a client
        certificate signed by this CA, so a test can see whether a client presented one."""
        cert, key = self.issue(name, dns, ips)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if ask_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(str(self.cert))
        return ctx


class SigningKey:
    """An RSA key and its self-signed certificate, for RS256 tokens that Distribution checks with the certificate."""

    def __init__(self, directory, name="llmops lab token issuer"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "token-signer.pem"
        self.key = self.dir / "token-signer.key"
        if not self.cert.is_file():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", str(self.cert),
                     "-days", "30", "-subj", "/CN=%s" % name)
        self._private = None

    def der_cert(self):
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(Encoding.DER)

    def sign(self, data):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if self._private is None:
            self._private = load_pem_private_key(self.key.read_bytes(), password=None)
        return self._private.sign(data, padding.PKCS1v15(), hashes.SHA256())
