from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.urm.training.plugins.module_utils._registry import (
    MANIFEST_MEDIA_TYPES,
    Challenge,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryForbiddenError,
    RegistryServerError,
    RegistryTLSError,
    RegistryUnreachableError,
    decode_jwt_claims,
    granted_actions,
    parse_www_authenticate,
)
from tests.unit.fakeserver import Reply, Request, serve

PASSWORD = 'pl4nted-Secr3t,with=odd"chars'
USERS = {"alice": PASSWORD, "bob": "bobs-password"}
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://h/service/token",service="harbor-registry"',
            [
                Challenge(
                    "bearer", {"realm": "https://h/service/token", "service": "harbor-registry"}
                )
            ],
        ),
        (
            'Bearer realm="https://h/t",service="reg",scope="repository:a/b:pull,push"',
            [
                Challenge(
                    "bearer",
                    {"realm": "https://h/t", "service": "reg", "scope": "repository:a/b:pull,push"},
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("basic realm=simple", [Challenge("basic", {"realm": "simple"})]),
        (
            'Basic realm="a, b", Bearer realm="https://t",service="s"',
            [
                Challenge("basic", {"realm": "a, b"}),
                Challenge("bearer", {"realm": "https://t", "service": "s"}),
            ],
        ),
        (
            'Bearer  realm = "x\\"y" , service="s"',
            [Challenge("bearer", {"realm": 'x"y', "service": "s"})],
        ),
        ("Bearer", [Challenge("bearer", {})]),
        ("", []),
    ],
)
def test_parse_www_authenticate(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(access: list[dict[str, Any]], sub: str = "alice") -> str:
    return (
        f"{_b64url({'alg': 'RS256', 'typ': 'JWT'})}.{_b64url({'sub': sub, 'access': access})}.c2ln"
    )


def test_jwt_access_claim() -> None:
    token = make_jwt(
        [
            {"type": "repository", "name": "aic-misc/urm", "actions": ["push", "pull"]},
            {"type": "repository", "name": "library/busybox", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
    )
    claims = decode_jwt_claims(token)
    assert claims is not None and claims["sub"] == "alice"
    assert granted_actions(claims, "aic-misc/urm") == ("pull", "push")
    assert granted_actions(claims, "library/busybox") == ("pull",)
    assert granted_actions(claims, "catalog") == ()
    assert granted_actions(claims, "other/repo") == ()
    assert granted_actions({"access": None}, "x") == ()
    assert decode_jwt_claims("opaque-token") is None
    assert decode_jwt_claims("a.!!!.c") is None


class FakeRegistry:
    """Distribution v2 endpoints plus a Harbor-like token server, on one loopback port."""

    def __init__(self, mode: str, grants: dict[str, dict[str, list[str]]] | None = None) -> None:
        self.mode = mode
        self.base = ""
        self.grants = grants or {
            "alice": {"aic-misc/urm": ["pull", "push"], "library/busybox": ["pull"]}
        }
        self.token_requests: list[dict[str, list[str]]] = []
        self.force_status: int | None = None

    def _user(self, req: Request) -> str | None:
        header = req.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if USERS.get(user) == password else None

    def __call__(self, req: Request) -> Reply:
        url = urlsplit(req.path)
        if self.force_status is not None:
            return (
                self.force_status,
                {"Content-Type": "application/json"},
                json.dumps({"errors": [{"code": "DENIED", "message": "forced"}]}).encode(),
            )
        if url.path == "/service/token":
            query = parse_qs(url.query)
            self.token_requests.append(query)
            presented = "Authorization" in req.headers
            user = self._user(req)
            scopes = query.get("scope", [])
            if presented and user is None and not scopes:
                return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
            access = []
            for scope in scopes:
                _, name, actions = scope.split(":")
                allowed = (self.grants.get(user or "", {})).get(name, [])
                access.append(
                    {
                        "type": "repository",
                        "name": name,
                        "actions": [a for a in actions.split(",") if a in allowed],
                    }
                )
            token = make_jwt(access, user or "anonymous")
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"token": token, "expires_in": 300}).encode(),
            )
        authed = False
        header = req.headers.get("Authorization", "")
        if self.mode == "basic":
            authed = self._user(req) is not None
            challenge = 'Basic realm="fake"'
        else:
            authed = header.startswith("Bearer ")
            challenge = f'Bearer realm="{self.base}/service/token",service="fake-registry"'
        if not authed:
            return (
                401,
                {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                (b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'),
            )
        if url.path == "/v2/":
            return 200, {}, b"{}"
        if url.path == "/v2/library/busybox/manifests/latest" and req.method == "HEAD":
            accept = req.headers.get("Accept", "")
            if all(t in accept for t in MANIFEST_MEDIA_TYPES):
                return (
                    200,
                    {"Docker-Content-Digest": DIGEST, "Content-Type": MANIFEST_MEDIA_TYPES[1]},
                    b"",
                )
            return 404, {}, b""
        if url.path.endswith("/blobs/uploads/") and req.method == "POST":
            return 202, {"Location": url.path + "fake-uuid"}, b""
        if url.path.endswith("/blobs/uploads/fake-uuid") and req.method == "DELETE":
            return 204, {}, b""
        return (
            404,
            {"Content-Type": "application/json"},
            b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}',
        )


def _client(
    server: Any, username: str = "alice", password: str = PASSWORD, **kw: Any
) -> RegistryClient:
    scheme = server.url.split("://")[0]
    return RegistryClient(server.host_port, username, password, scheme=scheme, timeout=5, **kw)


@pytest.fixture(params=["basic", "bearer"])
def registry(request: pytest.FixtureRequest) -> Any:
    fake = FakeRegistry(request.param)
    with serve(fake) as server:
        fake.base = server.url
        yield fake, server


def _assert_clean(exc: BaseException) -> None:
    encoded = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    for text in (str(exc), repr(exc), str(exc.args)):
        assert PASSWORD not in text and encoded not in text


def test_ping_reports_the_challenge(registry: Any) -> None:
    fake, server = registry
    challenges = _client(server).ping()
    assert challenges[0].scheme == fake.mode
    if fake.mode == "bearer":
        assert challenges[0].realm == f"{server.url}/service/token"
        assert challenges[0].service == "fake-registry"


def test_good_credential_is_accepted(registry: Any) -> None:
    fake, server = registry
    assert _client(server).check_credentials() == fake.mode
    if fake.mode == "bearer":
        # The credential check asks for no scope (Harbor would answer anonymously otherwise).
        assert fake.token_requests[-1] == {"service": ["fake-registry"]}


def test_bad_password_is_an_auth_error_without_the_password(registry: Any) -> None:
    _fake, server = registry
    client = _client(server, password=PASSWORD + "-wrong")
    with pytest.raises(RegistryAuthError) as err:
        client.check_credentials()
    assert "Authentication failed for user 'alice' at registry" in str(err.value)
    assert server.host_port in str(err.value)
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(client)


def test_push_check(registry: Any) -> None:
    fake, server = registry
    client = _client(server)
    check = client.push_access("aic-misc/urm")
    assert check.allowed
    if fake.mode == "bearer":
        assert check.method == "token-claim" and check.granted == ("pull", "push")
        denied = client.push_access("library/busybox")
        assert not denied.allowed
        assert denied.granted_scope == "repository:library/busybox:pull"
        assert fake.token_requests[-1]["scope"] == ["repository:library/busybox:pull,push"]
    else:
        assert check.method == "upload-probe"
        methods = [(r.method, urlsplit(r.path).path) for r in server.requests]
        assert ("POST", "/v2/aic-misc/urm/blobs/uploads/") in methods
        assert ("DELETE", "/v2/aic-misc/urm/blobs/uploads/fake-uuid") in methods


def test_bad_password_with_scope_is_anonymous_not_push() -> None:
    fake = FakeRegistry("bearer")
    with serve(fake) as server:
        fake.base = server.url
        check = _client(server, password="wrong").push_access("aic-misc/urm")
        assert not check.allowed and check.granted == ()
        assert check.granted_scope == "repository:aic-misc/urm:no actions"


def test_manifest_head_sends_full_accept_list(registry: Any) -> None:
    _fake, server = registry
    client = _client(server)
    info = client.manifest_head("library/busybox", "latest")
    assert info.exists and info.digest == DIGEST
    assert not client.manifest_head("library/busybox", "nope").exists
    heads = [r for r in server.requests if r.method == "HEAD"]
    assert all(t in heads[0].headers["Accept"] for t in MANIFEST_MEDIA_TYPES)


def test_token_cache_per_scope() -> None:
    fake = FakeRegistry("bearer")
    with serve(fake) as server:
        fake.base = server.url
        client = _client(server)
        client.manifest_head("library/busybox", "latest")
        client.manifest_head("library/busybox", "latest")
        client.manifest_head("aic-misc/urm", "latest")
        scopes = [q.get("scope") for q in fake.token_requests]
        assert scopes == [["repository:library/busybox:pull"], ["repository:aic-misc/urm:pull"]]


@pytest.mark.parametrize(
    ("status", "cls", "text"),
    [
        (401, RegistryAuthError, "Authentication failed for user 'alice'"),
        (403, RegistryForbiddenError, "403 Forbidden"),
        (500, RegistryServerError, "500"),
        (503, RegistryServerError, "try again later"),
    ],
)
def test_status_errors_are_distinct(status: int, cls: type[RegistryError], text: str) -> None:
    fake = FakeRegistry("basic")
    with serve(fake) as server:
        client = _client(server)
        client.ping()
        fake.force_status = status
        with pytest.raises(cls) as err:
            client.check_credentials()
        assert text in str(err.value)
        assert err.value.status == status
        _assert_clean(err.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_registry() -> None:
    port = _free_port()
    client = RegistryClient(f"127.0.0.1:{port}", "alice", PASSWORD, timeout=2)
    with pytest.raises(RegistryUnreachableError) as err:
        client.check_credentials()
    assert f"Cannot connect to registry 127.0.0.1:{port}" in str(err.value)
    assert "Connection refused" in str(err.value)
    _assert_clean(err.value)


def test_timeout_is_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts TCP, never answers
        port = listener.getsockname()[1]
        client = RegistryClient(f"127.0.0.1:{port}", "alice", PASSWORD, scheme="http", timeout=0.5)
        with pytest.raises(RegistryUnreachableError) as err:
            client.ping()
    assert "did not answer within 0.5s" in str(err.value)


def test_tls_verification(pki: dict[str, Path]) -> None:
    fake = FakeRegistry("basic")
    with serve(fake, tls=(pki["cert"], pki["key"])) as server:
        with pytest.raises(RegistryTLSError) as err:
            _client(server).check_credentials()
        assert "TLS verification failed for registry" in str(err.value)
        assert "registry_ca_cert" in str(err.value)
        _assert_clean(err.value)
        with pytest.raises(RegistryTLSError):
            _client(server, ca_cert=str(pki["other_ca"])).check_credentials()
        assert _client(server, ca_cert=str(pki["ca"])).check_credentials() == "basic"
        assert _client(server, validate_certs=False).check_credentials() == "basic"


def test_plain_http_server_behind_https_is_a_tls_error() -> None:
    fake = FakeRegistry("basic")
    with serve(fake) as server:
        client = RegistryClient(server.host_port, "alice", PASSWORD, scheme="https", timeout=3)
        with pytest.raises(RegistryTLSError):
            client.ping()


def test_repr_and_messages_never_hold_the_password() -> None:
    client = RegistryClient("reg.example:5000", "alice", PASSWORD)
    assert PASSWORD not in repr(client)
    with pytest.raises(RegistryError) as err:
        client._fail(
            RegistryError,
            f"echoed {PASSWORD} and {base64.b64encode(f'alice:{PASSWORD}'.encode()).decode()}",
        )
    _assert_clean(err.value)


class ExpiringTokenRegistry:
    """Bearer registry whose first blob PUT is refused with 401 after the body was read, as
    when a token runs out during a long upload; the retry must carry the whole body again."""

    def __init__(self) -> None:
        self.base = ""
        self.put_bodies: list[bytes] = []
        self.tokens = 0

    def __call__(self, req: Request) -> Reply:
        url = urlsplit(req.path)
        if url.path == "/service/token":
            self.tokens += 1
            token = make_jwt([], "alice")
            return 200, {}, json.dumps({"token": token, "expires_in": 300}).encode()
        if not req.headers.get("Authorization", "").startswith("Bearer "):
            challenge = f'Bearer realm="{self.base}/service/token",service="fake"'
            return 401, {"WWW-Authenticate": challenge}, b""
        if url.path == "/v2/":
            return 200, {}, b"{}"
        if req.method == "PUT":
            self.put_bodies.append(req.body)
            if len(self.put_bodies) == 1:
                challenge = f'Bearer realm="{self.base}/service/token",error="invalid_token"'
                return 401, {"WWW-Authenticate": challenge}, b""
            return 201, {}, b""
        return 404, {}, b""


def test_a_token_expiring_mid_upload_resends_the_whole_file(tmp_path: Path) -> None:
    payload = b"layer-bytes " * 5000
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(payload)
    fake = ExpiringTokenRegistry()
    with serve(fake) as server:
        fake.base = server.url
        client = _client(server)
        with blob.open("rb") as handle:
            client.upload_blob(
                "aic-misc/urm", "sha256:" + "0" * 64, handle, location=f"{server.url}/v2/up/1"
            )
    assert fake.put_bodies == [payload, payload]
    assert fake.tokens == 2, "the refused token was renewed once"


def test_a_stream_that_cannot_be_rewound_is_not_resent_half_empty() -> None:
    class OneShot:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def seekable(self) -> bool:
            return False

        def __len__(self) -> int:
            return len(self.data)

        def read(self, size: int = -1) -> bytes:
            data, self.data = self.data, b""
            return data

    fake = ExpiringTokenRegistry()
    with serve(fake) as server:
        fake.base = server.url
        client = _client(server)
        with pytest.raises(RegistryAuthError, match="401"):
            client.upload_blob(
                "aic-misc/urm",
                "sha256:" + "0" * 64,
                OneShot(b"x" * 1000),
                location=f"{server.url}/v2/up/1",
            )
    assert fake.put_bodies == [b"x" * 1000], "no second PUT with an empty body"
