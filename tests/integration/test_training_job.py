"""training_job, training_info and gpu_info against the local cluster (upstream control plane,
KWOK GPU nodes). Each test names its own runs and deletes them afterwards, so the namespace GPU
quota (16) is free for the next one."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.ansible_runner import run_module, run_playbook

pytestmark = pytest.mark.integration

MODULE = "urm.training.training_job"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
IMAGE = "127.0.0.1:15000/library/busybox:latest"
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
WANDB_FROM_ENV = "{{ lookup('ansible.builtin.env', 'URM_IT_WANDB') }}"


@pytest.fixture
def runs(localcluster) -> Iterator[list[str]]:
    """Run names a test creates; their Jobs, pods, Services and records go at teardown."""
    names: list[str] = []
    yield names
    for name in names:
        for kind in ("job", "pod", "service", "configmap"):
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


def new_name(runs: list[str], prefix: str = "it") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    runs.append(name)
    return name


def job_args(lc: Any, name: str, *, kubeconfig: str = "nodes", **kw: Any) -> dict[str, Any]:
    paths = {
        "admin": lc.admin_kubeconfig,
        "nodes": lc.researcher_nodes_kubeconfig,
        "researcher": lc.researcher_kubeconfig,
    }
    args: dict[str, Any] = {
        "namespace": lc.namespace,
        "name": name,
        "image": IMAGE,
        "command": ["/bin/sh", "-c", "echo train"],
        "gpus": 8,
        "gpu_type": "nvidia-h100",
        "memory_per_gpu": "2Gi",
        "shm_size": "1Gi",
        "wait": "running",
        "wait_timeout": 90,
        "kubeconfig": str(paths[kubeconfig]),
    }
    args.update(kw)
    return args


def get_json(lc: Any, *args: str) -> dict[str, Any]:
    out = lc.kubectl("-n", lc.namespace, "get", *args, "-o", "json").stdout
    return dict(json.loads(out))


def writes_since(lc: Any, line: int, names: set[str]) -> list[dict[str, Any]]:
    """Writes our modules made (by user agent) to the named objects, since audit line ``line``."""
    return [
        e
        for e in lc.audit_events(line)
        if e.get("verb") in WRITE_VERBS
        and str(e.get("userAgent", "")).startswith("urm.training/")
        and e.get("stage") == "ResponseComplete"
        and (
            (e.get("objectRef") or {}).get("name") in names
            or any(n in (e.get("requestURI") or "") for n in names)
        )
    ]


def jobs_created_since(lc: Any, line: int) -> list[dict[str, Any]]:
    return [
        e
        for e in lc.audit_events(line)
        if e.get("verb") == "create"
        and (e.get("objectRef") or {}).get("resource") == "jobs"
        and e.get("stage") == "ResponseComplete"
    ]


def test_eight_gpu_run_lands_on_h100_runs_and_completes(localcluster, runs) -> None:
    name = new_name(runs)
    result = run_module(MODULE, job_args(localcluster, name, wait="complete"))
    out = result.adhoc
    assert result.rc == 0, result.output[-2000:]
    assert out["changed"] is True and out["action"] == "created"
    assert out["phase"] == "Succeeded"
    assert len(out["nodes"]) == 1 and out["nodes"][0].startswith("h100-")
    job = get_json(localcluster, "job", name)
    assert any(
        c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]
    )
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["limits"]["memory"] == "16Gi"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert (
        job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"]
        == "DisruptionTarget"
    )
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert pod["nodeSelector"] == {"accelerator": "nvidia-h100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_rerun_is_unchanged_and_writes_nothing(localcluster, runs) -> None:
    name = new_name(runs)
    assert run_module(MODULE, job_args(localcluster, name, wait="complete")).rc == 0
    before = localcluster.audit_line_count()
    again = run_module(MODULE, job_args(localcluster, name, wait="complete"))
    assert again.rc == 0, again.output[-2000:]
    assert again.adhoc["changed"] is False and again.adhoc["action"] == "unchanged"
    assert again.adhoc["phase"] == "Succeeded"
    assert writes_since(localcluster, before, {name, f"urm-run-{name}"}) == []


def test_changed_spec_fails_with_a_diff_or_is_replaced(localcluster, runs) -> None:
    name = new_name(runs)
    assert run_module(MODULE, job_args(localcluster, name)).rc == 0
    first = get_json(localcluster, "job", name)["metadata"]
    before = localcluster.audit_line_count()
    changed = run_module(MODULE, job_args(localcluster, name, gpus=4))
    assert changed.rc != 0
    msg = changed.adhoc["msg"]
    assert "on_change=fail, so nothing was touched" in msg
    assert "gpus: 8 -> 4" in msg
    assert get_json(localcluster, "job", name)["metadata"]["uid"] == first["uid"]
    assert writes_since(localcluster, before, {name, f"urm-run-{name}"}) == []

    replaced = run_module(
        MODULE, job_args(localcluster, name, gpus=4, on_change="replace"), diff=True
    )
    assert replaced.rc == 0, replaced.output[-2000:]
    assert replaced.adhoc["action"] == "replaced" and replaced.adhoc["changed"] is True
    assert (
        replaced.adhoc["diff"]["before"]["gpus"] == 8
        and replaced.adhoc["diff"]["after"]["gpus"] == 4
    )
    job = get_json(localcluster, "job", name)
    assert job["metadata"]["uid"] != first["uid"]
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        == "4"
    )


def test_sixteen_gpus_on_one_node_fail_in_preflight_with_no_job(localcluster, runs) -> None:
    name = new_name(runs)
    before = localcluster.audit_line_count()
    result = run_module(MODULE, job_args(localcluster, name, gpus=16))
    assert result.rc != 0
    assert "needs 16 x nvidia-h100 on one node; the largest has 8 (h100-" in result.adhoc["msg"]
    assert "use gpus: 8 with nodes: 2" in result.adhoc["msg"]
    assert jobs_created_since(localcluster, before) == []
    assert writes_since(localcluster, before, {name, f"urm-run-{name}"}) == []


def test_kwok_failure_stage_is_diagnosed_with_its_exit_code(localcluster, runs) -> None:
    name = new_name(runs)
    args = job_args(
        localcluster,
        name,
        gpus=1,
        wait="complete",
        labels={FAIL_LABEL: "true"},
        annotations={f"{FAIL_LABEL}/exit-code": "7", f"{FAIL_LABEL}/reason": "Error"},
    )
    result = run_module(MODULE, args)
    assert result.rc != 0
    out = result.adhoc
    assert "exited with code 7" in out["msg"]
    assert "BackoffLimitExceeded" in out["msg"]
    assert out["phase"] == "Failed" and out["reason"] == "Error"
    info = run_module(
        "urm.training.training_info",
        {
            "namespace": localcluster.namespace,
            "name": name,
            "kubeconfig": str(localcluster.researcher_kubeconfig),
        },
    )
    row = info.adhoc["runs"][0]
    assert row["phase"] == "Failed" and row["reason"] == "BackoffLimitExceeded"
    assert "exited with code 7" in row["message"]


@pytest.mark.parametrize(
    ("case", "extra", "expected"),
    [
        (
            "pull-secret",
            {"image_pull_secrets": ["no-such-secret"]},
            "image_pull_secrets: Secret aic/no-such-secret does not exist",
        ),
        (
            "wandb-key",
            {"secret_env": {"WANDB_API_KEY": {"secret": "{secret}", "key": "api-key"}}},
            "has no key 'api-key' (its keys: other)",
        ),
    ],
)
def test_missing_references_fail_in_preflight(localcluster, runs, case, extra, expected) -> None:
    name = new_name(runs)
    secret = f"it-wandb-{uuid.uuid4().hex[:6]}"
    localcluster.kubectl(
        "-n",
        localcluster.namespace,
        "create",
        "secret",
        "generic",
        secret,
        "--from-literal=other=x",
    )
    try:
        extra = json.loads(json.dumps(extra).replace("{secret}", secret))
        before = localcluster.audit_line_count()
        result = run_module(MODULE, job_args(localcluster, name, gpus=1, **extra))
        assert result.rc != 0
        assert expected in result.adhoc["msg"]
        assert jobs_created_since(localcluster, before) == []
    finally:
        localcluster.kubectl("-n", localcluster.namespace, "delete", "secret", secret)


def test_a_sweep_beyond_the_quota_fails_with_the_numbers(localcluster, runs) -> None:
    names = [new_name(runs, "q") for _ in range(3)]
    before = localcluster.audit_line_count()
    args = job_args(localcluster, "unused", gpus=8, wait="none")
    del args["name"]
    args["runs"] = [{"name": n} for n in names]
    result = run_module(MODULE, args)
    assert result.rc != 0
    msg = result.adhoc["msg"]
    assert "ResourceQuota aic/aic-quota would be exceeded for requests.nvidia.com/gpu" in msg
    assert "3 runs need 24" in msg and "of 16 is in use" in msg
    assert jobs_created_since(localcluster, before) == []


def test_two_nodes_give_an_indexed_job_with_ranks_and_a_headless_service(
    localcluster, runs
) -> None:
    name = new_name(runs)
    result = run_module(MODULE, job_args(localcluster, name, nodes=2))
    assert result.rc == 0, result.output[-2000:]
    assert sorted(result.adhoc["nodes"]) == ["h100-0", "h100-1"]
    job = get_json(localcluster, "job", name)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 2 and job["spec"]["parallelism"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == name
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["NNODES"]["value"] == "2"
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"].endswith("job-completion-index']")
    service = get_json(localcluster, "service", name)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"training.urm.io/run": name}
    pods = get_json(localcluster, "pods", "-l", f"training.urm.io/run={name}")["items"]
    indexes = sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
    )
    assert indexes == ["0", "1"]
    assert len({p["spec"]["nodeName"] for p in pods}) == 2


def test_twenty_run_sweep_in_one_task(localcluster, runs) -> None:
    namespace = f"sweep-{uuid.uuid4().hex[:6]}"
    localcluster.kubectl("create", "namespace", namespace)
    try:
        args = job_args(
            localcluster, "unused", gpus=1, wait="none", kubeconfig="admin", namespace=namespace
        )
        del args["name"]
        args["runs"] = [
            {"name": f"lr-{i}", "args": [f"lr={i}e-4"], "labels": {"sweep": "lr"}}
            for i in range(20)
        ]
        before = localcluster.audit_line_count()
        result = run_module(MODULE, args)
        assert result.rc == 0, result.output[-2000:]
        assert [r["action"] for r in result.adhoc["runs"]] == ["created"] * 20
        created = [
            e
            for e in jobs_created_since(localcluster, before)
            if e["objectRef"].get("namespace") == namespace
        ]
        assert len(created) == 20
        again = run_module(MODULE, args)
        assert again.adhoc["changed"] is False
        assert [r["action"] for r in again.adhoc["runs"]] == ["unchanged"] * 20
    finally:
        localcluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_devpod_runs_with_a_deadline_and_a_billing_warning(localcluster, runs) -> None:
    name = new_name(runs, "dev")
    result = run_module(MODULE, job_args(localcluster, name, gpus=1, mode="devpod", command=[]))
    assert result.rc == 0, result.output[-2000:]
    assert result.adhoc["kind"] == "Pod" and result.adhoc["phase"] == "Running"
    assert "bills 1 GPU(s) for as long as it exists" in result.output
    pod = get_json(localcluster, "pod", name)
    assert pod["spec"]["activeDeadlineSeconds"] == 8 * 3600
    assert pod["spec"]["containers"][0]["command"] == ["sleep", str(8 * 3600)]
    gone = run_module(MODULE, job_args(localcluster, name, mode="devpod", state="absent"))
    assert gone.adhoc["changed"] is True
    assert (
        localcluster.kubectl(
            "-n", localcluster.namespace, "get", "pod", name, check=False
        ).returncode
        != 0
    )


def test_state_absent_deletes_the_run_and_frees_its_gpus(localcluster, runs) -> None:
    name = new_name(runs)
    gpu_args = {
        "namespace": localcluster.namespace,
        "kubeconfig": str(localcluster.admin_kubeconfig),
    }
    assert (
        run_module(
            MODULE,
            job_args(
                localcluster,
                name,
                command=["sleep", "600"],
                annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "600s"},
            ),
        ).rc
        == 0
    )
    busy = run_module("urm.training.gpu_info", gpu_args).adhoc
    assert busy["by_type"]["nvidia-h100"]["allocated"] >= 8
    gone = run_module(MODULE, job_args(localcluster, name, state="absent"))
    assert gone.rc == 0 and gone.adhoc["changed"] is True and gone.adhoc["action"] == "deleted"
    free = run_module("urm.training.gpu_info", gpu_args).adhoc
    assert (
        free["by_type"]["nvidia-h100"]["allocated"]
        == busy["by_type"]["nvidia-h100"]["allocated"] - 8
    )
    assert (
        localcluster.kubectl(
            "-n", localcluster.namespace, "get", "job", name, check=False
        ).returncode
        != 0
    )
    again = run_module(MODULE, job_args(localcluster, name, state="absent"))
    assert again.adhoc["changed"] is False


def test_namespace_only_researcher_launches_and_is_told_what_was_skipped(
    localcluster, runs
) -> None:
    name = new_name(runs)
    result = run_module(MODULE, job_args(localcluster, name, kubeconfig="researcher", gpus=1))
    assert result.rc == 0, result.output[-2000:]
    assert "cannot list nodes (403 Forbidden" in result.output
    assert "the GPU fit check is skipped" in result.output
    gpus = run_module(
        "urm.training.gpu_info",
        {
            "namespace": localcluster.namespace,
            "kubeconfig": str(localcluster.researcher_kubeconfig),
        },
    )
    assert gpus.adhoc["nodes_visible"] is False and gpus.adhoc["quota"]["hard"] == 16


def test_unschedulable_is_reported_with_the_schedulers_words(localcluster, runs) -> None:
    name = new_name(runs)
    # As the researcher, nodes cannot be read, so only the scheduler can say it does not fit.
    args = job_args(
        localcluster,
        name,
        kubeconfig="researcher",
        gpus=8,
        gpu_type="nvidia-gtx-2080ti",
        min_compute_capability=0,
        wait_timeout=15,
    )
    result = run_module(MODULE, args)
    assert result.rc != 0
    msg = result.adhoc["msg"]
    assert f"run {name} did not run within 15s: pod" in msg
    assert "cannot be scheduled" in msg and "Insufficient nvidia.com/gpu" in msg
    assert result.adhoc["reason"] == "Unschedulable"


def test_check_mode_writes_nothing(localcluster, runs) -> None:
    name = new_name(runs)
    before = localcluster.audit_line_count()
    result = run_module(MODULE, job_args(localcluster, name, gpus=1), check=True)
    assert result.rc == 0 and result.adhoc["changed"] is True
    assert result.adhoc["action"] == "would-create"
    assert writes_since(localcluster, before, {name, f"urm-run-{name}"}) == []
    assert jobs_created_since(localcluster, before) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"gpus": 0}, "gpus=0 must be >= 1"),
        ({"gpus": -2}, "gpus=-2 must be >= 1"),
        ({"gpus": "eight"}, "gpus='eight' must be a whole number"),
        ({"memory_per_gpu": "16GB"}, "memory_per_gpu='16GB' is not a Kubernetes quantity"),
        ({"shm_size": "64Gi"}, "shm_size=64Gi does not fit in the memory limit of 16Gi"),
        ({"name": "URM_Run"}, "name='URM_Run' is not a valid run name"),
        (
            {"gpu_type": "nvidia-a100"},
            "gpu_type='nvidia-a100' matches no node label accelerator=nvidia-a100",
        ),
        ({"nodes": 2, "mode": "devpod"}, "nodes=2 with mode=devpod"),
        (
            {"secret_env": {"WANDB_API_KEY": {"secret": "urm-wandb"}}},
            "secret_env.WANDB_API_KEY must name both",
        ),
        (
            {"gpu_type": "nvidia-gtx-2080ti", "gpus": 1},
            "compute capability 7.5, below the min_compute_capability",
        ),
    ],
)
def test_bad_input_is_refused_before_any_write(localcluster, runs, override, expected) -> None:
    name = new_name(runs)
    args = job_args(localcluster, name)
    args.update(override)
    before = localcluster.audit_line_count()
    result = run_module(MODULE, args)
    assert result.rc != 0
    assert expected in result.adhoc["msg"]
    assert jobs_created_since(localcluster, before) == []
    assert writes_since(localcluster, before, {name, args["name"]}) == []


def test_planted_wandb_key_appears_nowhere(localcluster, runs, tmp_path) -> None:
    name = new_name(runs)
    planted = f"wandb-planted-{uuid.uuid4().hex}"
    secret = f"it-wandb-{uuid.uuid4().hex[:6]}"
    before = localcluster.audit_line_count()
    play = [
        {
            "name": "launch with a wandb key",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/urm.training.k8s": {"kubeconfig": str(localcluster.researcher_kubeconfig)}
            },
            "roles": [
                {
                    "role": "urm.training.training_launch",
                    "vars": {
                        "training_launch_namespace": localcluster.namespace,
                        "training_launch_run_name": name,
                        "training_launch_image": IMAGE,
                        "training_launch_command": ["/bin/true"],
                        "training_launch_gpus": 1,
                        "training_launch_memory_per_gpu": "2Gi",
                        "training_launch_shm_size": "1Gi",
                        "training_launch_image_pull_secrets": [],
                        "training_launch_wandb_project": "urm-it",
                        "training_launch_wandb_secret_name": secret,
                        "training_launch_wandb_api_key": WANDB_FROM_ENV,
                        "training_launch_wait": "complete",
                    },
                }
            ],
        }
    ]
    try:
        result = run_playbook(play, env={"URM_IT_WANDB": planted}, verbosity=3)
        assert result.rc == 0, result.output[-3000:]
        assert planted not in result.output
        assert planted not in result.recorder_text
        job = localcluster.kubectl(
            "-n", localcluster.namespace, "get", "job", name, "-o", "json"
        ).stdout
        assert planted not in job
        env = {
            e["name"]: e
            for e in json.loads(job)["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": secret,
            "key": "api-key",
        }
        assert env["WANDB_RESUME"]["value"] == "allow" and env["WANDB_RUN_ID"]["value"].startswith(
            name
        )
        events = localcluster.kubectl(
            "-n", localcluster.namespace, "get", "events", "-o", "json"
        ).stdout
        assert planted not in events
        assert planted not in "".join(json.dumps(e) for e in localcluster.audit_events(before))
        stored = localcluster.kubectl(
            "-n", localcluster.namespace, "get", "secret", secret, "-o", "jsonpath={.data.api-key}"
        ).stdout
        assert (
            subprocess.run(["base64", "-d"], input=stored, capture_output=True, text=True).stdout
            == planted
        )
    finally:
        localcluster.kubectl(
            "-n", localcluster.namespace, "delete", "secret", secret, "--ignore-not-found"
        )


def test_finished_run_is_started_again_only_with_rerun(localcluster, runs) -> None:
    name = new_name(runs)
    assert run_module(MODULE, job_args(localcluster, name, gpus=1, wait="complete")).rc == 0
    uid = get_json(localcluster, "job", name)["metadata"]["uid"]
    same = run_module(MODULE, job_args(localcluster, name, gpus=1, wait="complete"))
    assert same.adhoc["changed"] is False
    again = run_module(MODULE, job_args(localcluster, name, gpus=1, wait="complete", rerun=True))
    assert again.rc == 0, again.output[-2000:]
    assert again.adhoc["action"] == "rerun" and again.adhoc["phase"] == "Succeeded"
    assert get_json(localcluster, "job", name)["metadata"]["uid"] != uid


def test_outcome_outlives_the_ttl_of_the_job(localcluster, runs) -> None:
    name = new_name(runs)
    args = job_args(localcluster, name, gpus=1, wait="complete", ttl_after_finished=0)
    first = run_module(MODULE, args)
    assert first.rc == 0, first.output[-2000:]
    assert first.adhoc["phase"] == "Succeeded"
    gone = False
    for _ in range(60):
        if localcluster.kubectl(
            "-n", localcluster.namespace, "get", "job", name, check=False
        ).returncode:
            gone = True
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert gone, "ttlSecondsAfterFinished=0 should have removed the Job"
    record = get_json(localcluster, "configmap", f"urm-run-{name}")["data"]
    assert record["phase"] == "Succeeded" and record["spec-hash"] == first.adhoc["spec_hash"]
    before = localcluster.audit_line_count()
    again = run_module(MODULE, args)
    assert (
        again.rc == 0 and again.adhoc["changed"] is False and again.adhoc["action"] == "unchanged"
    )
    assert "finished earlier" in again.adhoc["message"]
    assert jobs_created_since(localcluster, before) == []
    info = run_module(
        "urm.training.training_info",
        {
            "namespace": localcluster.namespace,
            "name": name,
            "kubeconfig": str(localcluster.researcher_kubeconfig),
        },
    )
    assert info.adhoc["runs"][0]["phase"] == "Succeeded"
