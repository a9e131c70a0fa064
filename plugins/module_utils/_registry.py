# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one container registry client of the collection (OCI distribution v2, Harbor flavour).

It pings ``/v2/``, follows the Basic or Bearer challenge (token flow with a per-scope cache),
checks credentials without a scope (Harbor answers a bad credential *with* a scope as anonymous),
reads the push grant from the token's ``access`` claim, and HEADs manifests. Later modules reuse
``RegistryClient.request`` for blob and manifest uploads.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import requests
except ImportError:  # pragma: no cover - reported by RegistryClient()
    requests = None  # type: ignore[assignment]

MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
MASK = "********"

# The registry connection options every registry-facing module takes (doc fragment registry_tls).
REGISTRY_TLS_ARG_SPEC: dict[str, dict[str, Any]] = {
    "registry_ca_cert": {"type": "path"},
    "registry_validate_certs": {"type": "bool", "default": True},
    "registry_timeout": {"type": "float", "default": 15.0},
}


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by the mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")]+")


class RegistryError(Exception):
    """Base class; the message never holds the password."""

    def __init__(self, message: str, registry: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.registry = registry
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class RegistryUnreachableError(RegistryError):
    """No TCP connection, DNS failure or timeout."""


class RegistryTLSError(RegistryError):
    """The TLS handshake or certificate verification failed."""


class RegistryAuthError(RegistryError):
    """401: the credential was rejected."""


class RegistryForbiddenError(RegistryError):
    """403: the credential is valid but lacks a right."""


class RegistryServerError(RegistryError):
    """5xx from the registry or its token server."""


class RegistryProtocolError(RegistryError):
    """An answer that does not follow the distribution spec."""


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


@dataclass(frozen=True)
class ManifestInfo:
    exists: bool
    digest: str | None = None
    media_type: str | None = None


@dataclass(frozen=True)
class PushCheck:
    repository: str
    allowed: bool
    granted: tuple[str, ...]
    method: str  # "token-claim" or "upload-probe"

    @property
    def granted_scope(self) -> str:
        actions = ",".join(self.granted) if self.granted else "no actions"
        return f"repository:{self.repository}:{actions}"


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into challenges (RFC 7235, quoted values may hold commas)."""
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    pos, end = 0, len(header)
    while pos < end:
        while pos < end and header[pos] in " \t,":
            pos += 1
        match = _TOKEN_RE.match(header, pos)
        if not match:
            pos += 1
            continue
        token = match.group(0)
        pos = match.end()
        look = pos
        while look < end and header[look] in " \t":
            look += 1
        if look < end and header[look] == "=" and scheme is not None:
            pos = look + 1
            while pos < end and header[pos] in " \t":
                pos += 1
            if pos < end and header[pos] == '"':
                pos += 1
                chars: list[str] = []
                while pos < end and header[pos] != '"':
                    if header[pos] == "\\" and pos + 1 < end:
                        pos += 1
                    chars.append(header[pos])
                    pos += 1
                pos += 1
                value = "".join(chars)
            else:
                vmatch = _TOKEN_RE.match(header, pos)
                value = vmatch.group(0) if vmatch else ""
                pos = vmatch.end() if vmatch else pos
            params[token.lower()] = value
        else:
            if scheme is not None:
                challenges.append(Challenge(scheme, params))
            scheme, params = token.lower(), {}
    if scheme is not None:
        challenges.append(Challenge(scheme, params))
    return challenges


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """Return the JWT payload without verifying the signature, or None for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def granted_actions(claims: dict[str, Any], repository: str) -> tuple[str, ...]:
    """The actions the token's ``access`` claim grants on ``repository:<repository>``."""
    actions: set[str] = set()
    for entry in claims.get("access") or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "repository" and entry.get("name") == repository:
            actions.update(str(a) for a in entry.get("actions") or [])
    return tuple(sorted(actions))


def repository_scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


class RegistryClient:
    """A session against one registry, with a per-scope Bearer token cache."""

    def __init__(
        self,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        *,
        scheme: str = "https",
        ca_cert: str | None = None,
        validate_certs: bool = True,
        timeout: float = 15.0,
        session: Any = None,
        user_agent: str | None = None,
    ) -> None:
        if requests is None:
            raise RegistryError(
                "The Python library 'requests' is required: pip install -r requirements.txt"
            )
        self.registry = registry
        self.username = username
        self._password = password
        self.base_url = f"{scheme}://{registry}"
        self.timeout = timeout
        self.verify: bool | str = (ca_cert or True) if validate_certs else False
        if not validate_certs:
            # The user chose an unverified registry; one warning per request is noise.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.session = session or requests.Session()
        if user_agent:
            # Names the module in the registry's access log.
            self.session.headers["User-Agent"] = user_agent
        self._challenges: list[Challenge] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"RegistryClient(registry={self.registry!r}, username={self.username!r})"

    # -- helpers -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        secrets = []
        if self._password:
            secrets.append(self._password)
            if self.username is not None:
                pair = f"{self.username}:{self._password}".encode()
                secrets.append(base64.b64encode(pair).decode())
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    def _fail(self, cls: type[RegistryError], message: str, status: int | None = None) -> None:
        raise cls(self._scrub(message), registry=self.registry, status=status)

    def _who(self) -> str:
        return f"user {self.username!r}" if self.username else "anonymous access"

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("allow_redirects", True)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            hint = (
                "set registry_ca_cert to the CA that signed its certificate"
                if self.verify is True
                else "check that registry_ca_cert is the CA that signed its certificate"
            )
            self._fail(
                RegistryTLSError,
                f"TLS verification failed for registry {self.registry} ({url.split('?')[0]}): "
                f"{_short_reason(exc)}; {hint}, or set registry_validate_certs: false for a "
                "throwaway registry",
            )
        except requests.exceptions.Timeout:
            self._fail(
                RegistryUnreachableError,
                f"Registry {self.registry} did not answer within {self.timeout:g}s "
                f"({method} {url.split('?')[0]}); check that it is up and reachable",
            )
        except requests.exceptions.ConnectionError as exc:
            self._fail(
                RegistryUnreachableError,
                f"Cannot connect to registry {self.registry} ({url.split('?')[0]}): "
                f"{_short_reason(exc)}; check the registry address and that it is up",
            )
        except requests.exceptions.RequestException as exc:
            self._fail(
                RegistryProtocolError,
                f"Request to registry {self.registry} failed: {_short_reason(exc)}",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_status(self, resp: Any, action: str) -> None:
        status = int(resp.status_code)
        detail = _error_detail(resp)
        if status == 401:
            self._fail(
                RegistryAuthError,
                f"Authentication failed for {self._who()} at registry {self.registry} "
                f"({action}: 401 Unauthorized){detail}; check the username and password",
                status,
            )
        if status == 403:
            self._fail(
                RegistryForbiddenError,
                f"Registry {self.registry} refused {action} for {self._who()} "
                f"(403 Forbidden){detail}",
                status,
            )
        if status >= 500:
            self._fail(
                RegistryServerError,
                f"Registry {self.registry} failed on {action} ({status} {resp.reason}){detail}; "
                "try again later",
                status,
            )
        if status >= 400:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} answered {status} {resp.reason} to {action}{detail}",
                status,
            )

    # -- challenge and token flow ------------------------------------------------------------

    def ping(self) -> list[Challenge]:
        """GET /v2/ without credentials; return the challenges ([] when anonymous access works)."""
        resp = self._send("GET", f"{self.base_url}/v2/")
        if resp.status_code == 200:
            self._challenges = []
        elif resp.status_code == 401:
            header = resp.headers.get("WWW-Authenticate", "")
            self._challenges = parse_www_authenticate(header)
            if not self._challenges:
                self._fail(
                    RegistryProtocolError,
                    f"Registry {self.registry} answered 401 on /v2/ without a WWW-Authenticate "
                    "challenge",
                    401,
                )
        else:
            self._raise_for_status(resp, "GET /v2/")
            self._fail(
                RegistryProtocolError,
                f"{self.base_url}/v2/ answered {resp.status_code}: is this a container registry?",
                resp.status_code,
            )
        return list(self._challenges or [])

    def _challenge(self) -> Challenge | None:
        if self._challenges is None:
            self.ping()
        challenges = self._challenges or []
        for wanted in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == wanted:
                    return challenge
        if challenges:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} offers only unsupported auth schemes: "
                f"{', '.join(c.scheme for c in challenges)}",
            )
        return None

    @property
    def auth_scheme(self) -> str:
        """ "bearer", "basic" or "anonymous"."""
        challenge = self._challenge()
        return challenge.scheme if challenge else "anonymous"

    def _basic(self) -> tuple[str, str] | None:
        if self.username:
            return (self.username, self._password or "")
        return None

    def token(self, scope: str | None = None) -> str:
        """A Bearer token for ``scope`` (None: no scope, which checks the credential itself)."""
        key = scope or ""
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        challenge = self._challenge()
        if challenge is None or challenge.scheme != "bearer" or not challenge.realm:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} does not use Bearer token auth",
            )
            raise AssertionError("unreachable")  # pragma: no cover
        params: dict[str, Any] = {}
        if challenge.service:
            params["service"] = challenge.service
        if scope:
            # Several space-separated scopes (a cross-repository mount) go as repeated params.
            params["scope"] = scope.split()
        realm = challenge.realm
        action = f"token request to {realm}" + (f" for scope {scope}" if scope else "")
        resp = self._send("GET", realm, params=params, auth=self._basic())
        self._raise_for_status(resp, action)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._fail(RegistryProtocolError, f"The token server {realm} sent no JSON object")
            raise AssertionError("unreachable")  # pragma: no cover
        token = body.get("token") or body.get("access_token")
        if not token or not isinstance(token, str):
            self._fail(
                RegistryProtocolError,
                f"The token server {realm} answered without 'token' or 'access_token'",
            )
            raise AssertionError("unreachable")  # pragma: no cover
        try:
            expires_in = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires_in = 60.0
        # Renew a little early, and never trust a lifetime under 10 s.
        self._tokens[key] = (token, time.monotonic() + max(expires_in - 10.0, 10.0))
        return token

    def check_credentials(self) -> str:
        """Raise RegistryAuthError unless the credential is accepted; return the auth scheme.

        No scope is requested: Harbor answers a bad credential *with* a scope as anonymous.
        """
        challenge = self._challenge()
        if challenge is None:
            return "anonymous"
        if challenge.scheme == "bearer":
            if not self.username:
                self._fail(RegistryAuthError, f"Registry {self.registry} requires a username")
            self.token(None)
            return "bearer"
        resp = self._send("GET", f"{self.base_url}/v2/", auth=self._basic())
        self._raise_for_status(resp, "GET /v2/ with Basic auth")
        return "basic"

    def _auth_kwargs(self, scope: str | None) -> dict[str, Any]:
        challenge = self._challenge()
        if challenge is None:
            return {}
        if challenge.scheme == "bearer":
            return {"headers": {"Authorization": f"Bearer {self.token(scope)}"}}
        return {"auth": self._basic()}

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        action: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """An authenticated request to ``path`` (under the registry's base URL).

        Statuses in ``ok`` (and 404, for the caller to interpret) are returned; others raise.
        A Bearer token rejected with 401 is renewed once.
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        action = action or f"{method} {path}"
        # A retry must send the whole body again: a file is rewound to where it started; a
        # stream that cannot be rewound is not retried (the 401 is reported instead).
        rewind = _rewinder(kwargs.get("data"))
        for attempt in (1, 2):
            auth = self._auth_kwargs(scope)
            merged = dict(headers or {})
            merged.update(auth.pop("headers", {}))
            resp = self._send(method, url, headers=merged, **auth, **kwargs)
            retry = resp.status_code == 401 and attempt == 1 and "Authorization" in merged
            if retry and rewind():
                self._tokens.pop(scope or "", None)
                continue
            break
        if resp.status_code in ok or resp.status_code == 404:
            return resp
        self._raise_for_status(resp, action)
        self._fail(
            RegistryProtocolError,
            f"Registry {self.registry} answered {resp.status_code} to {action}",
            resp.status_code,
        )

    # -- checks ------------------------------------------------------------------------------

    def push_access(self, repository: str) -> PushCheck:
        """Whether the credential may push to ``repository``.

        With token auth the token's ``access`` claim tells; with Basic auth (or an opaque token)
        the only way is to open a blob upload, which is cancelled at once.
        """
        if self.auth_scheme == "bearer":
            token = self.token(repository_scope(repository, "pull,push"))
            claims = decode_jwt_claims(token)
            if claims is not None:
                granted = granted_actions(claims, repository)
                allowed = "push" in granted or "*" in granted
                return PushCheck(repository, allowed, granted, "token-claim")
        return self._probe_upload(repository)

    def _probe_upload(self, repository: str) -> PushCheck:
        scope = repository_scope(repository, "pull,push")
        path = f"/v2/{repository}/blobs/uploads/"
        try:
            resp = self.request("POST", path, scope=scope, ok=(202,), action=f"POST {path}")
        except (RegistryAuthError, RegistryForbiddenError):
            return PushCheck(repository, False, (), "upload-probe")
        if resp.status_code != 202:
            return PushCheck(repository, False, (), "upload-probe")
        location = resp.headers.get("Location")
        if location:
            if location.startswith("/"):
                location = f"{self.base_url}{location}"
            # An abandoned upload is purged by the registry anyway; the answer stands.
            with contextlib.suppress(RegistryError):
                self.request("DELETE", location, scope=scope, ok=(200, 202, 204, 404))
        return PushCheck(repository, True, ("push",), "upload-probe")

    def manifest_head(self, repository: str, reference: str) -> ManifestInfo:
        """HEAD the manifest: whether ``repository:reference`` exists, and its digest."""
        path = f"/v2/{repository}/manifests/{reference}"
        resp = self.request(
            "HEAD",
            path,
            scope=repository_scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(200,),
            action=f"HEAD {path}",
        )
        if resp.status_code == 404:
            return ManifestInfo(False)
        media_type = resp.headers.get("Content-Type")
        return ManifestInfo(True, resp.headers.get("Docker-Content-Digest"), media_type)

    # -- blobs and manifests (used by code_layer) --------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str | None]:
        """GET a manifest: (raw bytes, media type, digest header). RegistryProtocolError on 404."""
        path = f"/v2/{repository}/manifests/{reference}"
        resp = self.request(
            "GET",
            path,
            scope=repository_scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(200,),
            action=f"GET {path}",
        )
        if resp.status_code == 404:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} has no manifest {repository}:{reference}",
                404,
            )
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        return resp.content, media_type, resp.headers.get("Docker-Content-Digest")

    def get_blob(self, repository: str, digest: str, *, stream: bool = False) -> Any:
        """GET a blob (the response; ``stream`` to read it in pieces)."""
        path = f"/v2/{repository}/blobs/{digest}"
        resp = self.request(
            "GET",
            path,
            scope=repository_scope(repository, "pull"),
            ok=(200,),
            action=f"GET {path}",
            stream=stream,
        )
        if resp.status_code == 404:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} has no blob {digest} in {repository}",
                404,
            )
        return resp

    def blob_exists(self, repository: str, digest: str) -> bool:
        """HEAD a blob in ``repository`` (push scope: the caller is about to upload it)."""
        path = f"/v2/{repository}/blobs/{digest}"
        resp = self.request(
            "HEAD",
            path,
            scope=repository_scope(repository, "pull,push"),
            ok=(200,),
            action=f"HEAD {path}",
        )
        return bool(resp.status_code == 200)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount. None when mounted (201); else the upload URL the registry
        opened instead (202), for the caller to finish with upload_blob."""
        path = f"/v2/{repository}/blobs/uploads/"
        scope = (
            f"{repository_scope(repository, 'pull,push')} "
            f"{repository_scope(from_repository, 'pull')}"
        )
        resp = self.request(
            "POST",
            path,
            scope=scope,
            params={"mount": digest, "from": from_repository},
            ok=(201, 202),
            action=f"POST {path}?mount={digest}&from={from_repository}",
        )
        if resp.status_code == 201:
            return None
        if resp.status_code == 202 and resp.headers.get("Location"):
            return self._absolute(resp.headers["Location"])
        self._fail(
            RegistryProtocolError,
            f"Registry {self.registry} answered {resp.status_code} to a blob mount into "
            f"{repository}",
            resp.status_code,
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def _absolute(self, location: str) -> str:
        return f"{self.base_url}{location}" if location.startswith("/") else location

    def start_upload(self, repository: str) -> str:
        """POST an upload session; return its URL."""
        path = f"/v2/{repository}/blobs/uploads/"
        resp = self.request(
            "POST",
            path,
            scope=repository_scope(repository, "pull,push"),
            ok=(202,),
            action=f"POST {path}",
        )
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} opened no upload for {repository} ({resp.status_code})",
                resp.status_code,
            )
        return self._absolute(str(location))

    def upload_blob(
        self,
        repository: str,
        digest: str,
        data: Any,
        *,
        location: str | None = None,
        scope: str | None = None,
    ) -> None:
        """Monolithic upload (POST, then one PUT with the whole body and ``?digest=``).

        ``data`` is bytes or a file-like object with ``__len__`` or a real file (the length goes
        in Content-Length, so the registry never sees a chunked body).
        """
        url = location or self.start_upload(repository)
        parts = urlsplit(url)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("digest", digest)]
        url = urlunsplit(parts._replace(query=urlencode(query)))
        resp = self.request(
            "PUT",
            url,
            scope=scope or repository_scope(repository, "pull,push"),
            headers={"Content-Type": "application/octet-stream"},
            data=data,
            ok=(201, 204),
            action=f"PUT blob {digest} into {repository}",
        )
        if resp.status_code == 404:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} lost the upload of {digest} into {repository}",
                404,
            )

    def put_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> str | None:
        """PUT a manifest; return the digest the registry reports."""
        path = f"/v2/{repository}/manifests/{reference}"
        resp = self.request(
            "PUT",
            path,
            scope=repository_scope(repository, "pull,push"),
            headers={"Content-Type": media_type},
            data=body,
            ok=(201,),
            action=f"PUT {path}",
        )
        if resp.status_code == 404:
            self._fail(
                RegistryProtocolError,
                f"Registry {self.registry} answered 404 to PUT {path}{_error_detail(resp)}",
                404,
            )
        digest = resp.headers.get("Docker-Content-Digest")
        return str(digest) if digest else None


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    match = _ERRNO_RE.search(text)
    if match:
        return match.group(0).strip()
    for marker in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname mismatch"):
        if marker in text:
            idx = text.find(marker)
            return text[idx : idx + 160].split("'")[0].split(")")[0]
    return text[:300]


def _rewinder(body: Any) -> Callable[[], bool]:
    """For a retry: puts the request body back at its start and says whether it could. Bytes
    and no body need nothing; a seekable file is rewound; any other stream cannot be."""
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return lambda: True
    try:
        start = int(body.tell()) if not hasattr(body, "seekable") or body.seekable() else None
    except (AttributeError, OSError, ValueError):
        start = None
    if start is None:
        return lambda: False

    def rewind() -> bool:
        body.seek(start)
        return True

    return rewind


def _error_detail(resp: Any) -> str:
    """The first error of a distribution-spec error body, if any."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code", "")
            message = errors[0].get("message", "")
            return f": {code} {message}".rstrip()
        if body.get("details") or body.get("message"):
            return f": {body.get('details') or body.get('message')}"
    return ""
