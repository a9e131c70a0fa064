"""The Harbor stand-in: TLS, token auth with per-project rights, Basic auth, real podman."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration


def podman(localcluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=str(localcluster.containers_conf))
    return subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


@pytest.fixture
def authfile(tmp_path: Path) -> Path:
    return tmp_path / "auth.json"


def login(
    localcluster, authfile: Path, host: str, user: str, password: str
) -> subprocess.CompletedProcess[str]:
    return podman(
        localcluster,
        "login",
        "--authfile",
        str(authfile),
        "--username",
        user,
        "--password-stdin",
        host,
        stdin=password,
    )


@pytest.mark.parametrize("endpoint", ["registry_token", "registry_basic"])
def test_podman_pushes_and_pulls_with_the_generated_credential(
    localcluster, authfile, endpoint
) -> None:
    host = getattr(localcluster, endpoint)
    assert (
        login(
            localcluster, authfile, host, "researcher", localcluster.users["researcher"]
        ).returncode
        == 0
    )
    image = f"{host}/aic-misc/lc-test:{uuid.uuid4().hex[:8]}"
    assert (
        podman(
            localcluster, "tag", f"{localcluster.registry_token}/library/busybox:latest", image
        ).returncode
        == 0
    )
    pushed = podman(localcluster, "push", "--authfile", str(authfile), image)
    assert pushed.returncode == 0, pushed.stderr
    assert podman(localcluster, "rmi", image).returncode == 0
    pulled = podman(localcluster, "pull", "--authfile", str(authfile), image)
    assert pulled.returncode == 0, pulled.stderr
    podman(localcluster, "rmi", image)


@pytest.mark.parametrize("endpoint", ["registry_token", "registry_basic"])
def test_wrong_password_is_refused(localcluster, authfile, endpoint) -> None:
    result = login(
        localcluster, authfile, getattr(localcluster, endpoint), "researcher", "not-the-password"
    )
    assert result.returncode != 0
    assert "invalid username/password" in result.stderr


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_token_endpoint_issues_scoped_tokens_like_harbor(localcluster) -> None:
    password = localcluster.users["researcher"]
    scope = "repository:aic-misc/urm-training:pull,push"
    reply = requests.get(
        localcluster.token_realm,
        params={"service": "harbor-registry", "scope": scope},
        auth=("researcher", password),
        verify=str(localcluster.ca_cert),
        timeout=10,
    )
    assert reply.status_code == 200
    claims = _claims(reply.json()["token"])
    assert claims["sub"] == "researcher"
    assert claims["access"] == [
        {"type": "repository", "name": "aic-misc/urm-training", "actions": ["pull", "push"]}
    ]
    # Outside aic-misc the researcher may only pull.
    reply = requests.get(
        localcluster.token_realm,
        params={"service": "harbor-registry", "scope": "repository:library/busybox:pull,push"},
        auth=("researcher", password),
        verify=str(localcluster.ca_cert),
        timeout=10,
    )
    assert _claims(reply.json()["token"])["access"][0]["actions"] == ["pull"]
    # Harbor's quirk: a bad credential with a scope is anonymous, without a scope it is 401.
    bad = requests.get(
        localcluster.token_realm,
        params={"service": "harbor-registry", "scope": scope},
        auth=("researcher", "wrong"),
        verify=str(localcluster.ca_cert),
        timeout=10,
    )
    assert bad.status_code == 200 and _claims(bad.json()["token"])["access"][0]["actions"] == []
    bad = requests.get(
        localcluster.token_realm,
        params={"service": "harbor-registry"},
        auth=("researcher", "wrong"),
        verify=str(localcluster.ca_cert),
        timeout=10,
    )
    assert bad.status_code == 401


def test_researcher_cannot_push_outside_aic_misc(localcluster, authfile) -> None:
    host = localcluster.registry_token
    assert (
        login(
            localcluster, authfile, host, "researcher", localcluster.users["researcher"]
        ).returncode
        == 0
    )
    image = f"{host}/library/lc-forbidden:{uuid.uuid4().hex[:8]}"
    assert podman(localcluster, "tag", f"{host}/library/busybox:latest", image).returncode == 0
    pushed = podman(localcluster, "push", "--authfile", str(authfile), image)
    podman(localcluster, "rmi", image)
    assert pushed.returncode != 0
    assert "denied" in pushed.stderr.lower() or "unauthorized" in pushed.stderr.lower()


def test_registry_rejects_plain_http_and_unknown_ca(localcluster) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{localcluster.registry_token}/v2/", timeout=5)
    reply = requests.get(
        f"https://{localcluster.registry_token}/v2/", verify=str(localcluster.ca_cert), timeout=5
    )
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith(
        f'Bearer realm="{localcluster.token_realm}"'
    )


def test_credentials_file_is_private(localcluster) -> None:
    assert localcluster.credentials_file.stat().st_mode & 0o077 == 0
    assert localcluster.admin_kubeconfig.stat().st_mode & 0o077 == 0
