"""The pure builders of kaniko_build: request parsing, the ConfigMap and the Job."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import ContextError
from ansible_collections.urm.training.plugins.module_utils._kaniko import (
    CONFIGMAP_LIMIT,
    build_configmap,
    build_job,
    check_size,
    kaniko_args,
    owner_patch,
    parse_request,
    termination_message,
)


def params(ctx: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "repository": "registry.ice.ri.se/aic-misc/urm-training",
        "context_dir": str(ctx),
        "dockerfile": "Dockerfile",
        "namespace": "aic",
        "registry_secret": "urm-registry-cred",
        "build_args": {},
        "extra_tags": [],
        "resources": {},
        "cache": True,
        "ttl": 600,
        "push_retry": 2,
    }
    base.update(extra)
    return base


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /a.txt\n")
    (tmp_path / "a.txt").write_text("a\n")
    return tmp_path


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_job_is_named_from_the_hash_and_pushes_each_tag(ctx: Path) -> None:
    req = parse_request(params(ctx, extra_tags=["latest"]))
    job = build_job(req)
    assert job["metadata"]["name"] == f"kaniko-{req.ctx.digest[:12]}"
    assert req.tags == [f"ctx-{req.ctx.digest[:16]}", "latest"]
    args = container(job)["args"]
    repo = "registry.ice.ri.se/aic-misc/urm-training"
    assert f"--destination={repo}:ctx-{req.ctx.digest[:16]}" in args
    assert f"--destination={repo}:latest" in args
    assert "--digest-file=/dev/termination-log" in args
    assert "--context=tar:///kaniko/context/context.tar.gz" in args
    assert "--dockerfile=Dockerfile" in args
    assert "--cache=true" in args and f"--cache-repo={repo}/cache" in args


def test_job_spec_mounts_and_policies(ctx: Path) -> None:
    req = parse_request(
        params(
            ctx,
            node_selector={"accelerator": "none"},
            tolerations=[{"key": "k", "operator": "Exists"}],
        )
    )
    job = build_job(req)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"accelerator": "none"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["imagePullSecrets"] == [{"name": "urm-registry-cred"}]
    c = container(job)
    assert {"name": "DOCKER_CONFIG", "value": "/kaniko/.docker/"} in c["env"]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["docker-config"]["secret"] == {
        "secretName": "urm-registry-cred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["docker-config"] == "/kaniko/.docker/"
    # The context must not sit under a path the image itself uses (Kaniko skips mounts).
    assert mounts["context"].startswith("/kaniko/")
    assert "registry-ca" not in volumes
    limits = c["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "32Gi", "ephemeral-storage": "100Gi"}
    assert c["resources"]["requests"] == limits


def test_resources_override_keeps_other_defaults(ctx: Path) -> None:
    req = parse_request(params(ctx, resources={"memory": "48Gi", "cpu": None}))
    limits = container(build_job(req))["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "48Gi", "ephemeral-storage": "100Gi"}


def test_ca_and_insecure(ctx: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    ca = tmp_path_factory.mktemp("ca") / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    req = parse_request(params(ctx, registry_ca_cert=str(ca)))
    job = build_job(req)
    args = container(job)["args"]
    assert "--registry-certificate=registry.ice.ri.se=/kaniko/certs/registry-ca.crt" in args
    assert "--skip-tls-verify" not in args
    cm = build_configmap(req, b"x")
    assert cm["data"]["registry-ca.crt"] == ca.read_text()
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["registry-ca"]["configMap"]["name"] == req.name
    insecure = parse_request(params(ctx, registry_validate_certs=False))
    args = kaniko_args(insecure)
    assert "--skip-tls-verify" in args
    assert not any(a.startswith("--registry-certificate") for a in args)


def test_build_args_target_and_no_cache(ctx: Path) -> None:
    req = parse_request(params(ctx, build_args={"B": 2, "A": "x"}, target="dev", cache=False))
    args = kaniko_args(req)
    assert args.index("--build-arg=A=x") < args.index("--build-arg=B=2")
    assert "--target=dev" in args and "--cache=false" in args
    assert not any(a.startswith("--cache-repo") for a in args)


def test_configmap_holds_the_context(ctx: Path) -> None:
    from ansible_collections.urm.training.plugins.module_utils._build_context import tar_gz

    req = parse_request(params(ctx))
    archive = tar_gz(req.ctx)
    cm = build_configmap(req, archive)
    assert cm["metadata"]["name"] == req.name
    raw = base64.b64decode(cm["binaryData"]["context.tar.gz"])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "a.txt"]
    assert "data" not in cm  # no CA given


def test_explicit_tag(ctx: Path) -> None:
    req = parse_request(params(ctx, tag="v1", extra_tags=["v1", "latest"]))
    assert req.tags == ["v1", "latest"]


def test_context_too_big_names_size_and_limit() -> None:
    with pytest.raises(ContextError) as info:
        check_size(b"\0" * CONFIGMAP_LIMIT, None)
    text = str(info.value)
    assert str(CONFIGMAP_LIMIT) in text and str(CONFIGMAP_LIMIT) + " bytes" in text
    assert "ConfigMap" in text
    assert check_size(b"\0" * 1000, "ca") == 1002


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"namespace": "Bad_NS"}, "namespace"),
        ({"registry_secret": "Bad Secret"}, "registry_secret"),
        ({"repository": "aic-misc/urm"}, "registry host"),
        ({"tag": "bad tag"}, "not a valid image tag"),
        ({"dockerfile": "../x"}, "outside the context"),
        ({"context_dir": "/nonexistent/ctx"}, "is not a directory"),
        ({"cache_repo": "nohost"}, "cache_repo"),
        ({"registry_ca_cert": "/nonexistent/ca.crt"}, "registry_ca_cert"),
    ],
)
def test_bad_input(ctx: Path, override: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ContextError, match=fragment):
        parse_request(params(ctx, **override))


def test_owner_patch_points_at_the_job() -> None:
    patch = owner_patch({"metadata": {"name": "kaniko-x", "uid": "u-1"}})
    ref = patch["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Job", "kaniko-x", "u-1")


def test_termination_message() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "other", "state": {"terminated": {"message": "nope"}}},
                {"name": "kaniko", "state": {"terminated": {"message": "sha256:" + "a" * 64}}},
            ]
        }
    }
    assert termination_message(pod) == "sha256:" + "a" * 64
    assert termination_message({"status": {}}) == ""


def test_no_credential_in_objects(ctx: Path) -> None:
    req = parse_request(params(ctx))
    text = json.dumps([build_job(req), build_configmap(req, b"ctx")])
    assert "password" not in text and "auth" not in text.replace("automount", "")


# -- the wait-and-verify step, with the watch and the registry faked --------------------------


class FakeK8s:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.deleted: list[str] = []

    def delete(self, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        self.deleted.append(name)
        return True

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return {"metadata": {"name": name}, "status": {}}

    def list(self, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return self.pods if kind == "Pod" else []


class FakeRegistry:
    def __init__(self, digest: str | None) -> None:
        self.digest = digest

    def manifest_head(self, repository: str, reference: str) -> Any:
        from ansible_collections.urm.training.plugins.module_utils._registry import ManifestInfo

        return ManifestInfo(self.digest is not None, self.digest)


def pod(
    phase: str, message: str = "", exit_code: int = 0, reason: str = "Completed"
) -> dict[str, Any]:
    term = {"exitCode": exit_code, "reason": reason, "message": message}
    return {
        "metadata": {"name": "kaniko-abc-x"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "kaniko", "state": {"terminated": term}}],
        },
    }


@pytest.fixture
def fake_watch(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from ansible_collections.urm.training.plugins.module_utils import _kaniko

    state: dict[str, Any] = {"pod": None, "log": "step 1\nerror: boom"}

    def watch_until(client: Any, kind: str, namespace: str, predicate: Any, **kw: Any) -> Any:
        if kind == "Pod":
            if state["pod"] is None:
                raise _kaniko.WaitTimeout("timed out")
            return predicate(state["pod"])
        return "Complete"

    monkeypatch.setattr(_kaniko, "watch_until", watch_until)
    monkeypatch.setattr(_kaniko, "pod_logs", lambda *a, **k: state["log"])
    return state


DIGEST = "sha256:" + "b" * 64


def test_digest_from_the_termination_message(ctx: Path, fake_watch: dict[str, Any]) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import wait_for_build

    req = parse_request(params(ctx))
    fake_watch["pod"] = pod("Succeeded", DIGEST + "\n")
    result = wait_for_build(FakeK8s([]), FakeRegistry(None), req, 10, 0.0)  # type: ignore[arg-type]
    assert result["digest"] == DIGEST and result["digest_source"] == "termination-message"
    assert result["image_ref"] == f"registry.ice.ri.se/aic-misc/urm-training@{DIGEST}"


def test_digest_falls_back_to_the_registry(ctx: Path, fake_watch: dict[str, Any]) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import wait_for_build

    req = parse_request(params(ctx))
    fake_watch["pod"] = pod("Succeeded")
    result = wait_for_build(FakeK8s([]), FakeRegistry(DIGEST), req, 10, 0.0)  # type: ignore[arg-type]
    assert result["digest"] == DIGEST and result["digest_source"] == "registry"


@pytest.mark.parametrize("message", ["", "not a digest"])
def test_success_without_digest_or_manifest_fails(
    ctx: Path, fake_watch: dict[str, Any], message: str
) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import (
        BuildError,
        wait_for_build,
    )

    req = parse_request(params(ctx))
    fake_watch["pod"] = pod("Succeeded", message)
    with pytest.raises(BuildError, match="the Kaniko Job completed but pushed no image"):
        wait_for_build(FakeK8s([]), FakeRegistry(None), req, 10, 0.0)  # type: ignore[arg-type]


def test_failure_gives_reason_and_log_tail(ctx: Path, fake_watch: dict[str, Any]) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import (
        BuildError,
        wait_for_build,
    )

    req = parse_request(params(ctx))
    fake_watch["pod"] = pod("Failed", "", exit_code=1, reason="Error")
    with pytest.raises(BuildError) as info:
        wait_for_build(FakeK8s([]), FakeRegistry(None), req, 10, 0.0)  # type: ignore[arg-type]
    assert "exited with code 1" in info.value.message
    assert info.value.message.endswith("step 1\nerror: boom")


def test_timeout_names_the_pod_problem(ctx: Path, fake_watch: dict[str, Any]) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import (
        BuildError,
        wait_for_build,
    )

    req = parse_request(params(ctx))
    pending = {
        "metadata": {"name": "kaniko-abc-x"},
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/4 nodes are available: 4 Insufficient memory.",
        }]},
    }  # fmt: skip
    with pytest.raises(BuildError) as info:
        wait_for_build(FakeK8s([pending]), FakeRegistry(None), req, 0.2, 0.0)  # type: ignore[arg-type]
    assert "timed out after 0s" in info.value.message
    assert "Insufficient memory" in info.value.message and "rerun attaches" in info.value.message
    # the same pod, seen for longer than unschedulable_timeout: give up and delete the Job
    fake_watch["pod"] = pending
    client = FakeK8s([pending])
    with pytest.raises(BuildError) as info:
        wait_for_build(client, FakeRegistry(None), req, 10, 0.0, stuck_after=0)  # type: ignore[arg-type]
    assert "cannot be scheduled" in info.value.message and "was deleted" in info.value.message
    assert client.deleted == [req.name]


@pytest.mark.parametrize("module", ["kaniko_build", "docker_build"])
def test_ansible_doc_renders(module: str) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", f"urm.training.{module}"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=120,
        env={"ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    doc = json.loads(out.stdout)[f"urm.training.{module}"]["doc"]
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert "context_dir" in doc["options"] and "repository" in doc["options"]


class RecordingK8s:
    """Answers like the API server would when another run got there first."""

    def __init__(self, cm: dict[str, Any] | None, conflict: set[str]) -> None:
        self.cm, self.conflict, self.calls = cm, conflict, []  # type: ignore[var-annotated]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.cm if kind == "ConfigMap" else None

    def create(self, kind: str, body: dict[str, Any], namespace: str | None = None) -> Any:
        from ansible_collections.urm.training.plugins.module_utils._k8s import K8sApiError

        self.calls.append(("create", kind))
        if kind in self.conflict:
            raise K8sApiError("Conflict (409)", 409)
        return {"metadata": {"name": body["metadata"]["name"], "uid": "u-1"}}

    def patch(self, kind: str, name: str, patch: Any, namespace: str | None = None) -> Any:
        self.calls.append(("patch", kind))
        return {}

    def delete(self, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        self.calls.append(("delete", kind))
        return True


@pytest.mark.parametrize(
    ("cm", "conflict", "expected_calls", "created"),
    [
        (None, set(), [("create", "ConfigMap"), ("create", "Job"), ("patch", "ConfigMap")], True),
        # a concurrent run created both first: write our bytes, then attach to its Job
        (None, {"ConfigMap", "Job"},
         [("create", "ConfigMap"), ("patch", "ConfigMap"), ("create", "Job")], False),
        # an in-flight run's ConfigMap without owner: reuse it
        ({"metadata": {}}, set(),
         [("patch", "ConfigMap"), ("create", "Job"), ("patch", "ConfigMap")], True),
        # a ConfigMap owned by an earlier (finished, deleted) Job: replace it
        ({"metadata": {"ownerReferences": [{"uid": "old"}]}}, set(),
         [("delete", "ConfigMap"), ("create", "ConfigMap"), ("create", "Job"),
          ("patch", "ConfigMap")], True),
    ],
)  # fmt: skip
def test_create_never_starts_a_second_job(
    ctx: Path,
    cm: dict[str, Any] | None,
    conflict: set[str],
    expected_calls: list[tuple[str, str]],
    created: bool,
) -> None:
    from ansible_collections.urm.training.plugins.module_utils._kaniko import _create

    client = RecordingK8s(cm, conflict)
    job = _create(client, parse_request(params(ctx)), b"tar")  # type: ignore[arg-type]
    assert (job is not None) is created
    assert client.calls == expected_calls
