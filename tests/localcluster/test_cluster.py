"""The local world behaves like ICE: GPU nodes, scheduling, Jobs, failures, storage, RBAC, audit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

T = TypeVar("T")
GPU = "nvidia.com/gpu"
GPU_TOLERATION = client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def admin(localcluster) -> client.ApiClient:
    return config.new_client_from_config(str(localcluster.admin_kubeconfig))


@pytest.fixture(scope="module")
def researcher(localcluster) -> client.ApiClient:
    return config.new_client_from_config(str(localcluster.researcher_kubeconfig))


@pytest.fixture
def unique() -> str:
    return f"lc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup(admin, localcluster) -> Iterator[list[tuple[str, str]]]:
    created: list[tuple[str, str]] = []
    yield created
    core, batch = client.CoreV1Api(admin), client.BatchV1Api(admin)
    for kind, name in created:
        try:
            if kind == "pod":
                core.delete_namespaced_pod(name, localcluster.namespace, grace_period_seconds=0)
            elif kind == "job":
                batch.delete_namespaced_job(
                    name, localcluster.namespace, propagation_policy="Background"
                )
            elif kind == "pvc":
                core.delete_namespaced_persistent_volume_claim(name, localcluster.namespace)
        except ApiException as error:
            if error.status != 404:
                raise


def gpu_pod(name: str, gpus: int, accelerator: str = "nvidia-h100") -> client.V1Pod:
    resources = client.V1ResourceRequirements(
        requests={GPU: str(gpus), "cpu": "1", "memory": "1Gi"},
        limits={GPU: str(gpus), "memory": "1Gi"},
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            node_selector={"accelerator": accelerator},
            tolerations=[GPU_TOLERATION],
            containers=[client.V1Container(name="train", image="busybox", resources=resources)],
        ),
    )


def test_nodes_are_ready_with_ice_like_allocatable(admin) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(admin).list_node().items}
    assert set(nodes) == {"h100-0", "h100-1", "rtx2080ti-0", "cpu-0"}
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
    for name in ("h100-0", "h100-1"):
        node = nodes[name]
        assert node.status.allocatable[GPU] == "8"
        assert node.status.allocatable["cpu"] == "96"
        assert node.status.allocatable["memory"] == "1Ti"
        assert node.metadata.labels["accelerator"] == "nvidia-h100"
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
            (GPU, "present", "NoSchedule")
        ]
    rtx = nodes["rtx2080ti-0"]
    assert rtx.status.allocatable[GPU] == "4"
    assert rtx.metadata.labels["accelerator"] == "nvidia-gtx-2080ti"
    assert rtx.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-GeForce-RTX-2080-Ti"
    assert GPU not in nodes["cpu-0"].status.allocatable
    assert not nodes["cpu-0"].spec.taints


@pytest.fixture(scope="module")
def scheduling_ns(admin) -> Iterator[str]:
    """A namespace without quota, so scheduling tests see only the nodes, never the quota of
    aic (whose usage other tests change, and the quota controller recounts asynchronously)."""
    core = client.CoreV1Api(admin)
    name = f"lc-sched-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for("the default ServiceAccount", lambda: core.list_namespaced_service_account(name).items)
    yield name
    core.delete_namespace(name)


def test_eight_gpu_pod_lands_on_an_h100_node_and_runs(admin, scheduling_ns, unique) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespaced_pod(scheduling_ns, gpu_pod(unique, 8))

    def running() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(unique, scheduling_ns)
        return pod if pod.status.phase == "Running" else None

    pod = wait_for("the 8-GPU pod to run", running)
    assert pod.spec.node_name in {"h100-0", "h100-1"}


def test_sixteen_gpu_pod_is_unschedulable(admin, scheduling_ns, unique) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespaced_pod(scheduling_ns, gpu_pod(unique, 16))

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod(unique, scheduling_ns)
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return condition
        return None

    condition = wait_for("PodScheduled=False", unschedulable)
    assert condition.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in condition.message
    assert core.read_namespaced_pod(unique, scheduling_ns).status.phase == "Pending"


def _job(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="busybox")],
                ),
            ),
        ),
    )


def _job_condition(
    batch: client.BatchV1Api, namespace: str, name: str, kind: str
) -> Callable[[], Any]:
    def probe() -> Any:
        job = batch.read_namespaced_job(name, namespace)
        for condition in job.status.conditions or []:
            if condition.type == kind and condition.status == "True":
                return condition
        return None

    return probe


def test_job_pod_succeeds_and_job_completes(admin, localcluster, unique, cleanup) -> None:
    batch, core = client.BatchV1Api(admin), client.CoreV1Api(admin)
    batch.create_namespaced_job(localcluster.namespace, _job(unique))
    cleanup.append(("job", unique))
    wait_for("Job Complete", _job_condition(batch, localcluster.namespace, unique, "Complete"))
    pods = core.list_namespaced_pod(
        localcluster.namespace, label_selector=f"job-name={unique}"
    ).items
    assert [p.status.phase for p in pods] == ["Succeeded"]


def test_failure_stage_fails_pod_with_exit_code_and_job_backoff(
    admin, localcluster, unique, cleanup
) -> None:
    batch, core = client.BatchV1Api(admin), client.CoreV1Api(admin)
    job = _job(
        unique,
        labels={"pod-container-running-failed.stage.kwok.x-k8s.io": "true"},
        annotations={
            "pod-container-running-failed.stage.kwok.x-k8s.io/exit-code": "42",
            "pod-container-running-failed.stage.kwok.x-k8s.io/reason": "Error",
        },
    )
    batch.create_namespaced_job(localcluster.namespace, job)
    cleanup.append(("job", unique))
    condition = wait_for(
        "Job Failed", _job_condition(batch, localcluster.namespace, unique, "Failed")
    )
    assert condition.reason == "BackoffLimitExceeded"
    pod = core.list_namespaced_pod(
        localcluster.namespace, label_selector=f"job-name={unique}"
    ).items[0]
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 42
    assert terminated.reason == "Error"


def test_pvc_on_rook_ceph_fs_binds(admin, localcluster, unique, cleanup) -> None:
    core = client.CoreV1Api(admin)
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=unique),
        spec=client.V1PersistentVolumeClaimSpec(
            storage_class_name="rook-ceph-fs",
            access_modes=["ReadWriteMany"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "5Gi"}),
        ),
    )
    core.create_namespaced_persistent_volume_claim(localcluster.namespace, claim)
    cleanup.append(("pvc", unique))

    def bound() -> Any:
        pvc = core.read_namespaced_persistent_volume_claim(unique, localcluster.namespace)
        return pvc if pvc.status.phase == "Bound" else None

    pvc = wait_for("the PVC to bind", bound)
    volume = core.read_persistent_volume(pvc.spec.volume_name)
    assert volume.spec.storage_class_name == "rook-ceph-fs"
    assert volume.spec.claim_ref.name == unique


def test_audit_log_records_our_own_requests(admin, localcluster, unique) -> None:
    core = client.CoreV1Api(admin)
    before = localcluster.audit_line_count()
    core.create_namespaced_config_map(
        localcluster.namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=unique), data={"k": "v"}),
    )
    core.delete_namespaced_config_map(unique, localcluster.namespace)

    def ours() -> list[dict[str, Any]]:
        return [
            e
            for e in localcluster.audit_events(before)
            if e.get("objectRef", {}).get("name") == unique and e.get("stage") == "ResponseComplete"
        ]

    events = wait_for(
        "our audit events", lambda: {e["verb"] for e in ours()} >= {"create", "delete"} and ours()
    )
    assert all(e["level"] == "Metadata" for e in events)
    assert all("requestObject" not in e for e in events), "Metadata level must not record bodies"


def test_researcher_is_namespace_scoped(researcher, localcluster, unique, cleanup) -> None:
    batch, core = client.BatchV1Api(researcher), client.CoreV1Api(researcher)
    batch.create_namespaced_job(localcluster.namespace, _job(unique))
    cleanup.append(("job", unique))
    with pytest.raises(ApiException) as other_namespace:
        batch.create_namespaced_job("default", _job(unique))
    assert other_namespace.value.status == 403
    with pytest.raises(ApiException) as nodes:
        core.list_node()
    assert nodes.value.status == 403


def test_researcher_with_node_reader_binding_can_list_nodes(localcluster) -> None:
    api = config.new_client_from_config(str(localcluster.researcher_nodes_kubeconfig))
    assert len(client.CoreV1Api(api).list_node().items) == 4
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(api).list_namespaced_secret("default")
    assert forbidden.value.status == 403


def test_deleting_a_running_job_removes_its_pods(admin, localcluster, unique) -> None:
    batch, core = client.BatchV1Api(admin), client.CoreV1Api(admin)
    job = _job(unique, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "600s"})
    batch.create_namespaced_job(localcluster.namespace, job)
    selector = f"job-name={unique}"

    def running() -> Any:
        pods = core.list_namespaced_pod(localcluster.namespace, label_selector=selector).items
        return pods if pods and pods[0].status.phase == "Running" else None

    wait_for("the Job's pod to run", running)
    batch.delete_namespaced_job(unique, localcluster.namespace, propagation_policy="Foreground")
    wait_for(
        "the pods to be gone",
        lambda: not core.list_namespaced_pod(localcluster.namespace, label_selector=selector).items,
    )
