"""Where localcluster keeps its state, and which loopback ports it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "urm"
NAMESPACE = "aic"
TOKEN_SERVICE = "harbor-registry"
TOKEN_ISSUER = "urm-localcluster-token-issuer"


def _port(name: str, default: int) -> int:
    value = os.environ.get(f"URM_LOCALCLUSTER_{name}_PORT", str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"localcluster: URM_LOCALCLUSTER_{name}_PORT={value!r} is not a TCP port")
    return int(value)


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    apiserver_port: int
    registry_token_port: int
    registry_basic_port: int
    token_server_port: int
    # Opt-in: a real kubelet + containerd node beside the simulated ones (see realnode.py).
    real_node: bool = False
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248

    @classmethod
    def load(cls) -> Settings:
        default_state = Path.home() / ".local" / "state" / "urm-localcluster"
        return cls(
            state_dir=Path(os.environ.get("URM_LOCALCLUSTER_STATE", default_state)),
            apiserver_port=_port("APISERVER", 16443),
            registry_token_port=_port("REGISTRY_TOKEN", 15000),
            registry_basic_port=_port("REGISTRY_BASIC", 15001),
            token_server_port=_port("TOKEN_SERVER", 15002),
            real_node=os.environ.get("URM_LOCALCLUSTER_REAL_NODE", "") not in ("", "0"),
            kubelet_port=_port("KUBELET", 10250),
            kubelet_healthz_port=_port("KUBELET_HEALTHZ", 10248),
        )

    # Layout of the state dir. Everything a running cluster owns lives under it,
    # so `down` can remove it in one go.
    @property
    def kwok_workdir(self) -> Path:
        return self.state_dir / "kwok"

    @property
    def kwok_cluster_dir(self) -> Path:
        return self.kwok_workdir / "clusters" / CLUSTER_NAME

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig-admin.yaml"

    @property
    def researcher_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig-researcher.yaml"

    @property
    def audit_log(self) -> Path:
        return self.kwok_cluster_dir / "logs" / "audit.log"

    @property
    def podman_socket(self) -> Path:
        return self.run_dir / "podman.sock"

    @property
    def containers_conf(self) -> Path:
        return self.state_dir / "containers.conf"

    @property
    def registry_token(self) -> str:
        return f"127.0.0.1:{self.registry_token_port}"

    @property
    def registry_basic(self) -> str:
        return f"127.0.0.1:{self.registry_basic_port}"

    @property
    def token_realm(self) -> str:
        return f"https://127.0.0.1:{self.token_server_port}/service/token"

    @property
    def realnode_dir(self) -> Path:
        return self.state_dir / "realnode"

    @property
    def ready_marker(self) -> Path:
        return self.state_dir / "ready"
