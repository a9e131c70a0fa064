"""Shared fixtures: the local Kubernetes + registry world, started by the project's own tooling."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCALCLUSTER = REPO / "localcluster" / "localcluster"


def localcluster_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCALCLUSTER), *args],
        capture_output=True,
        text=True,
        env=env,
        check=check,
        timeout=timeout,
    )


@dataclass
class LocalCluster:
    """What `localcluster env` exports, as attributes, plus audit-log helpers."""

    exports: dict[str, str]
    admin_kubeconfig: Path
    researcher_kubeconfig: Path
    researcher_nodes_kubeconfig: Path
    namespace: str
    registry_token: str
    registry_basic: str
    token_realm: str
    ca_cert: Path
    credentials_file: Path
    audit_log: Path
    docker_host: str
    containers_conf: Path
    kubectl_path: Path
    users: dict[str, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Self:
        """The world `localcluster env` describes: the default one, or the one ``env`` selects."""
        exports: dict[str, str] = {}
        for line in localcluster_cli("env", env=env).stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            exports[key] = shlex.split(value)[0]
        kubectl_dir = exports["PATH"].split(":")[0]
        credentials = Path(exports["URM_LOCALCLUSTER_CREDENTIALS"])
        return cls(
            exports=exports,
            admin_kubeconfig=Path(exports["URM_LOCALCLUSTER_KUBECONFIG_ADMIN"]),
            researcher_kubeconfig=Path(exports["URM_LOCALCLUSTER_KUBECONFIG_RESEARCHER"]),
            researcher_nodes_kubeconfig=Path(
                exports["URM_LOCALCLUSTER_KUBECONFIG_RESEARCHER_NODES"]
            ),
            namespace=exports["URM_LOCALCLUSTER_NAMESPACE"],
            registry_token=exports["URM_LOCALCLUSTER_REGISTRY"],
            registry_basic=exports["URM_LOCALCLUSTER_REGISTRY_BASIC"],
            token_realm=exports["URM_LOCALCLUSTER_TOKEN_REALM"],
            ca_cert=Path(exports["URM_LOCALCLUSTER_CA_CERT"]),
            credentials_file=credentials,
            audit_log=Path(exports["URM_LOCALCLUSTER_AUDIT_LOG"]),
            docker_host=exports["DOCKER_HOST"],
            containers_conf=Path(exports["CONTAINERS_CONF"]),
            kubectl_path=Path(kubectl_dir) / "kubectl",
            users=json.loads(credentials.read_text())["registry_users"],
        )

    def audit_line_count(self) -> int:
        with open(self.audit_log, "rb") as handle:
            return sum(1 for _ in handle)

    def audit_events(self, since_line: int = 0) -> list[dict[str, Any]]:
        with open(self.audit_log) as handle:
            lines = handle.readlines()[since_line:]
        return [json.loads(line) for line in lines if line.strip()]

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.kubectl_path),
                "--kubeconfig",
                str(kubeconfig or self.admin_kubeconfig),
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


@pytest.fixture(scope="session")
def localcluster() -> Iterator[LocalCluster]:
    """Reuse a healthy running world, or bring one up (and down again at the end)."""
    was_up = localcluster_cli("status", check=False).returncode == 0
    if not was_up:
        result = localcluster_cli("up", check=False)
        if result.returncode != 0:
            pytest.fail(f"localcluster up failed:\n{result.stderr[-4000:]}")
    yield LocalCluster.from_env()
    if not was_up and os.environ.get("URM_KEEP_LOCALCLUSTER") != "1":
        localcluster_cli("down", check=False)
