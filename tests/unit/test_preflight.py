"""Preflight checks over a fake API: GPU fit, quota, references and compute capability."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._k8s import K8sApiError
from ansible_collections.urm.training.plugins.module_utils._preflight import (
    PreflightError,
    check_capability,
    check_gpu_fit,
    check_quota,
    check_references,
    cluster_view,
)
from ansible_collections.urm.training.plugins.module_utils._training import build_spec

TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def node(name: str, accelerator: str | None, gpus: int) -> dict[str, Any]:
    labels = {"accelerator": accelerator} if accelerator else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": TAINT} if accelerator else {},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class FakeAPI:
    def __init__(
        self,
        nodes: list[dict[str, Any]] | None,
        pods: list[dict[str, Any]] | None = None,
        quotas: list[dict[str, Any]] | None = None,
        objects: dict[tuple[str, str], dict] | None = None,
    ):
        self.nodes, self.pods, self.quotas, self.objects = nodes, pods, quotas or [], objects or {}
        self.gets: list[tuple[str, str]] = []

    def list(self, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        if kind == "Node":
            if self.nodes is None:
                raise K8sApiError("forbidden", 403)
            return self.nodes
        if kind == "ResourceQuota":
            return self.quotas
        raise AssertionError(kind)

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert path == "/api/v1/pods"
        if self.pods is None:
            raise K8sApiError("forbidden", 403)
        return {"items": self.pods}

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.gets.append((kind, name))
        return self.objects.get((kind, name))


def spec(**kw: Any) -> Any:
    base = {
        "name": "r",
        "namespace": "aic",
        "image": "x",
        "command": ["c"],
        "gpus": 8,
        "gpu_type": "nvidia-h100",
        "memory_per_gpu": "16Gi",
    }
    base.update(kw)
    return build_spec(base)


CLUSTER = [
    node("h100-0", "nvidia-h100", 8),
    node("h100-1", "nvidia-h100", 8),
    node("rtx-0", "nvidia-gtx-2080ti", 4),
    node("cpu-0", None, 0),
]


def busy(node_name: str, gpus: int) -> dict[str, Any]:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
        }
    }


def test_too_many_gpus_for_one_node_names_the_largest_and_the_fix() -> None:
    view = cluster_view(FakeAPI(CLUSTER, [busy("h100-0", 3)]))
    with pytest.raises(PreflightError) as error:
        check_gpu_fit(view, spec(gpus=16), [])
    assert str(error.value) == (
        "needs 16 x nvidia-h100 on one node; the largest has 8 (h100-1: 8 free, h100-0: 5 free); "
        "use gpus: 8 with nodes: 2"
    )


def test_more_nodes_than_exist_fails() -> None:
    view = cluster_view(FakeAPI(CLUSTER, []))
    with pytest.raises(
        PreflightError, match="nodes=3 needs 3 nodes with 8 x nvidia-h100 each; only 2"
    ):
        check_gpu_fit(view, spec(nodes=3), [])


def test_busy_gpus_warn_but_do_not_fail() -> None:
    warnings: list[str] = []
    check_gpu_fit(
        cluster_view(FakeAPI(CLUSTER, [busy("h100-0", 1), busy("h100-1", 1)])), spec(), warnings
    )
    assert "the run will wait until GPUs free up" in warnings[0]


def test_unknown_gpu_type_lists_the_known_ones() -> None:
    with pytest.raises(PreflightError, match="the cluster has: nvidia-gtx-2080ti, nvidia-h100"):
        check_gpu_fit(cluster_view(FakeAPI(CLUSTER, [])), spec(gpu_type="nvidia-a100"), [])


def test_untolerated_taint_leaves_no_candidate() -> None:
    with pytest.raises(PreflightError, match="no schedulable node matches"):
        check_gpu_fit(cluster_view(FakeAPI(CLUSTER, [])), spec(tolerations=[]), [])


def test_forbidden_nodes_skip_the_fit_check_with_a_warning() -> None:
    view = cluster_view(FakeAPI(None))
    assert view.nodes is None and "cannot list nodes (403" in view.warnings[0]
    check_gpu_fit(view, spec(gpus=64), [])  # nothing to check against: no error


def test_quota_counts_used_and_all_new_runs() -> None:
    quota = {
        "metadata": {"name": "aic-quota"},
        "status": {
            "hard": {"requests.nvidia.com/gpu": "16", "requests.memory": "4Ti"},
            "used": {"requests.nvidia.com/gpu": "8", "requests.memory": "128Gi"},
        },
    }
    api = FakeAPI(CLUSTER, quotas=[quota])
    check_quota(api, "aic", [spec()], [])  # 8 used + 8 = 16: fits
    with pytest.raises(PreflightError) as error:
        check_quota(api, "aic", [spec(name="a"), spec(name="b")], [])
    assert str(error.value) == (
        "ResourceQuota aic/aic-quota would be exceeded for requests.nvidia.com/gpu: "
        "2 runs need 16, 8 of 16 is in use, so 8 is left"
    )


def test_memory_quota_is_shown_in_binary_units() -> None:
    quota = {"metadata": {"name": "q"}, "status": {"hard": {"limits.memory": "100Gi"}, "used": {}}}
    with pytest.raises(
        PreflightError, match=re.escape("limits.memory: run r need 128Gi, 0 of 100Gi is in use")
    ):
        check_quota(FakeAPI(CLUSTER, quotas=[quota]), "aic", [spec()], [])


def test_references_are_checked_without_reading_values_twice() -> None:
    objects = {
        ("Secret", "cred"): {
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        },
        ("Secret", "wandb"): {"type": "Opaque", "data": {"api-key": "c2VjcmV0"}},
        ("PersistentVolumeClaim", "ckpt"): {"metadata": {"name": "ckpt"}},
    }
    api = FakeAPI(CLUSTER, objects=objects)
    cache: dict[str, Any] = {}
    ok = spec(
        image_pull_secrets=["cred"],
        secret_env={"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}},
        volumes=[{"mount_path": "/c", "claim": "ckpt"}],
    )
    check_references(api, ok, cache)
    check_references(api, ok, cache)
    assert api.gets.count(("Secret", "cred")) == 1
    with pytest.raises(PreflightError, match="has no key 'token' \\(its keys: api-key\\)"):
        check_references(api, spec(secret_env={"T": {"secret": "wandb", "key": "token"}}), {})
    with pytest.raises(
        PreflightError, match=re.escape("has type 'Opaque', not kubernetes.io/dockerconfigjson")
    ):
        check_references(api, spec(image_pull_secrets=["wandb"]), {})
    with pytest.raises(PreflightError, match="PVC aic/missing does not exist"):
        check_references(api, spec(volumes=[{"mount_path": "/c", "claim": "missing"}]), {})


@pytest.mark.parametrize(
    ("gpu_type", "action", "outcome"),
    [
        ("nvidia-h100", "fail", None),
        ("nvidia-gtx-2080ti", "fail", "error"),
        ("nvidia-gtx-2080ti", "warn", "warning"),
        ("nvidia-b200", "fail", "unknown"),
    ],
)
def test_compute_capability(gpu_type: str, action: str, outcome: str | None) -> None:
    warnings: list[str] = []
    run = spec(gpu_type=gpu_type)
    if outcome == "error":
        with pytest.raises(
            PreflightError, match=re.escape("capability 7.5, below the min_compute_capability=8.0")
        ):
            check_capability(run, 8.0, action, {}, warnings)
        return
    check_capability(run, 8.0, action, {}, warnings)
    if outcome is None:
        assert warnings == []
    elif outcome == "warning":
        assert "compute capability 7.5" in warnings[0]
    else:
        assert "is unknown" in warnings[0]
        check_capability(run, 8.0, action, {"nvidia-b200": 10.0}, (more := []))
        assert more == []
