"""kaniko_build against the local world: the real API server, KWOK nodes (where nothing runs), the
token registry and podman.

On KWOK a Job's pod is marked Succeeded without running anything, so a build there must fail with
"the Kaniko Job completed but pushed no image". That a real Kaniko container builds and pushes is
not tested here: the executor image cannot be built (the Go module proxy refuses the module).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import scan
from tests.conftest import LocalCluster
from tests.integration.ansible_runner import RunResult, run_module, run_playbook
from tests.integration.test_docker_build import (
    REPO_PATH,
    docker_build,
    make_context,
    registry_digest,
)

pytestmark = pytest.mark.integration

SECRET = "kb-test-cred"
BAD_SECRET = "kb-test-badcred"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
NO_PUSH = "the Kaniko Job completed but pushed no image"


def _secret(name: str, registry: str, user: str, password: str) -> str:
    import base64

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": "aic"},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    })  # fmt: skip


@pytest.fixture(scope="module")
def secrets(localcluster: LocalCluster) -> Iterator[None]:
    lc = localcluster
    for name, password in ((SECRET, lc.users["researcher"]), (BAD_SECRET, "wrong-password")):
        lc.kubectl(
            "apply", "-f", "-", stdin=_secret(name, lc.registry_token, "researcher", password)
        )
    yield
    lc.kubectl("-n", "aic", "delete", "secret", SECRET, BAD_SECRET, "--ignore-not-found")


def kaniko(lc: LocalCluster, ctx: Path, check: bool = False, **extra: Any) -> RunResult:
    args = {
        "repository": f"{lc.registry_token}/{REPO_PATH}",
        "context_dir": str(ctx),
        "namespace": lc.namespace,
        "registry_secret": SECRET,
        "registry_ca_cert": str(lc.ca_cert),
        "ttl": 300,
        "timeout": 120,
        **extra,
    }
    env = {"K8S_AUTH_KUBECONFIG": str(lc.researcher_kubeconfig)}
    return run_module("urm.training.kaniko_build", args, env=env, check=check)


def writes(lc: LocalCluster, since: int) -> list[dict[str, Any]]:
    """Write requests our modules sent for kaniko objects (other sessions share the cluster)."""
    found = []
    for event in lc.audit_events(since):
        ref = event.get("objectRef") or {}
        if event.get("verb") not in WRITE_VERBS:
            continue
        if not str(event.get("userAgent", "")).startswith("urm.training"):
            continue
        if str(ref.get("name", "")).startswith("kaniko-"):
            found.append(event)
    return found


def creates(events: list[dict[str, Any]], resource: str) -> list[str]:
    return [
        e["objectRef"].get("name", "")
        for e in events
        if e["verb"] == "create" and e["objectRef"].get("resource") == resource
    ]


def assert_no_secret(lc: LocalCluster, *texts: str) -> None:
    for text in texts:
        assert lc.users["researcher"] not in text
        assert lc.users["lcadmin"] not in text


def cluster_text(lc: LocalCluster, job: str) -> str:
    parts = []
    for kind in ("job", "configmap"):
        got = lc.kubectl("-n", "aic", "get", kind, job, "-o", "json", check=False)
        parts.append(got.stdout)
    parts.append(lc.kubectl("-n", "aic", "get", "events", "-o", "json").stdout)
    parts.append(
        lc.kubectl("-n", "aic", "get", "pods", "-l", f"job-name={job}", "-o", "json").stdout
    )
    return "\n".join(parts)


def test_completed_job_without_image_fails(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    built = scan(str(ctx))
    since = lc.audit_line_count()
    started = time.monotonic()
    run = kaniko(lc, ctx)
    elapsed = time.monotonic() - started
    result = run.adhoc
    assert run.rc != 0, run.output[-3000:]
    assert NO_PUSH in result["msg"], result["msg"]
    assert "termination message is empty" in result["msg"]
    assert result["changed"] is True and result["job"] == f"kaniko-{built.digest[:12]}"
    assert result["tag"] == built.tag and result["digest"] is None
    print(f"KWOK no-push detected: module {result['duration']}s, task {elapsed:.1f}s")

    events = writes(lc, since)
    assert creates(events, "jobs") == [result["job"]]
    assert creates(events, "configmaps") == [result["job"]]
    job = json.loads(lc.kubectl("-n", "aic", "get", "job", result["job"], "-o", "json").stdout)
    assert job["status"].get("succeeded") == 1  # KWOK said it worked; the module did not believe it
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["docker-config"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]
    cm = json.loads(lc.kubectl("-n", "aic", "get", "configmap", result["job"], "-o", "json").stdout)
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert registry_digest(lc, built.tag) is None
    assert_no_secret(lc, run.output, run.recorder_text, cluster_text(lc, result["job"]))


def test_second_run_skips_an_image_the_docker_builder_pushed(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    pushed = docker_build(lc, ctx)
    assert pushed.rc == 0, pushed.output[-3000:]
    since = lc.audit_line_count()
    run = kaniko(lc, ctx)
    assert run.rc == 0, run.output[-3000:]
    result = run.adhoc
    assert result["changed"] is False and result["action"] == "skipped"
    assert result["tag"] == pushed.adhoc["tag"]  # both builders compute the same tag
    assert result["digest"] == pushed.adhoc["digest"] == registry_digest(lc, result["tag"])
    assert result["image_ref"] == f"{lc.registry_token}/{REPO_PATH}@{result['digest']}"
    assert writes(lc, since) == []
    check = kaniko(lc, ctx, check=True)
    assert check.rc == 0 and check.adhoc["action"] == "would_skip"


def test_check_mode_writes_nothing(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    since = lc.audit_line_count()
    run = kaniko(lc, ctx, check=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.adhoc["action"] == "would_build" and run.adhoc["changed"] is True
    assert run.adhoc["job"] == f"kaniko-{scan(str(ctx)).digest[:12]}"
    time.sleep(1)  # the audit log is written asynchronously
    assert writes(lc, since) == []
    assert lc.kubectl("-n", "aic", "get", "job", run.adhoc["job"], check=False).returncode != 0


def test_rerun_attaches_to_the_running_job(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    slow = {"pod-complete.stage.kwok.x-k8s.io/delay": "20s",
            "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "0s"}  # fmt: skip
    since = lc.audit_line_count()
    first = kaniko(lc, ctx, wait=False, pod_annotations=slow)
    assert first.rc == 0, first.output[-3000:]
    assert first.adhoc["action"] == "started" and first.adhoc["changed"] is True
    check = kaniko(lc, ctx, check=True, pod_annotations=slow)
    assert check.adhoc["action"] == "would_attach"
    second = kaniko(lc, ctx, pod_annotations=slow)
    assert second.rc != 0 and NO_PUSH in second.adhoc["msg"]
    events = writes(lc, since)
    assert creates(events, "jobs") == [first.adhoc["job"]]  # one Job for both runs
    assert creates(events, "configmaps") == [first.adhoc["job"]]


def test_failed_build_reports_reason_and_log_tail(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    """KWOK's failure stage stands in for a broken Dockerfile: the container exits 1."""
    lc = localcluster
    ctx = make_context(tmp_path / "ctx", broken=True)
    run = kaniko(
        lc,
        ctx,
        pod_labels={"pod-container-running-failed.stage.kwok.x-k8s.io": "true"},
        pod_annotations={
            "pod-container-running-failed.stage.kwok.x-k8s.io/exit-code": "1",
            "pod-container-running-failed.stage.kwok.x-k8s.io/reason": "Error",
            "pod-container-running-failed.stage.kwok.x-k8s.io/message": "dockerfile parse error",
        },
    )
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert "the Kaniko build failed" in msg and "exited with code 1" in msg, msg
    assert "last 50 lines of the build log" in msg
    assert NO_PUSH not in msg


def test_wrong_credential_fails_naming_authentication(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    since = lc.audit_line_count()
    run = kaniko(lc, ctx, registry_secret=BAD_SECRET)
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert "authentication failed" in msg.lower() and BAD_SECRET in msg
    assert "wrong-password" not in run.output and "wrong-password" not in run.recorder_text
    assert writes(lc, since) == []


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing_context", "is not a directory"),
        ("dockerfile_outside", "outside the context"),
        ("invalid_repository", "invalid repository path"),
        ("missing_secret", "does not exist in namespace aic"),
        ("too_big", "fit in a ConfigMap"),
    ],
)
def test_bad_input_creates_nothing(
    localcluster: LocalCluster, secrets: None, tmp_path: Path, case: str, fragment: str
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    extra: dict[str, Any] = {}
    if case == "missing_context":
        extra["context_dir"] = str(tmp_path / "does-not-exist")
    elif case == "dockerfile_outside":
        (tmp_path / "Dockerfile.outside").write_text("FROM scratch\n")
        extra["dockerfile"] = "../Dockerfile.outside"
    elif case == "invalid_repository":
        extra["repository"] = f"{lc.registry_token}/AIC-misc/Bad..Name"
    elif case == "missing_secret":
        extra["registry_secret"] = "kb-no-such-secret"
    elif case == "too_big":
        (ctx / "weights.bin").write_bytes(os.urandom(1200 * 1024))  # incompressible
    since = lc.audit_line_count()
    run = kaniko(lc, ctx, **extra)
    assert run.rc != 0
    assert fragment in run.adhoc["msg"], run.adhoc["msg"]
    if case == "too_big":
        assert "1048576" in run.adhoc["msg"]
    time.sleep(1)
    assert writes(lc, since) == []


def test_role_with_kaniko_builder_sets_image_build_ref(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    pushed = docker_build(lc, ctx)
    assert pushed.rc == 0, pushed.output[-3000:]
    play = [{
        "name": "Build the image",
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{
            "role": "urm.training.image_build",
            "vars": {
                "image_build_repository": f"{lc.registry_token}/{REPO_PATH}",
                "image_build_context_dir": str(ctx),
                "image_build_namespace": lc.namespace,
                "image_build_registry_secret": SECRET,
                "image_build_registry_ca_cert": str(lc.ca_cert),
            },
        }],
        "post_tasks": [
            {"name": "Show the ref", "ansible.builtin.debug": {"var": "image_build_ref"}},
        ],
    }]  # fmt: skip
    run = run_playbook(play, env={"K8S_AUTH_KUBECONFIG": str(lc.researcher_kubeconfig)})
    assert run.rc == 0, run.output[-3000:]
    assert run.task("Show the ref")["image_build_ref"] == pushed.adhoc["image_ref"]
    assert run.task("Build the image in the cluster with Kaniko")["changed"] is False


def test_role_rejects_kaniko_without_namespace(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx")
    play = [{
        "name": "Build the image",
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{
            "role": "urm.training.image_build",
            "vars": {"image_build_repository": "harbor.example/aic/x",
                     "image_build_context_dir": str(ctx)},
        }],
    }]  # fmt: skip
    run = run_playbook(play)
    assert run.rc != 0 and "image_build_namespace is required" in run.output


def _materialise(lc: LocalCluster, pod: dict[str, Any], root: Path) -> list[str]:
    """Write each volume of the pod spec as the kubelet would project it; return podman -v args."""
    import base64

    sources: dict[str, Path] = {}
    for volume in pod["volumes"]:
        target = root / volume["name"]
        target.mkdir()
        if "configMap" in volume:
            name, kind = volume["configMap"]["name"], "configmap"
        else:
            name, kind = volume["secret"]["secretName"], "secret"
        obj = json.loads(lc.kubectl("-n", "aic", "get", kind, name, "-o", "json").stdout)
        spec = volume.get("configMap") or volume.get("secret") or {}
        for item in spec["items"]:
            key = item["key"]
            if key in (obj.get("binaryData") or {}):
                data = base64.b64decode(obj["binaryData"][key])
            elif kind == "secret":
                data = base64.b64decode(obj["data"][key])
            else:
                data = obj["data"][key].encode()
            (target / item["path"]).write_bytes(data)
        sources[volume["name"]] = target
    container = pod["containers"][0]
    return [f"-v={sources[m['name']]}:{m['mountPath']}:ro" for m in container["volumeMounts"]]


def test_job_mounts_give_kaniko_what_its_args_name(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    """The Job's volumes and env, materialised in podman around busybox instead of the executor
    (which cannot be built here): the files the args point at are there and hold the context and
    the credential."""
    import subprocess

    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    run = kaniko(lc, ctx)
    assert NO_PUSH in run.adhoc["msg"]
    job = json.loads(lc.kubectl("-n", "aic", "get", "job", run.adhoc["job"], "-o", "json").stdout)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in container["args"] if "=" in a}
    context_file = args["--context"].removeprefix("tar://")
    ca_file = args["--registry-certificate"].split("=", 1)[1]
    env = [f"-e={e['name']}={e['value']}" for e in container["env"]]
    script = (
        f"tar -tzf {context_file} | sort | tr '\\n' ' '; echo; "
        f'cat "$DOCKER_CONFIG/config.json"; echo; head -1 {ca_file}'
    )
    mounts_root = tmp_path / "volumes"
    mounts_root.mkdir()
    cmd = ["podman", "run", "--rm", "--network=none", *env, *_materialise(lc, pod, mounts_root),
           f"{lc.registry_token}/library/busybox:latest", "sh", "-c", script]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, CONTAINERS_CONF=str(lc.containers_conf)),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    listing, config, ca_line = out.stdout.splitlines()[:3]
    assert [p.rstrip("/") for p in listing.split()] == sorted(
        e.path for e in scan(str(ctx)).entries
    )
    assert json.loads(config)["auths"][lc.registry_token]["username"] == "researcher"
    assert ca_line == "-----BEGIN CERTIFICATE-----"
    assert args["--dockerfile"] == "Dockerfile"


def test_ttl_removes_the_job_and_its_configmap(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    run = kaniko(lc, ctx, ttl=0)
    assert NO_PUSH in run.adhoc["msg"]
    job = run.adhoc["job"]
    deadline = time.monotonic() + 60
    left = ["job", "configmap"]
    while left and time.monotonic() < deadline:
        left = [
            k for k in left if lc.kubectl("-n", "aic", "get", k, job, check=False).returncode == 0
        ]
        time.sleep(1)
    assert not left, f"{left} {job} still there a minute after the Job finished with ttl=0"


def test_concurrent_runs_start_one_job(
    localcluster: LocalCluster, secrets: None, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    slow = {"pod-complete.stage.kwok.x-k8s.io/delay": "20s"}
    since = lc.audit_line_count()
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: kaniko(lc, ctx, wait=False, pod_annotations=slow), range(3)))
    for run in runs:
        assert run.rc == 0, run.output[-3000:]
    actions = sorted(run.adhoc["action"] for run in runs)
    assert actions.count("started") == 1 and actions.count("running") == 2, actions
    time.sleep(1)
    created = [
        e for e in writes(lc, since)
        if e["verb"] == "create" and e["objectRef"].get("resource") == "jobs"
        and e.get("responseStatus", {}).get("code") == 201
    ]  # fmt: skip
    assert len(created) == 1


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"node_selector": {"urm.test/no-such-node": "true"}}, "cannot be scheduled"),
        ({"resources": {"memory": "5Ti"}}, "exceeded quota"),
    ],
)
def test_a_pod_that_cannot_start_fails_fast_and_is_removed(
    localcluster: LocalCluster, secrets: None, tmp_path: Path, extra: dict[str, Any], fragment: str
) -> None:
    lc = localcluster
    ctx = make_context(tmp_path / "ctx")
    started = time.monotonic()
    run = kaniko(lc, ctx, unschedulable_timeout=2, **extra)
    elapsed = time.monotonic() - started
    assert run.rc != 0
    msg = run.adhoc["msg"]
    assert fragment in msg and "was deleted" in msg, msg
    assert elapsed < 60, f"took {elapsed:.0f}s: the timeout (120s), not the stuck check, ended it"
    assert lc.kubectl("-n", "aic", "get", "job", run.adhoc["job"], check=False).returncode != 0
