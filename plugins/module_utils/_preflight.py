# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Checks that refuse a training run that cannot work, before it is created and billed.

Reads only: Secrets (existence and key names, never values), PVCs, ResourceQuotas, and, where
RBAC allows, Nodes and the pods on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sApiError,
    K8sClient,
    K8sError,
)
from ansible_collections.urm.training.plugins.module_utils._quantity import (
    format_bytes,
    format_number,
    parse_quantity,
)
from ansible_collections.urm.training.plugins.module_utils._training import (
    GPU_RESOURCE,
    KNOWN_CAPABILITIES,
    RunSpec,
)


class PreflightError(K8sError):
    """The run cannot work as requested; nothing was created."""


@dataclass
class NodeGpus:
    name: str
    labels: dict[str, str]
    taints: list[dict[str, Any]]
    allocatable: int
    used: int
    schedulable: bool

    @property
    def free(self) -> int:
        return max(self.allocatable - self.used, 0)


@dataclass
class ClusterView:
    """What the caller may see of the cluster's GPUs."""

    nodes: list[NodeGpus] | None  # None: listing nodes is forbidden
    pods_visible: bool
    warnings: list[str] = field(default_factory=list)


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (
            not tol.get("key") or tol.get("key") == taint.get("key")
        ):
            return True
        if tol.get("key") == taint.get("key") and str(tol.get("value", "")) == str(
            taint.get("value", "")
        ):
            return True
    return False


def _gpu_request(pod: Mapping[str, Any]) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(requests.get(GPU_RESOURCE) or limits.get(GPU_RESOURCE) or 0)
    return total


def cluster_view(client: K8sClient) -> ClusterView:
    """Nodes with their GPUs, and GPUs used by pods, as far as RBAC lets us see."""
    warnings: list[str] = []
    try:
        raw_nodes = client.list("Node")
    except K8sApiError as exc:
        if exc.status != 403:
            raise
        return ClusterView(
            None,
            False,
            [
                "cannot list nodes (403 Forbidden for these credentials), so GPUs per node are "
                "not visible; only the namespace quota is"
            ],
        )
    used: dict[str, int] = {}
    pods_visible = True
    try:
        listing = client.request(
            "GET",
            "/api/v1/pods",
            query={"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"},
            verb="list",
            what="pods in all namespaces",
        )
        for pod in listing.get("items") or []:
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                used[node] = used.get(node, 0) + _gpu_request(pod)
    except K8sApiError as exc:
        if exc.status != 403:
            raise
        pods_visible = False
        warnings.append(
            "cannot list pods in all namespaces: free GPUs are shown as allocatable, without "
            "what other pods use"
        )
    nodes = []
    for node in raw_nodes:
        meta, spec, status = (
            node.get("metadata") or {},
            node.get("spec") or {},
            node.get("status") or {},
        )
        allocatable = int((status.get("allocatable") or {}).get(GPU_RESOURCE) or 0)
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        nodes.append(
            NodeGpus(
                name=meta.get("name", "?"),
                labels=dict(meta.get("labels") or {}),
                taints=list(spec.get("taints") or []),
                allocatable=allocatable,
                used=used.get(meta.get("name", ""), 0),
                schedulable=ready and not spec.get("unschedulable"),
            )
        )
    return ClusterView(nodes, pods_visible, warnings)


def _matching(view: ClusterView, spec: RunSpec) -> list[NodeGpus]:
    assert view.nodes is not None
    selector = spec.selector
    return [
        n
        for n in view.nodes
        if n.schedulable
        and all(n.labels.get(k) == v for k, v in selector.items())
        and all(_tolerated(t, spec.tolerations) for t in n.taints)
    ]


def check_gpu_fit(view: ClusterView, spec: RunSpec, warnings: list[str]) -> None:
    if view.nodes is None:
        return
    label = spec.accelerator_label
    if spec.gpu_type:
        known = sorted({n.labels[label] for n in view.nodes if label in n.labels})
        if spec.gpu_type not in known:
            raise PreflightError(
                f"gpu_type={spec.gpu_type!r} matches no node label {label}={spec.gpu_type}; "
                f"the cluster has: {', '.join(known) or 'no labelled GPU nodes'}"
            )
    candidates = _matching(view, spec)
    kind = spec.gpu_type or "GPU"
    if not candidates:
        raise PreflightError(
            f"no schedulable node matches node_selector {spec.selector} with the given "
            "tolerations; check gpu_type, node_selector and tolerations"
        )
    by_size = sorted(candidates, key=lambda n: (-n.allocatable, -n.free, n.name))
    largest = by_size[0]
    if spec.gpus > largest.allocatable:
        slots = ", ".join(f"{n.name}: {n.free} free" for n in by_size[:3])
        need_nodes = -(-spec.gpus * spec.nodes // max(largest.allocatable, 1))
        hint = (
            f"; use gpus: {largest.allocatable} with nodes: {need_nodes}"
            if largest.allocatable
            else ""
        )
        raise PreflightError(
            f"needs {spec.gpus} x {kind} on one node; the largest has {largest.allocatable} "
            f"({slots}){hint}"
        )
    big_enough = [n for n in candidates if n.allocatable >= spec.gpus]
    if spec.nodes > len(big_enough):
        raise PreflightError(
            f"nodes={spec.nodes} needs {spec.nodes} nodes with {spec.gpus} x {kind} each; only "
            f"{len(big_enough)} exist ({', '.join(n.name for n in big_enough)})"
        )
    free_now = [n for n in big_enough if n.free >= spec.gpus]
    if view.pods_visible and len(free_now) < spec.nodes:
        warnings.append(
            f"{spec.name}: {spec.nodes} node(s) with {spec.gpus} free {kind} are needed and "
            f"{len(free_now)} have them now; the run will wait until GPUs free up"
        )


def check_capability(
    spec: RunSpec,
    minimum: float,
    action: str,
    capabilities: Mapping[str, float],
    warnings: list[str],
) -> None:
    if not spec.gpu_type or minimum <= 0:
        return
    table = dict(KNOWN_CAPABILITIES)
    table.update({k: float(v) for k, v in capabilities.items()})
    capability = table.get(spec.gpu_type)
    if capability is None:
        warnings.append(
            f"{spec.name}: the compute capability of gpu_type={spec.gpu_type} is unknown; add it "
            "to accelerator_capabilities to have it checked"
        )
        return
    if capability < minimum:
        message = (
            f"gpu_type={spec.gpu_type} has compute capability {capability}, below the "
            f"min_compute_capability={minimum} this image needs (flash-attn 2 and adam-atan2 need "
            "SM >= 8.0); choose an accelerator such as nvidia-h100"
        )
        if action == "fail":
            raise PreflightError(message)
        warnings.append(f"{spec.name}: {message}")


def _secret_keys(secret: dict[str, Any]) -> set[str]:
    """The key names a Secret holds (never its values)."""
    return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def check_references(
    client: K8sClient, spec: RunSpec, secrets: dict[str, dict[str, Any] | None]
) -> None:
    """Pull secrets, secret_env keys, the git credential's keys and existing claims; ``secrets``
    caches reads per run set."""

    def secret(name: str) -> dict[str, Any] | None:
        if name not in secrets:
            secrets[name] = client.get("Secret", name, spec.namespace)
        return secrets[name]

    for name in spec.image_pull_secrets:
        found = secret(name)
        if found is None:
            raise PreflightError(
                f"image_pull_secrets: Secret {spec.namespace}/{name} does not exist; create it "
                "with the registry_auth role (or urm.training.registry_secret) first"
            )
        if found.get("type") != "kubernetes.io/dockerconfigjson":
            raise PreflightError(
                f"image_pull_secrets: Secret {spec.namespace}/{name} has type "
                f"{found.get('type')!r}, not kubernetes.io/dockerconfigjson"
            )
    for ref in spec.secret_env:
        found = secret(ref.secret)
        if found is None:
            raise PreflightError(
                f"secret_env.{ref.env}: Secret {spec.namespace}/{ref.secret} does not exist"
            )
        keys = sorted(_secret_keys(found))
        if ref.key not in keys:
            raise PreflightError(
                f"secret_env.{ref.env}: Secret {spec.namespace}/{ref.secret} has no key "
                f"{ref.key!r} (its keys: {', '.join(keys) or 'none'})"
            )
    if spec.git and spec.git.credentials_secret:
        name = spec.git.credentials_secret
        found = secret(name)
        if found is None:
            raise PreflightError(
                f"git.credentials_secret: Secret {spec.namespace}/{name} does not exist; create "
                f"it with keys {' and '.join(spec.git.secret_keys)}, e.g. with "
                "urm.training.env_secret"
            )
        present = _secret_keys(found)
        missing = [key for key in spec.git.secret_keys if key not in present]
        if missing:
            raise PreflightError(
                f"git.credentials_secret: Secret {spec.namespace}/{name} has no key "
                f"{' or '.join(repr(k) for k in missing)} (its keys: "
                f"{', '.join(sorted(present)) or 'none'}); git over {spec.git.transport} needs "
                f"{' and '.join(spec.git.secret_keys)}"
            )
    for volume in spec.volumes:
        if volume.create:
            continue
        if client.get("PersistentVolumeClaim", volume.claim, spec.namespace) is None:
            raise PreflightError(
                f"volumes: PVC {spec.namespace}/{volume.claim} does not exist; give storage_class "
                "and size to have it created"
            )


def _quota_amount(key: str, spec: RunSpec) -> Decimal | None:
    pods = spec.nodes
    table = {
        f"requests.{GPU_RESOURCE}": Decimal(spec.gpus * pods),
        "requests.memory": spec.memory_limit * pods,
        "limits.memory": spec.memory_limit * pods,
        "memory": spec.memory_limit * pods,
        "requests.cpu": spec.cpu_request * pods,
        "cpu": spec.cpu_request * pods,
        "pods": Decimal(pods),
        "count/pods": Decimal(pods),
        "count/jobs.batch": Decimal(0 if spec.mode == "devpod" else 1),
    }
    return table.get(key)


def check_quota(
    client: K8sClient, namespace: str, specs: list[RunSpec], warnings: list[str]
) -> None:
    """The new runs together must fit in what the namespace quota has left."""
    if not specs:
        return
    try:
        quotas = client.list("ResourceQuota", namespace)
    except K8sApiError as exc:
        if exc.status != 403:
            raise
        warnings.append("cannot read the namespace ResourceQuota (403): the quota check is skipped")
        return
    for quota in quotas:
        status = quota.get("status") or {}
        hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
        used = status.get("used") or {}
        qname = (quota.get("metadata") or {}).get("name", "?")
        for key, limit in hard.items():
            wanted = Decimal(0)
            for spec in specs:
                amount = _quota_amount(key, spec)
                if amount is None:
                    break
                wanted += amount
            else:
                hard_value = parse_quantity(limit, key)
                used_value = parse_quantity(used.get(key, "0"), key)
                if used_value + wanted > hard_value:
                    show = format_bytes if "memory" in key else format_number
                    runs = f"{len(specs)} runs" if len(specs) > 1 else f"run {specs[0].name}"
                    raise PreflightError(
                        f"ResourceQuota {namespace}/{qname} would be exceeded for {key}: {runs} "
                        f"need {show(wanted)}, {show(used_value)} of {show(hard_value)} is in use, "
                        f"so {show(max(hard_value - used_value, Decimal(0)))} is left"
                    )
