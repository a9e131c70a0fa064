"""code_layer against the local registries (Bearer token and htpasswd Basic, one storage): the
appended image runs in podman, the same tree gives the same digest after one HEAD, base layers
are mounted and never downloaded, and bad input fails clearly with nothing pushed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._oci_append import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    USER_AGENT,
)
from ansible_collections.urm.training.plugins.module_utils._registry import (
    MANIFEST_ACCEPT,
    RegistryClient,
)
from tests.conftest import LocalCluster
from tests.integration.ansible_runner import RunResult, run_module, run_playbook

pytestmark = pytest.mark.integration

BASE_PATH = "library/busybox"
LINE_RE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) .*"(?P<ua>[^"]*)"$'
)
FLOWS = ["token", "basic"]


def registry_of(lc: LocalCluster, flow: str) -> str:
    return lc.registry_token if flow == "token" else lc.registry_basic


class AccessLog:
    """The registry's access log: the lines our module wrote after a mark."""

    def __init__(self, lc: LocalCluster, flow: str) -> None:
        self.path = lc.credentials_file.parent / "logs" / f"registry-{flow}.log"
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def requests(self) -> list[tuple[str, str, int]]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode("utf-8", "replace")
        found = []
        for line in text.splitlines():
            match = LINE_RE.search(line)
            if match and match.group("ua") == USER_AGENT:
                found.append(
                    (match.group("method"), match.group("path"), int(match.group("status")))
                )
        return found


def make_tree(root: Path, marker: str | None = None) -> Path:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(f"print('train {marker or uuid.uuid4().hex}')\n")
    (root / "pkg" / "model.py").write_text("LAYERS = 4\n")
    (root / "run.sh").write_text("#!/bin/sh\necho running\n")
    (root / "run.sh").chmod(0o700)  # normalised to 0755 in the layer
    (root / "secret.txt").write_text("x\n")
    (root / "secret.txt").chmod(0o600)  # normalised to 0644
    (root / "link.py").symlink_to("pkg/model.py")
    for excluded in ("data", "checkpoints", "wandb", "pkg/__pycache__", "outputs"):
        (root / excluded).mkdir(parents=True, exist_ok=True)
        (root / excluded / "blob.bin").write_bytes(b"\0" * 64)
    (root / "debug.log").write_text("excluded by .dockerignore\n")
    (root / ".dockerignore").write_text("*.log\n")
    return root


def code_layer(
    lc: LocalCluster,
    src: Path,
    repo: str,
    flow: str = "token",
    password: str | None = None,
    check: bool = False,
    base: str | None = None,
    **extra: Any,
) -> RunResult:
    registry = registry_of(lc, flow)
    args = {
        "src": str(src),
        "base": base or f"{registry}/{BASE_PATH}:latest",
        "repository": f"{registry}/{repo}",
        "registry_username": "researcher",
        "registry_password": "{{ lookup('ansible.builtin.env', 'URM_TEST_REGISTRY_PASSWORD') }}",
        "registry_ca_cert": str(lc.ca_cert),
        **extra,
    }
    secret = lc.users["researcher"] if password is None else password
    return run_module(
        "urm.training.code_layer", args, env={"URM_TEST_REGISTRY_PASSWORD": secret}, check=check
    )


def admin(lc: LocalCluster, flow: str = "token") -> RegistryClient:
    return RegistryClient(
        registry_of(lc, flow), "lcadmin", lc.users["lcadmin"], ca_cert=str(lc.ca_cert)
    )


def tags_of(lc: LocalCluster, repo: str) -> list[str]:
    resp = admin(lc).request("GET", f"/v2/{repo}/tags/list", scope=f"repository:{repo}:pull")
    if resp.status_code == 404:
        return []
    return list(resp.json().get("tags") or [])


def assert_no_secret(lc: LocalCluster, run: RunResult) -> None:
    for secret in lc.users.values():
        assert secret not in run.output
        assert secret not in run.recorder_text


def unique_repo(prefix: str = "code") -> str:
    return f"aic-misc/{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def authfile(localcluster: LocalCluster, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "auth.json"
    env = {**os.environ, "CONTAINERS_CONF": str(localcluster.containers_conf)}
    for registry in (localcluster.registry_token, localcluster.registry_basic):
        subprocess.run(
            [
                *("podman", "login", "--authfile", str(path)),
                *("--username", "researcher", "--password-stdin", registry),
            ],
            input=localcluster.users["researcher"],
            text=True,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    yield path


def podman(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(lc.containers_conf)}
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    proc = subprocess.run(
        ["git", "-C", str(cwd), *args], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.mark.parametrize("flow", FLOWS)
def test_appended_image_runs_in_podman_with_files_modes_and_workdir(
    localcluster: LocalCluster, tmp_path: Path, authfile: Path, flow: str
) -> None:
    src = make_tree(tmp_path / "src")
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "code")
    commit = git(src, "rev-parse", "HEAD")
    repo = unique_repo()
    run = code_layer(
        localcluster,
        src,
        repo,
        flow,
        env={"URM_MARK": "yes"},
        exclude=["outputs/"],
    )
    assert run.rc == 0, run.output[-3000:]
    result = run.adhoc
    registry = registry_of(localcluster, flow)
    assert result["changed"] is True and result["action"] == "appended"
    assert result["image_ref"] == f"{registry}/{repo}@{result['digest']}"
    assert result["tag"].startswith("code-") and tags_of(localcluster, repo) == [result["tag"]]
    # train.py, pkg/model.py, run.sh, secret.txt, link.py, .dockerignore
    assert result["file_count"] == 6
    assert result["git_commit"] == commit and result["git_dirty"] is False
    assert_no_secret(localcluster, run)

    shell = (
        "pwd; echo MARK=$URM_MARK; cd /workspace && stat -c '%a %u:%g %n' "
        ". run.sh secret.txt train.py pkg pkg/model.py; readlink link.py; ./run.sh; "
        "ls -A /workspace /workspace/pkg"
    )
    out = podman(
        localcluster,
        "run",
        "--rm",
        "--authfile",
        str(authfile),
        result["image_ref"],
        "sh",
        "-c",
        shell,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "/workspace"  # WORKDIR
    assert lines[1] == "MARK=yes"
    assert lines[2:8] == [
        "755 0:0 .",
        "755 0:0 run.sh",
        "644 0:0 secret.txt",
        "644 0:0 train.py",
        "755 0:0 pkg",
        "644 0:0 pkg/model.py",
    ]
    assert lines[8] == "pkg/model.py"
    assert lines[9] == "running"
    listing = set(lines[10:])
    for name in ("train.py", "run.sh", "pkg", "model.py", "link.py", ".dockerignore"):
        assert name in listing
    # Excluded by default, by .dockerignore and by the exclude option:
    for name in (".git", "data", "checkpoints", "wandb", "__pycache__", "debug.log", "outputs"):
        assert name not in listing, out.stdout

    inspect = podman(localcluster, "image", "inspect", result["image_ref"])
    assert inspect.returncode == 0, inspect.stderr
    labels = json.loads(inspect.stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["training.urm.io/git-dirty"] == "false"
    podman(localcluster, "rmi", "-f", result["image_ref"])

    (src / "train.py").write_text("print('dirty')\n")
    dirty = code_layer(localcluster, src, repo, flow)
    assert dirty.rc == 0, dirty.output[-3000:]
    assert dirty.adhoc["git_dirty"] is True and dirty.adhoc["digest"] != result["digest"]


@pytest.mark.parametrize("flow", FLOWS)
def test_same_tree_same_digest_after_one_head_and_one_byte_changes_it(
    localcluster: LocalCluster, tmp_path: Path, flow: str
) -> None:
    src = make_tree(tmp_path / "src", marker="fixed")
    repo = unique_repo()
    log = AccessLog(localcluster, flow)
    first = code_layer(localcluster, src, repo, flow)
    assert first.rc == 0, first.output[-3000:]
    assert first.adhoc["changed"] is True

    # A copy elsewhere, with other mtimes and modes beyond the executable bit: the same layer.
    copy = tmp_path / "copy"
    shutil.copytree(src, copy, symlinks=True)
    for path in copy.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_000_000, 1_000_000))
    (copy / "secret.txt").chmod(0o640)
    log.mark()
    second = code_layer(localcluster, copy, repo, flow)
    assert second.rc == 0, second.output[-3000:]
    assert second.adhoc["changed"] is False and second.adhoc["action"] == "skipped"
    assert second.adhoc["digest"] == first.adhoc["digest"]
    assert second.adhoc["layer_digest"] == first.adhoc["layer_digest"]
    requests = [(m, p) for m, p, _ in log.requests()]
    ping = [("GET", "/v2/")] if flow == "token" else [("GET", "/v2/"), ("GET", "/v2/")]
    assert requests == [
        *ping,
        ("HEAD", f"/v2/{BASE_PATH}/manifests/latest"),
        ("HEAD", f"/v2/{repo}/manifests/{first.adhoc['tag']}"),
    ]

    # The base given by digest: the only manifest request is the HEAD of the target tag.
    log.mark()
    by_digest = code_layer(
        localcluster,
        src,
        repo,
        flow,
        base=f"{registry_of(localcluster, flow)}/{BASE_PATH}@{first.adhoc['base_digest']}",
    )
    assert by_digest.rc == 0 and by_digest.adhoc["changed"] is False
    assert [(m, p) for m, p, _ in log.requests()] == [
        *ping,
        ("HEAD", f"/v2/{repo}/manifests/{first.adhoc['tag']}"),
    ]

    (src / "pkg" / "model.py").write_text("LAYERS = 5\n")  # one byte
    third = code_layer(localcluster, src, repo, flow)
    assert third.rc == 0, third.output[-3000:]
    assert third.adhoc["changed"] is True
    assert third.adhoc["layer_digest"] != first.adhoc["layer_digest"]
    assert third.adhoc["digest"] != first.adhoc["digest"]
    assert sorted(tags_of(localcluster, repo)) == sorted([first.adhoc["tag"], third.adhoc["tag"]])


@pytest.mark.parametrize("flow", FLOWS)
def test_base_layers_are_mounted_never_downloaded(
    localcluster: LocalCluster, tmp_path: Path, flow: str
) -> None:
    src = make_tree(tmp_path / "src")
    repo = unique_repo()
    base_manifest = (
        admin(localcluster, flow)
        .request(
            "GET",
            f"/v2/{BASE_PATH}/manifests/latest",
            scope=f"repository:{BASE_PATH}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        .json()
    )
    base_layers = [layer["digest"] for layer in base_manifest["layers"]]
    log = AccessLog(localcluster, flow)
    log.mark()
    run = code_layer(localcluster, src, repo, flow)
    assert run.rc == 0, run.output[-3000:]
    assert run.adhoc["mounted_layers"] == len(base_layers) and run.adhoc["copied_layers"] == 0
    assert run.adhoc["uploaded_bytes"] < 10_000  # the layer and the config only
    requests = log.requests()
    for digest in base_layers:
        assert not [r for r in requests if r[0] == "GET" and digest in r[1]], requests
        mount = [r for r in requests if r[0] == "POST" and "mount=" in r[1]]
        assert len(mount) == 1 and mount[0][2] == 201, requests
    blob_gets = [r for r in requests if r[0] == "GET" and "/blobs/" in r[1]]
    assert len(blob_gets) == 1  # the config (730 bytes), to write the new one
    # The layer and config uploads: one POST + PUT each.
    assert len([r for r in requests if r[0] == "PUT" and "/blobs/uploads/" in r[1]]) == 2


def test_mount_off_copies_the_base_layers_through_this_host(
    localcluster: LocalCluster, tmp_path: Path, authfile: Path
) -> None:
    src = make_tree(tmp_path / "src")
    repo = unique_repo()
    run = code_layer(localcluster, src, repo, mount=False)
    assert run.rc == 0, run.output[-3000:]
    assert run.adhoc["copied_layers"] == 1 and run.adhoc["mounted_layers"] == 0
    assert run.adhoc["uploaded_bytes"] > 1_000_000  # busybox's layer went through us
    out = podman(
        localcluster, "run", "--rm", "--authfile", str(authfile), run.adhoc["image_ref"], "ls"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train.py" in out.stdout.split()
    podman(localcluster, "rmi", "-f", run.adhoc["image_ref"])


def test_check_mode_writes_nothing_and_predicts_the_digest(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    repo = unique_repo()
    log = AccessLog(localcluster, "token")
    log.mark()
    check = code_layer(localcluster, src, repo, check=True)
    assert check.rc == 0, check.output[-3000:]
    assert check.adhoc["changed"] is True and check.adhoc["action"] == "would_append"
    assert {m for m, _, _ in log.requests()} <= {"GET", "HEAD"}
    assert tags_of(localcluster, repo) == []
    real = code_layer(localcluster, src, repo)
    assert real.rc == 0, real.output[-3000:]
    assert real.adhoc["image_ref"] == check.adhoc["image_ref"]
    again = code_layer(localcluster, src, repo, check=True)
    assert again.adhoc["action"] == "would_skip" and again.adhoc["changed"] is False


def arm64_only_base(lc: LocalCluster) -> str:
    """An index in aic-misc whose only entry claims linux/arm64 (it is busybox's amd64 image)."""
    client = admin(lc)
    repo = unique_repo("arm64-base")
    scope = f"repository:{repo}:pull,push repository:{BASE_PATH}:pull"
    resp = client.request(
        "GET",
        f"/v2/{BASE_PATH}/manifests/latest",
        scope=f"repository:{BASE_PATH}:pull",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    raw, digest = resp.content, resp.headers["Docker-Content-Digest"]
    manifest = json.loads(raw)
    for blob in [manifest["config"], *manifest["layers"]]:
        assert client.mount_blob(repo, blob["digest"], BASE_PATH) is None
    client.request(
        "PUT",
        f"/v2/{repo}/manifests/{digest}",
        scope=scope,
        headers={"Content-Type": manifest["mediaType"]},
        data=raw,
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": len(raw),
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            }
        ],
    }
    client.put_manifest(repo, "arm64only", json.dumps(index).encode(), OCI_INDEX)
    return f"{lc.registry_token}/{repo}:arm64only"


def test_multi_arch_index_picks_the_platform_or_refuses_clearly(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    base = arm64_only_base(localcluster)
    repo = unique_repo()
    run = code_layer(localcluster, src, repo, base=base)
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert "no image for platform linux/amd64" in msg and "linux/arm64/v8" in msg, msg
    assert tags_of(localcluster, repo) == []
    # Asking for arm64 selects the entry, whose config then tells the truth (amd64).
    lying = code_layer(localcluster, src, repo, base=base, platform="linux/arm64")
    assert lying.rc != 0 and "is a linux/amd64 image, not linux/arm64" in lying.adhoc["msg"]
    assert tags_of(localcluster, repo) == []


@pytest.mark.parametrize("flow", FLOWS)
def test_missing_base_and_wrong_credential_fail_clearly(
    localcluster: LocalCluster, tmp_path: Path, flow: str
) -> None:
    src = make_tree(tmp_path / "src")
    repo = unique_repo()
    registry = registry_of(localcluster, flow)
    missing = code_layer(localcluster, src, repo, flow, base=f"{registry}/library/nope:1.0")
    assert missing.rc != 0
    assert "base=" in missing.adhoc["msg"] and "does not exist" in missing.adhoc["msg"]
    wrong = code_layer(localcluster, src, repo, flow, password="not-the-password")
    assert wrong.rc != 0
    assert "authentication failed" in wrong.adhoc["msg"].lower(), wrong.adhoc["msg"]
    assert "not-the-password" not in wrong.output and "not-the-password" not in wrong.recorder_text
    assert_no_secret(localcluster, wrong)
    assert tags_of(localcluster, repo) == []


def test_bad_trees_fail_before_any_registry_request(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    repo = unique_repo()
    log = AccessLog(localcluster, "token")
    log.mark()
    missing = code_layer(localcluster, tmp_path / "nope", repo)
    assert missing.rc != 0 and "is not a directory" in missing.adhoc["msg"]

    outside = make_tree(tmp_path / "outside")
    (outside / "escape").symlink_to("../../etc/passwd")
    escaped = code_layer(localcluster, outside, repo)
    assert escaped.rc != 0
    assert "escape -> ../../etc/passwd" in escaped.adhoc["msg"]
    assert "points outside the tree" in escaped.adhoc["msg"]
    absolute = make_tree(tmp_path / "absolute")
    (absolute / "pkg" / "abs").symlink_to("/etc/hostname")
    assert "points outside the tree" in code_layer(localcluster, absolute, repo).adhoc["msg"]

    big = make_tree(tmp_path / "big")
    (big / "weights.bin").write_bytes(os.urandom(2 * 2**20 + 1))
    over = code_layer(localcluster, big, repo, max_size_mb=2)
    assert over.rc != 0 and "over max_size_mb=2" in over.adhoc["msg"], over.adhoc["msg"]
    # The same tree with the big file excluded fits.
    fits = code_layer(localcluster, big, repo, max_size_mb=2, exclude=["*.bin"], check=True)
    assert fits.rc == 0, fits.output[-2000:]

    requests = log.requests()
    assert {m for m, _, _ in requests} <= {"GET", "HEAD"}, requests
    assert tags_of(localcluster, repo) == []


def test_docker_config_credential(localcluster: LocalCluster, tmp_path: Path) -> None:
    import base64

    src = make_tree(tmp_path / "src")
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=tmp_path, delete=False) as handle:
        pair = f"researcher:{localcluster.users['researcher']}".encode()
        auth = base64.b64encode(pair).decode()
        json.dump({"auths": {f"https://{localcluster.registry_basic}": {"auth": auth}}}, handle)
    args = {
        "src": str(src),
        "base": f"{localcluster.registry_basic}/{BASE_PATH}:latest",
        "repository": f"{localcluster.registry_basic}/{unique_repo()}",
        "docker_config": handle.name,
        "registry_ca_cert": str(localcluster.ca_cert),
    }
    run = run_module("urm.training.code_layer", args)
    assert run.rc == 0, run.output[-3000:]
    assert run.adhoc["action"] == "appended"
    assert_no_secret(localcluster, run)


def test_roles_build_deps_append_code_and_label_the_job(
    localcluster: LocalCluster, tmp_path: Path
) -> None:
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "Dockerfile").write_text(
        f"FROM {localcluster.registry_token}/{BASE_PATH}:latest\nLABEL urm.deps=code-layer-test\n"
    )
    src = make_tree(tmp_path / "src")
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "code")
    commit = git(src, "rev-parse", "HEAD")
    (src / "train.py").write_text("print('uncommitted')\n")
    name = f"code-{uuid.uuid4().hex[:6]}"
    repository = f"{localcluster.registry_token}/aic-misc/code-role-test"
    play = [{
        "name": "Build deps, append the code, launch",
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {
            "group/urm.training.k8s": {
                "kubeconfig": str(localcluster.researcher_nodes_kubeconfig)
            }
        },
        "roles": [
            {
                "role": "urm.training.image_build",
                "vars": {
                    "image_build_builder": "docker",
                    "image_build_repository": repository,
                    "image_build_context_dir": str(deps),
                    "image_build_docker_host": localcluster.docker_host,
                    "image_build_registry_username": "researcher",
                    "image_build_registry_password":
                        "{{ lookup('ansible.builtin.env', 'URM_TEST_REGISTRY_PASSWORD') }}",
                    "image_build_registry_ca_cert": str(localcluster.ca_cert),
                    "image_build_code_dir": str(src),
                },
            },
            {
                "role": "urm.training.training_launch",
                "vars": {
                    "training_launch_namespace": localcluster.namespace,
                    "training_launch_run_name": name,
                    "training_launch_command": ["/bin/true"],
                    "training_launch_gpus": 1,
                    "training_launch_memory_per_gpu": "2Gi",
                    "training_launch_shm_size": "1Gi",
                    "training_launch_image_pull_secrets": [],
                    "training_launch_wait": "complete",
                },
            },
        ],
        "post_tasks": [
            {
                "name": "Show the refs",
                "ansible.builtin.debug": {
                    "msg": "{{ {'code': image_build_ref, 'deps': image_build_deps_ref} }}"
                },
            },
        ],
    }]  # fmt: skip
    try:
        run = run_playbook(
            play, env={"URM_TEST_REGISTRY_PASSWORD": localcluster.users["researcher"]}
        )
        assert run.rc == 0, run.output[-4000:]
        refs = run.task("Show the refs")["msg"]
        code = run.task("Append the code as one layer on the deps image")
        assert refs["code"] == code["image_ref"] and refs["code"] != refs["deps"]
        assert code["base_image"] == refs["deps"]  # appended to the deps image's digest
        job = json.loads(
            localcluster.kubectl(
                "-n", localcluster.namespace, "get", "job", name, "-o", "json"
            ).stdout
        )
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == refs["code"]
        labels = job["metadata"]["labels"]
        assert labels["training.urm.io/git-commit"] == commit
        assert labels["training.urm.io/git-dirty"] == "true"
        assert_no_secret(localcluster, run)
    finally:
        for kind in ("job", "pod", "configmap"):
            target = name if kind != "configmap" else f"urm-run-{name}"
            localcluster.kubectl(
                "-n",
                localcluster.namespace,
                "delete",
                kind,
                target,
                "--ignore-not-found",
                "--wait=true",
                "--cascade=foreground",
                check=False,
            )


def test_base_without_pull_right_fails_clearly(localcluster: LocalCluster, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    repo = unique_repo()
    run = code_layer(
        localcluster, src, repo, base=f"{localcluster.registry_token}/other-project/base:1"
    )
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert "base=" in msg and "refuses to let user 'researcher' read it" in msg, msg
    assert tags_of(localcluster, repo) == []


def docker_v2_base(lc: LocalCluster) -> str:
    """busybox re-described as a Docker v2 schema 2 manifest (same blobs) in aic-misc."""
    client = admin(lc)
    repo = unique_repo("v2s2-base")
    manifest = client.request(
        "GET",
        f"/v2/{BASE_PATH}/manifests/latest",
        scope=f"repository:{BASE_PATH}:pull",
        headers={"Accept": MANIFEST_ACCEPT},
    ).json()
    for blob in [manifest["config"], *manifest["layers"]]:
        assert client.mount_blob(repo, blob["digest"], BASE_PATH) is None
    docker = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            **manifest["config"],
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [{**layer, "mediaType": DOCKER_LAYER} for layer in manifest["layers"]],
    }
    client.put_manifest(repo, "v2s2", json.dumps(docker).encode(), DOCKER_MANIFEST)
    return f"{lc.registry_token}/{repo}:v2s2"


def test_docker_v2_base_gets_a_docker_v2_manifest_that_runs(
    localcluster: LocalCluster, tmp_path: Path, authfile: Path
) -> None:
    src = make_tree(tmp_path / "src")
    base = docker_v2_base(localcluster)
    repo = unique_repo()
    run = code_layer(localcluster, src, repo, base=base, workdir="/workspace/pkg")
    assert run.rc == 0, run.output[-3000:]
    assert run.adhoc["media_type"] == DOCKER_MANIFEST
    raw = admin(localcluster).request(
        "GET",
        f"/v2/{repo}/manifests/{run.adhoc['tag']}",
        scope=f"repository:{repo}:pull",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    manifest = raw.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST and "annotations" not in manifest
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER}
    out = podman(
        localcluster,
        "run",
        "--rm",
        "--authfile",
        str(authfile),
        run.adhoc["image_ref"],
        "sh",
        "-c",
        "pwd; cat model.py",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["/workspace/pkg", "LAYERS = 4"]
    podman(localcluster, "rmi", "-f", run.adhoc["image_ref"])
