"""docker_build through podman's Docker API against the local token registry, and the image_build
role with builder docker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import scan
from ansible_collections.urm.training.plugins.module_utils._registry import RegistryClient
from tests.conftest import LocalCluster
from tests.integration.ansible_runner import RunResult, run_module, run_playbook

pytestmark = pytest.mark.integration

REPO_PATH = "aic-misc/urm-build-test"


def make_context(root: Path, marker: str | None = None, broken: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    marker = marker or uuid.uuid4().hex
    run = "RUN echo building-marker-output && exit 3" if broken else "RUN cat /app/hello.txt"
    (root / "Dockerfile").write_text(
        "FROM 127.0.0.1:15000/library/busybox:latest\n"
        "COPY hello.txt /app/hello.txt\n"
        "COPY src/ /app/src/\n"
        f"{run}\n"
    )
    (root / "hello.txt").write_text(f"hello {marker}\n")
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "main.py").write_text("print('urm')\n")
    (root / "scratch.log").write_text("not sent\n")
    (root / ".dockerignore").write_text("*.log\n")
    return root


def registry_digest(lc: LocalCluster, tag: str, path: str = REPO_PATH) -> str | None:
    client = RegistryClient(
        lc.registry_token, "lcadmin", lc.users["lcadmin"], ca_cert=str(lc.ca_cert)
    )
    info = client.manifest_head(path, tag)
    return info.digest if info.exists else None


def docker_build(
    lc: LocalCluster, ctx: Path, password_env: str = "researcher", check: bool = False, **extra: Any
) -> RunResult:
    args = {
        "repository": f"{lc.registry_token}/{REPO_PATH}",
        "context_dir": str(ctx),
        "docker_host": lc.docker_host,
        "registry_username": "researcher",
        "registry_password": "{{ lookup('ansible.builtin.env', 'URM_TEST_REGISTRY_PASSWORD') }}",
        "registry_ca_cert": str(lc.ca_cert),
        **extra,
    }
    password = lc.users["researcher"] if password_env == "researcher" else password_env
    return run_module(
        "urm.training.docker_build", args, env={"URM_TEST_REGISTRY_PASSWORD": password}, check=check
    )


def assert_no_secret(lc: LocalCluster, run: RunResult) -> None:
    for secret in lc.users.values():
        assert secret not in run.output
        assert secret not in run.recorder_text


def test_builds_pushes_and_returns_the_registry_digest(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path / "ctx")
    expected_tag = scan(str(ctx)).tag
    assert registry_digest(localcluster, expected_tag) is None
    started = time.monotonic()
    run = docker_build(localcluster, ctx)
    elapsed = time.monotonic() - started
    result = run.adhoc
    assert run.rc == 0, run.output[-3000:]
    assert result["changed"] is True and result["action"] == "built"
    assert result["tag"] == expected_tag  # the same hash as kaniko_build computes
    assert result["digest"] == registry_digest(localcluster, expected_tag)
    assert result["image_ref"] == f"{localcluster.registry_token}/{REPO_PATH}@{result['digest']}"
    assert result["context_files"] == 4  # Dockerfile, .dockerignore, hello.txt, src/main.py
    assert_no_secret(localcluster, run)
    print(f"docker_build build+push: module {result['duration']}s, task {elapsed:.1f}s")

    again = docker_build(localcluster, ctx)
    assert again.rc == 0, again.output[-3000:]
    assert again.adhoc["changed"] is False and again.adhoc["action"] == "skipped"
    assert again.adhoc["digest"] == result["digest"]

    # Check mode needs no daemon: it only hashes the context and asks the registry.
    check = docker_build(localcluster, ctx, check=True, docker_host="unix:///nonexistent")
    assert check.rc == 0, check.output[-2000:]
    assert check.adhoc["action"] == "would_skip" and check.adhoc["changed"] is False


def test_changing_one_file_gives_a_new_tag_and_a_build(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path / "ctx")
    first = docker_build(localcluster, ctx)
    assert first.rc == 0, first.output[-3000:]
    (ctx / "src" / "main.py").write_text("print('changed')\n")
    no_daemon = docker_build(localcluster, ctx, docker_host="unix:///nonexistent")
    second = docker_build(localcluster, ctx)
    assert second.rc == 0, second.output[-3000:]
    assert second.adhoc["tag"] != first.adhoc["tag"]
    assert second.adhoc["changed"] is True and second.adhoc["action"] == "built"
    assert second.adhoc["digest"] != first.adhoc["digest"]
    assert second.adhoc["digest"] == registry_digest(localcluster, second.adhoc["tag"])
    # The changed context had to be built, so the run without a daemon failed on the daemon.
    assert no_daemon.rc != 0 and "Docker API" in no_daemon.adhoc["msg"]


def test_check_mode_builds_nothing(localcluster: LocalCluster, tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx")
    tag = scan(str(ctx)).tag
    run = docker_build(localcluster, ctx, check=True)
    assert run.rc == 0, run.output[-2000:]
    assert run.adhoc["action"] == "would_build" and run.adhoc["changed"] is True
    assert registry_digest(localcluster, tag) is None


def test_broken_dockerfile_fails_with_the_log_tail(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path / "ctx", broken=True)
    run = docker_build(localcluster, ctx)
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert "building" in msg and "failed" in msg
    assert "last 50 lines of the build log" in msg and "building-marker-output" in msg
    assert registry_digest(localcluster, scan(str(ctx)).tag) is None


def test_wrong_password_fails_naming_authentication(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path / "ctx")
    wrong = "wrong-" + uuid.uuid4().hex
    run = docker_build(localcluster, ctx, password_env=wrong)
    assert run.rc != 0
    assert "authentication failed" in run.adhoc["msg"].lower()
    assert wrong not in run.output and wrong not in run.recorder_text
    assert registry_digest(localcluster, scan(str(ctx)).tag) is None


def test_role_with_docker_builder_sets_image_build_ref(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    ctx = make_context(tmp_path / "ctx")
    play = [{
        "name": "Build the image",
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{
            "role": "urm.training.image_build",
            "vars": {
                "image_build_builder": "docker",
                "image_build_repository": f"{localcluster.registry_token}/{REPO_PATH}",
                "image_build_context_dir": str(ctx),
                "image_build_docker_host": localcluster.docker_host,
                "image_build_registry_username": "researcher",
                "image_build_registry_password":
                    "{{ lookup('ansible.builtin.env', 'URM_TEST_REGISTRY_PASSWORD') }}",
                "image_build_registry_ca_cert": str(localcluster.ca_cert),
            },
        }],
        "post_tasks": [
            {"name": "Show the ref", "ansible.builtin.debug": {"var": "image_build_ref"}},
        ],
    }]  # fmt: skip
    run = run_playbook(play, env={"URM_TEST_REGISTRY_PASSWORD": localcluster.users["researcher"]})
    assert run.rc == 0, run.output[-3000:]
    ref = run.task("Show the ref")["image_build_ref"]
    tag = scan(str(ctx)).tag
    assert ref == f"{localcluster.registry_token}/{REPO_PATH}@{registry_digest(localcluster, tag)}"
    assert_no_secret(localcluster, run)
