"""A second, isolated local world with a real node (kubelet + containerd), for tests/realnode.

It never touches the default world: its own state dir and ports (override them with the same
URM_LOCALCLUSTER_* variables prefixed URM_REALNODE_, e.g. URM_REALNODE_STATE). A healthy world
with a real node at that state dir is reused and left running; otherwise it is brought up with
`localcluster up --real-node` and taken down at the end (URM_KEEP_LOCALCLUSTER=1 keeps it).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LocalCluster, localcluster_cli

WORLD_ENV_FILE = Path(__file__).resolve().parents[2] / "localcluster" / "realnode-world.env"


def world_defaults() -> dict[str, str]:
    """localcluster/realnode-world.env, the one place the real-node world's settings live."""
    values = {}
    for line in WORLD_ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def world_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, default in world_defaults().items():
        suffix = key.removeprefix("URM_LOCALCLUSTER_")
        env[key] = os.environ.get(f"URM_REALNODE_{suffix}", default)
    env["URM_LOCALCLUSTER_REAL_NODE"] = "1"
    return env


class RealNodeWorld(LocalCluster):
    """The isolated world, plus what `env` exports about its real node."""

    env: dict[str, str]
    node: str
    accelerator: str
    python_image: str
    authfile: Path

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, CONTAINERS_CONF=str(self.containers_conf))
        return subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=env, check=True, timeout=300
        )


def _load(env: dict[str, str]) -> RealNodeWorld:
    world = RealNodeWorld.from_env(env)
    exports = world.exports
    world.env = env
    world.node = exports["URM_LOCALCLUSTER_REAL_NODE_NAME"]
    world.accelerator = exports["URM_LOCALCLUSTER_REAL_NODE_ACCELERATOR"]
    world.python_image = exports["URM_LOCALCLUSTER_PYTHON_IMAGE"]
    world.authfile = Path(env["URM_LOCALCLUSTER_STATE"]) / "podman-auth.json"
    return world


@pytest.fixture(scope="session")
def realnode() -> Iterator[RealNodeWorld]:
    env = world_env()
    status = localcluster_cli("status", "--json", env=env, check=False)
    was_up = status.returncode == 0 and "real-node-ready" in json.loads(status.stdout)["checks"]
    if not was_up:
        result = localcluster_cli("up", "--real-node", env=env, check=False)
        if result.returncode != 0:
            pytest.fail(f"localcluster up --real-node failed:\n{result.stderr[-4000:]}")
    yield _load(env)
    if not was_up and os.environ.get("URM_KEEP_LOCALCLUSTER") != "1":
        localcluster_cli("down", env=env, check=False)
