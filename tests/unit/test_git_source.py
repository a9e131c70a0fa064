"""The git code source of a training run: validation, the init container it renders, the
preflight of its credential Secret, and how a failed fetch is explained."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._preflight import (
    PreflightError,
    check_references,
)
from ansible_collections.urm.training.plugins.module_utils._training import (
    ANNOTATION_GIT_REPO,
    GIT_CONTAINER,
    LABEL_GIT_COMMIT,
    SpecError,
    build_spec,
    spec_hash,
    workload,
)
from ansible_collections.urm.training.plugins.module_utils._training_run import (
    RUN_OPTIONS,
    expand_runs,
)
from ansible_collections.urm.training.plugins.module_utils._wait import diagnose_pod

COMMIT = "3f1c9a6e2b7d4c0a9e8f7b6a5d4c3b2a1f0e9d8c"
REPO = "https://git.example.org/aic/urm.git"


def params(**git: Any) -> dict[str, Any]:
    source = {"repo": REPO, "commit": COMMIT}
    source.update(git)
    return {
        "name": "urm-git",
        "namespace": "aic",
        "image": "registry.ice.ri.se/aic-misc/urm-training@sha256:" + "a" * 64,
        "command": ["torchrun", "pretrain.py"],
        "gpus": 8,
        "gpu_type": "nvidia-h100",
        "git": {k: v for k, v in source.items() if v is not None},
        "volumes": [{"mount_path": "/checkpoints", "claim": "ckpt"}],
    }


def pod_of(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["template"]["spec"]


def test_the_init_container_fetches_the_commit_into_the_working_directory() -> None:
    body = workload(build_spec(params(credentials_secret="urm-git-cred")))
    pod = pod_of(body)
    (init,) = pod["initContainers"]
    (train,) = pod["containers"]
    assert init["name"] == GIT_CONTAINER
    assert init["image"] == params()["image"], "default: the run's own image, already pulled"
    assert init["command"][:2] == ["sh", "-c"]
    env = {e["name"]: e for e in init["env"]}
    assert env["GIT_REPO"]["value"] == REPO
    assert env["GIT_COMMIT"]["value"] == COMMIT
    assert env["CODE_DIR"]["value"] == "/workspace"
    assert env["GIT_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "urm-git-cred", "key": "password"}
    }
    assert env["GIT_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    assert {"name": "code", "emptyDir": {}} in pod["volumes"]
    assert init["volumeMounts"] == [{"name": "code", "mountPath": "/workspace"}]
    assert {"name": "code", "mountPath": "/workspace"} in train["volumeMounts"]
    assert train["workingDir"] == "/workspace"
    assert "nvidia.com/gpu" not in init["resources"]["requests"]
    assert init["resources"]["limits"]["memory"] == "2Gi"
    for meta in (body["metadata"], body["spec"]["template"]["metadata"]):
        assert meta["labels"][LABEL_GIT_COMMIT] == COMMIT
        assert meta["labels"]["training.urm.io/git-dirty"] == "false"
        assert meta["annotations"][ANNOTATION_GIT_REPO] == REPO


def test_without_credentials_no_secret_is_referenced_and_the_image_can_be_chosen() -> None:
    spec = build_spec(params(image="alpine/git:2.47.2", path="/code/", depth=5))
    (init,) = pod_of(workload(spec))["initContainers"]
    names = {e["name"] for e in init["env"]}
    assert "GIT_USERNAME" not in names and "GIT_PASSWORD" not in names
    assert init["image"] == "alpine/git:2.47.2"
    assert {e["name"]: e.get("value") for e in init["env"]}["GIT_DEPTH"] == "5"
    assert pod_of(workload(spec))["containers"][0]["workingDir"] == "/code"


def test_a_new_commit_is_a_new_run_spec() -> None:
    first = spec_hash(workload(build_spec(params())))
    again = spec_hash(workload(build_spec(params())))
    other = spec_hash(workload(build_spec(params(commit="b" * 40))))
    assert first == again != other


def test_devpod_with_git_starts_in_the_checkout() -> None:
    spec = build_spec({**params(path="/src"), "mode": "devpod"})
    body = workload(spec)
    assert body["kind"] == "Pod"
    assert body["spec"]["initContainers"][0]["name"] == GIT_CONTAINER
    assert body["spec"]["containers"][0]["workingDir"] == "/src"


@pytest.mark.parametrize(
    ("git", "message"),
    [
        ({"commit": "main"}, "must be a full commit id"),
        ({"commit": COMMIT[:12]}, "must be a full commit id"),
        ({"commit": COMMIT.upper()}, "must be a full commit id"),
        ({"repo": "git@github.com:aic/urm.git"}, "is an ssh remote, which needs a key"),
        ({"repo": "ssh://git@github.com/aic/urm.git"}, "is an ssh remote, which needs a key"),
        ({"repo": "ssh://git:ghp_planted@github.com/aic/urm.git"}, "must not carry credentials"),
        ({"repo": "file:///srv/urm.git"}, "must be an https:// URL"),
        ({"repo": "/srv/urm.git"}, "must be an https:// URL"),
        ({"repo": "https://bob:ghp_planted@github.com/aic/urm.git"}, "must not carry credentials"),
        ({"repo": ""}, "must be an https:// URL"),
        ({"path": "relative"}, "must be an absolute directory"),
        ({"path": "/dev/shm"}, "must be an absolute directory"),
        ({"path": "/checkpoints"}, "is also the mount path of volume"),
        ({"credentials_secret": "Bad_Name"}, "git.credentials_secret"),
        ({"image": "Not A Ref"}, "git.image"),
        ({"depth": 0}, "git.depth=0 must be >= 1"),
        ({"branch": "main"}, "unknown key(s) branch"),
    ],
)
def test_bad_git_options_are_refused_with_the_fix(git: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        build_spec(params(**git))
    assert "ghp_planted" not in str(caught.value)


class Secrets:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert kind in ("Secret", "PersistentVolumeClaim")
        return self.objects.get(name, {"metadata": {}} if kind != "Secret" else None)


def test_preflight_checks_the_credential_secret_keys_without_values() -> None:
    spec = build_spec(params(credentials_secret="urm-git-cred"))
    ok = {
        "urm-git-cred": {
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "", "password": ""},
        }
    }
    check_references(Secrets(ok), spec, {})  # type: ignore[arg-type]
    with pytest.raises(PreflightError, match="Secret aic/urm-git-cred does not exist"):
        check_references(Secrets({}), spec, {})  # type: ignore[arg-type]
    token_only = {"urm-git-cred": {"type": "Opaque", "data": {"token": "c2VjcmV0"}}}
    with pytest.raises(
        PreflightError, match="has no key 'username' or 'password' \\(its keys: token\\)"
    ):
        check_references(Secrets(token_only), spec, {})  # type: ignore[arg-type]


def test_a_failed_fetch_is_reported_as_the_init_container_with_gits_reason() -> None:
    pod = {
        "metadata": {"name": "urm-git-abcde"},
        "spec": {"initContainers": [{"name": GIT_CONTAINER}], "containers": [{"name": "train"}]},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                {
                    "name": GIT_CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "message": f"could not fetch commit {COMMIT} from {REPO}: the "
                            "repository has no such commit\n",
                        }
                    },
                }
            ],
        },
    }
    found = diagnose_pod(pod)
    assert found is not None
    assert found.reason == "InitContainerFailed"
    assert found.message == (
        f"init container '{GIT_CONTAINER}' failed with exit code 1, so the training never started: "
        f"could not fetch commit {COMMIT} from {REPO}: the repository has no such commit"
    )


def test_a_sweep_can_run_several_commits_and_each_is_validated() -> None:
    defaults = {k: option.get("default") for k, option in RUN_OPTIONS.items()}
    base = {**defaults, **{k: v for k, v in params().items() if k != "name"}}
    expanded = expand_runs(
        {
            **base,
            "runs": [
                {"name": "at-a", "git": {"repo": REPO, "commit": "a" * 40}},
                {"name": "at-b", "git": {"repo": REPO, "commit": "b" * 40}},
            ],
        }
    )
    labels = [workload(build_spec(run))["metadata"]["labels"][LABEL_GIT_COMMIT] for run in expanded]
    assert labels == ["a" * 40, "b" * 40]
    bad = expand_runs({**base, "runs": [{"name": "at-x", "git": {"repo": REPO, "commit": "x"}}]})
    with pytest.raises(SpecError, match=re.escape("git.commit='x' must be a full commit id")):
        build_spec(bad[0])


@pytest.mark.parametrize(
    "repo", ["ssh://git@git.example.org:2222/aic/urm.git", "git@github.com:aic/urm.git"]
)
def test_an_ssh_remote_mounts_the_deploy_key_read_only_and_trusts_only_known_hosts(
    repo: str,
) -> None:
    spec = build_spec(params(repo=repo, credentials_secret="urm-git-key"))
    assert spec.git is not None and spec.git.transport == "ssh"
    pod = pod_of(workload(spec))
    (init,) = pod["initContainers"]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert "GIT_USERNAME" not in env and "GIT_PASSWORD" not in env
    command = env["GIT_SSH_COMMAND"]
    for option in (
        "-i /etc/urm-git-ssh/ssh-privatekey",
        "UserKnownHostsFile=/etc/urm-git-ssh/known_hosts",
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
        "IdentitiesOnly=yes",
    ):
        assert option in command
    assert {"name": "git-ssh", "mountPath": "/etc/urm-git-ssh", "readOnly": True} in init[
        "volumeMounts"
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "git-ssh"]
    assert volume["secret"] == {
        "secretName": "urm-git-key",
        "defaultMode": 0o400,
        "items": [
            {"key": "ssh-privatekey", "path": "ssh-privatekey"},
            {"key": "known_hosts", "path": "known_hosts"},
        ],
    }
    train_mounts = {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert "git-ssh" not in train_mounts, "the training container never sees the key"


def test_preflight_wants_the_ssh_keys_for_an_ssh_remote() -> None:
    spec = build_spec(params(repo="git@github.com:aic/urm.git", credentials_secret="k"))
    key_only = {"k": {"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": "a2V5"}}}
    with pytest.raises(
        PreflightError,
        match=re.escape(
            "has no key 'known_hosts' (its keys: ssh-privatekey); git over ssh needs "
            "ssh-privatekey and known_hosts"
        ),
    ):
        check_references(Secrets(key_only), spec, {})  # type: ignore[arg-type]
    both = {"k": {"data": {"ssh-privatekey": "a2V5", "known_hosts": "aG9zdA=="}}}
    check_references(Secrets(both), spec, {})  # type: ignore[arg-type]
