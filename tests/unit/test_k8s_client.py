from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    AUTH_ARG_SPEC,
    AUTH_ENV,
    K8sApiError,
    K8sClient,
    K8sError,
    api_error,
    build_configuration,
    is_dns1123_label,
    is_dns1123_subdomain,
    resource_path,
)
from tests.unit.fakeserver import Reply, Request, serve

TOKEN = "unit-test-bearer-token"


def kubeconfig_dict(server: str, token: str = TOKEN, context: str = "ctx") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server}},
            {"name": "other", "cluster": {"server": "http://127.0.0.1:1"}},
        ],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [
            {"name": context, "context": {"cluster": "c", "user": "u"}},
            {"name": "other", "context": {"cluster": "other", "user": "u"}},
        ],
        "current-context": context,
    }


def bearer(cfg: Any) -> str:
    return str(cfg.auth_settings()["BearerToken"]["value"])


@pytest.fixture
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", *AUTH_ENV.values()):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_every_auth_option_has_its_env_fallback() -> None:
    assert set(AUTH_ARG_SPEC) == set(AUTH_ENV)
    for option, spec in AUTH_ARG_SPEC.items():
        assert spec["fallback"][1] == [AUTH_ENV[option]]
    assert AUTH_ARG_SPEC["api_key"]["no_log"] is True


def test_no_configuration_names_options_and_env_vars(no_ambient_config: Path) -> None:
    with pytest.raises(K8sError) as err:
        build_configuration({})
    message = str(err.value)
    for option, env in AUTH_ENV.items():
        assert option in message and env in message
    assert "~/.kube/config" in message


def test_missing_kubeconfig_path(no_ambient_config: Path) -> None:
    with pytest.raises(K8sError, match="kubeconfig='/nonexistent/kc' does not exist"):
        build_configuration({"kubeconfig": "/nonexistent/kc"})


def test_kubeconfig_dict_and_context(no_ambient_config: Path) -> None:
    cfg = build_configuration({"kubeconfig": kubeconfig_dict("https://10.0.0.1:6443")})
    assert cfg.host == "https://10.0.0.1:6443"
    assert bearer(cfg) == f"Bearer {TOKEN}"
    other = build_configuration({"kubeconfig": kubeconfig_dict("https://x:1"), "context": "other"})
    assert other.host == "http://127.0.0.1:1"
    with pytest.raises(K8sError, match="Cannot load the Kubernetes configuration"):
        build_configuration({"kubeconfig": kubeconfig_dict("https://x:1"), "context": "nope"})


def test_kubeconfig_path_and_default_location(no_ambient_config: Path) -> None:
    kube = no_ambient_config / ".kube"
    kube.mkdir()
    (kube / "config").write_text(json.dumps(kubeconfig_dict("https://default:6443")))
    assert build_configuration({}).host == "https://default:6443"
    path = no_ambient_config / "kc.json"
    path.write_text(json.dumps(kubeconfig_dict("https://path:6443")))
    assert build_configuration({"kubeconfig": str(path)}).host == "https://path:6443"


def test_explicit_options_override(no_ambient_config: Path, tmp_path: Path) -> None:
    cfg = build_configuration(
        {
            "kubeconfig": kubeconfig_dict("https://kc:6443"),
            "host": "https://explicit:6443/",
            "api_key": "other-token",
            "validate_certs": False,
            "ca_cert": "/ca.pem",
            "client_cert": "/c.pem",
            "client_key": "/k.pem",
            "proxy": "http://proxy:3128",
        }
    )
    assert cfg.host == "https://explicit:6443"
    assert bearer(cfg) == "Bearer other-token"
    assert cfg.verify_ssl is False
    assert (cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file) == ("/ca.pem", "/c.pem", "/k.pem")
    assert cfg.proxy == "http://proxy:3128"
    host_only = build_configuration({"host": "https://h:6443", "api_key": "t"})
    assert host_only.host == "https://h:6443"


def test_in_cluster_config(no_ambient_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    # No service account files here: the error says where it looked, not "no configuration".
    with pytest.raises(K8sError, match="in-cluster service account"):
        build_configuration({})


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "rejected the credentials (401 Unauthorized)"),
        (403, "Forbidden (403): not allowed to create Secret aic/x"),
        (404, "Not found (404)"),
        (409, "Conflict (409)"),
        (500, "failed (500"),
    ],
)
def test_api_error_translation(status: int, expected: str) -> None:
    body = json.dumps({"kind": "Status", "message": "server says no"})
    err = api_error(status, "Reason", body, "create", "Secret aic/x")
    assert expected in str(err) and "server says no" in str(err)
    assert err.status == status


def test_api_error_422_lists_causes() -> None:
    body = json.dumps(
        {
            "message": "Secret is invalid",
            "details": {"causes": [{"field": "metadata.name", "message": "must be lowercase"}]},
        }
    )
    err = api_error(422, "Unprocessable", body, "create", "Secret aic/X")
    assert "metadata.name: must be lowercase" in str(err)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("urm-registry-cred", True),
        ("a.b-c", True),
        ("a" * 253, True),
        ("a" * 254, False),
        ("Bad", False),
        ("-x", False),
        ("x_y", False),
        ("", False),
        ("x.", False),
    ],
)
def test_dns1123_subdomain(value: str, ok: bool) -> None:
    assert is_dns1123_subdomain(value) is ok


def test_dns1123_label() -> None:
    assert (
        is_dns1123_label("aic") and not is_dns1123_label("a.b") and not is_dns1123_label("a" * 64)
    )


def test_resource_paths() -> None:
    assert resource_path("Secret", "aic", "x") == "/api/v1/namespaces/aic/secrets/x"
    assert resource_path("Namespace", name="aic") == "/api/v1/namespaces/aic"
    assert resource_path("Job", "aic") == "/apis/batch/v1/namespaces/aic/jobs"
    with pytest.raises(K8sError):
        resource_path("Secret")


class FakeApiServer:
    """Answers like an apiserver for a namespace-only user."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            "/api/v1/namespaces/aic/secrets/s": {"kind": "Secret", "metadata": {"name": "s"}},
        }

    def __call__(self, req: Request) -> Reply:
        path = urlsplit(req.path).path
        if req.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._status(401, "Unauthorized")
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            return self._status(403, 'namespaces "x" is forbidden: User "researcher" cannot get')
        if not path.startswith("/api/v1/namespaces/aic/"):
            return self._status(403, "forbidden outside aic")
        if req.method == "GET" and path in self.objects:
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps(self.objects[path]).encode(),
            )
        if req.method == "GET" and path == "/api/v1/namespaces/aic/secrets":
            return 200, {}, json.dumps({"items": list(self.objects.values())}).encode()
        if req.method == "PATCH":
            assert req.headers["Content-Type"] == "application/merge-patch+json"
            return 200, {}, req.body
        if req.method == "POST":
            return self._status(409, "already exists")
        return self._status(404, "not found")

    @staticmethod
    def _status(code: int, message: str) -> Reply:
        return (
            code,
            {"Content-Type": "application/json"},
            json.dumps({"kind": "Status", "code": code, "message": message}).encode(),
        )


@pytest.fixture
def apiserver(no_ambient_config: Path) -> Any:
    with serve(FakeApiServer()) as server:
        yield K8sClient.from_params({"kubeconfig": kubeconfig_dict(server.url)}, timeout=5), server


def test_client_get_list_patch(apiserver: Any) -> None:
    client, server = apiserver
    assert client.get("Secret", "s", "aic") == {"kind": "Secret", "metadata": {"name": "s"}}
    assert client.get("Secret", "missing", "aic") is None
    assert [o["metadata"]["name"] for o in client.list("Secret", "aic", limit=1)] == ["s"]
    assert "limit=1" in server.requests[-1].path
    assert client.patch("Secret", "s", {"data": {}}, "aic") == {"data": {}}
    with pytest.raises(K8sApiError, match="Conflict"):
        client.create("Secret", {"metadata": {"name": "s"}}, "aic")
    assert client.delete("Secret", "missing", "aic") is False


def test_namespace_exists_for_namespace_only_user(apiserver: Any) -> None:
    client, _server = apiserver
    assert client.namespace_exists("aic") is True
    with pytest.raises(K8sError, match="does not exist, or these credentials have no rights"):
        client.namespace_exists("elsewhere")


def test_bad_token_and_unreachable(no_ambient_config: Path) -> None:
    with serve(FakeApiServer()) as server:
        client = K8sClient.from_params({"kubeconfig": kubeconfig_dict(server.url, token="bad")})
        with pytest.raises(K8sApiError, match="401"):
            client.get("Secret", "s", "aic")
    client = K8sClient.from_params({"host": "http://127.0.0.1:1", "api_key": "t"}, timeout=2)
    with pytest.raises(
        K8sError, match=r"Cannot reach the Kubernetes API server at http://127\.0\.0\.1:1"
    ):
        client.get("Secret", "s", "aic")


def test_missing_kubernetes_library_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ansible_collections.urm.training.plugins.module_utils import _k8s

    monkeypatch.setitem(sys.modules, "kubernetes", None)
    monkeypatch.setitem(sys.modules, "kubernetes.client", None)
    with pytest.raises(K8sError) as err:
        _k8s.import_kubernetes()
    assert "The Python library 'kubernetes' (>= 31.0) is required" in str(err.value)
    assert "pip install -r requirements.txt" in str(err.value)
