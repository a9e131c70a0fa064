"""A Docker-distribution token issuer that behaves like Harbor's /service/token.

The registry is configured with `auth.token` pointing here. Like Harbor:
- a good credential gets a token whose `access` claim holds the granted actions;
- a bad credential *with* a scope is treated as anonymous (HTTP 200, a token
  with only the anonymous grants), not 401;
- a bad credential without a scope gets 401.
Run as `python -m urm_localcluster.tokenserver <config.json>`.
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import json
import secrets
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOKEN_LIFETIME = 300

# Per user: repository glob -> actions. "*" is an anonymous caller.
ACL: dict[str, dict[str, list[str]]] = {
    "researcher": {"aic-misc/*": ["pull", "push"], "library/*": ["pull"]},
    "lcadmin": {"*": ["pull", "push", "delete"]},
    "*": {"library/*": ["pull"]},
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def granted_actions(user: str, repository: str, wanted: list[str]) -> list[str]:
    allowed: set[str] = set()
    for pattern, actions in ACL.get(user, {}).items():
        if fnmatch.fnmatchcase(repository, pattern):
            allowed.update(actions)
    if "*" in wanted:
        return sorted(allowed)
    return [action for action in wanted if action in allowed]


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:aic-misc/img:pull,push` -> (type, name, actions)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class Issuer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.service = config["service"]
        self.issuer = config["issuer"]
        cert = x509.load_pem_x509_certificate(Path(config["signing_cert"]).read_bytes())
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        key = serialization.load_pem_private_key(
            Path(config["signing_key"]).read_bytes(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        self.users: dict[str, str] = json.loads(Path(config["credentials_file"]).read_text())[
            "registry_users"
        ]

    def authenticate(self, header: str | None) -> tuple[str | None, bool]:
        """-> (user or None, whether credentials were presented)."""
        if not header or not header.startswith("Basic "):
            return None, False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, True
        expected = self.users.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return user, True
        return None, True

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


class Handler(BaseHTTPRequestHandler):
    issuer: Issuer
    server_version = "urm-localcluster-token/1"

    def log_message(self, format: str, *args: Any) -> None:
        # Never log the query string's account or the Authorization header.
        sys.stderr.write(
            f"{self.log_date_time_string()} {self.command} {urlsplit(self.path).path} "
            f"{args[1] if len(args) > 1 else ''}\n"
        )

    def _reply(
        self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        # Harbor's /service/token is GET only (its beego controller answers POST with 405).
        # containerd tries the OAuth2 POST first and falls back to GET on 405 with a username;
        # http.server's default 501 would make it give up.
        self._reply(405, {"errors": [{"code": "UNSUPPORTED", "message": "Method Not Allowed"}]})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(200, {"ok": True})
            return
        if url.path != "/service/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        query = parse_qs(url.query)
        if query.get("service", [self.issuer.service])[0] != self.issuer.service:
            self._reply(400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
            return
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        user, presented = self.issuer.authenticate(self.headers.get("Authorization"))
        if user is None and presented and not scopes:
            self._reply(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                {"WWW-Authenticate": 'Basic realm="urm-localcluster"'},
            )
            return
        subject = user or "anonymous"
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed[0] != "repository":
                continue
            kind, name, wanted = parsed
            access.append(
                {"type": kind, "name": name, "actions": granted_actions(user or "*", name, wanted)}
            )
        token = self.issuer.token(subject, access)
        self._reply(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    Handler.issuer = Issuer(config)
    server = ThreadingHTTPServer(("127.0.0.1", int(config["port"])), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["tls_cert"], config["tls_key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
