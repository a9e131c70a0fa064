"""Kubernetes states -> plain-English diagnoses, as a table of pod and Job states."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._wait import (
    diagnose_job,
    diagnose_pod,
    job_state,
)


def pod(
    *,
    waiting: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = waiting
    if terminated:
        state["terminated"] = terminated
    cstatus: dict[str, Any] = {"name": "train", "image": "reg/x:1", "state": state}
    if last:
        cstatus["lastState"] = {"terminated": last}
    return {
        "metadata": {"name": "run-abc"},
        "spec": {
            "nodeName": "h100-0",
            "imagePullSecrets": [{"name": "urm-registry-cred"}],
            "containers": [{"name": "train", "resources": {"limits": {"memory": "64Gi"}}}],
        },
        "status": {"containerStatuses": [cstatus], "conditions": conditions or [], **status},
    }


@pytest.mark.parametrize(
    ("obj", "reason", "words", "fatal"),
    [
        (
            pod(waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling"}),
            "ImagePullBackOff",
            ["cannot pull image 'reg/x:1'", "urm-registry-cred"],
            True,
        ),
        (
            pod(waiting={"reason": "ErrImagePull", "message": "401 Unauthorized"}),
            "ErrImagePull",
            ["401 Unauthorized", "pull secret"],
            True,
        ),
        (
            pod(waiting={"reason": "InvalidImageName"}),
            "InvalidImageName",
            ["cannot pull image"],
            True,
        ),
        (
            pod(
                waiting={
                    "reason": "CreateContainerConfigError",
                    "message": "couldn't find key api-key",
                }
            ),
            "CreateContainerConfigError",
            ["couldn't find key api-key", "Secret or ConfigMap"],
            True,
        ),
        (
            pod(waiting={"reason": "CrashLoopBackOff"}, last={"exitCode": 1, "reason": "Error"}),
            "CrashLoopBackOff",
            ["keeps crashing", "exited with code 1"],
            True,
        ),
        (
            pod(terminated={"exitCode": 137, "reason": "OOMKilled"}),
            "OOMKilled",
            ["ran out of memory", "137", "64Gi", "memory_per_gpu"],
            True,
        ),
        (
            pod(terminated={"exitCode": 3, "reason": "Error", "message": "Bus error"}),
            "Error",
            ["exited with code 3", "Bus error"],
            True,
        ),
        (
            pod(reason="Evicted", message="The node was low on resource: memory."),
            "Evicted",
            ["evicted from node h100-0", "low on resource"],
            True,
        ),
        (
            pod(
                conditions=[
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": "preempted",
                    }
                ]
            ),
            "Disrupted",
            ["PreemptionByScheduler"],
            True,
        ),
        (
            pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu.",
                    }
                ]
            ),
            "Unschedulable",
            ["cannot be scheduled", "Insufficient nvidia.com/gpu"],
            False,
        ),
    ],
)
def test_pod_states_are_explained(
    obj: dict[str, Any], reason: str, words: list[str], fatal: bool
) -> None:
    found = diagnose_pod(obj)
    assert found is not None
    assert found.reason == reason
    assert found.fatal is fatal
    for word in words:
        assert word in found.message


def test_a_healthy_or_finished_pod_has_no_diagnosis() -> None:
    assert diagnose_pod(pod(phase="Running")) is None
    assert (
        diagnose_pod(pod(terminated={"exitCode": 0, "reason": "Completed"}, phase="Succeeded"))
        is None
    )


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("BackoffLimitExceeded", "no retries are left"),
        ("DeadlineExceeded", "active_deadline"),
        ("PodFailurePolicy", "podFailurePolicy"),
    ],
)
def test_job_failures_are_explained(reason: str, words: str) -> None:
    job = {
        "metadata": {"name": "run"},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": "m"}]
        },
    }
    found = diagnose_job(job)
    assert found is not None and found.reason == reason and words in found.message
    assert job_state(job) == "Failed"


def test_job_state_reads_complete_and_running() -> None:
    assert (
        job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
        == "Complete"
    )
    assert job_state({"status": {}}) is None
    assert diagnose_job({"status": {}}) is None
