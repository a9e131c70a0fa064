"""The localcluster command itself: idempotent up, status, env, and its errors."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import localcluster_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcluster"))
from urm_localcluster.processes import ComponentFailed, Process


@pytest.mark.integration
def test_up_on_a_healthy_cluster_does_nothing(localcluster) -> None:
    result = localcluster_cli("up")
    assert "already up and healthy; nothing to do" in result.stderr


@pytest.mark.integration
def test_status_reports_every_component(localcluster) -> None:
    out = localcluster_cli("status").stdout
    for component in (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok-controller",
        "registry-token",
        "registry-basic",
        "token-server",
        "podman-service",
    ):
        assert component in out
    assert "overall: healthy" in out


@pytest.mark.integration
def test_env_prints_shell_exports(localcluster) -> None:
    out = localcluster_cli("env").stdout
    for key in (
        "KUBECONFIG",
        "URM_LOCALCLUSTER_KUBECONFIG_RESEARCHER",
        "URM_LOCALCLUSTER_REGISTRY",
        "URM_LOCALCLUSTER_CA_CERT",
        "URM_LOCALCLUSTER_CREDENTIALS",
        "DOCKER_HOST",
    ):
        assert f"export {key}=" in out
    assert localcluster.users["researcher"] not in out


def _isolated_env(state: Path, apiserver_port: int) -> dict[str, str]:
    """Settings of a second world that cannot touch the running one (own state, ports)."""
    free = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free.append(probe.getsockname()[1])
    return dict(
        os.environ,
        URM_LOCALCLUSTER_STATE=str(state),
        URM_LOCALCLUSTER_APISERVER_PORT=str(apiserver_port),
        URM_LOCALCLUSTER_REGISTRY_TOKEN_PORT=str(free[0]),
        URM_LOCALCLUSTER_REGISTRY_BASIC_PORT=str(free[1]),
        URM_LOCALCLUSTER_TOKEN_SERVER_PORT=str(free[2]),
    )


def _held_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_up_names_a_port_that_is_taken(tmp_path: Path) -> None:
    with _held_port() as sock:
        port = sock.getsockname()[1]
        env = _isolated_env(tmp_path / "state", port)
        result = localcluster_cli("up", env=env, check=False)
    assert result.returncode != 0
    assert f"already in use on 127.0.0.1: port {port} (kube-apiserver);" in result.stderr


def test_up_cleans_a_stale_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    (state / "ready").write_text("0\n")
    (state / "run" / "registry-token.pid").write_text("999999\n")
    with _held_port() as sock:
        port = sock.getsockname()[1]
        env = _isolated_env(state, port)
        result = localcluster_cli("up", env=env, check=False)
    assert "found a stale cluster" in result.stderr
    assert not (state / "ready").exists()
    assert result.returncode != 0  # it then stops at the held port, before starting anything


def test_a_component_that_dies_during_start_shows_its_log(tmp_path: Path) -> None:
    proc = Process("broken", tmp_path / "run", tmp_path / "logs")
    proc.start(["sh", "-c", "echo 'listen tcp 127.0.0.1:1: bind: permission denied'; exit 3"])
    with pytest.raises(ComponentFailed) as failure:
        proc.wait_healthy(lambda: False, timeout=10)
    assert "broken exited during start-up" in str(failure.value)
    assert "bind: permission denied" in str(failure.value)
    proc.stop()
    assert not (tmp_path / "run" / "broken.pid").exists()
