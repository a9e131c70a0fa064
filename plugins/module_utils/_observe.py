# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Read-only views for training_info and gpu_info: the runs in a namespace, and the GPUs."""

from __future__ import annotations

import datetime
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._k8s import K8sApiError, K8sClient
from ansible_collections.urm.training.plugins.module_utils._preflight import cluster_view
from ansible_collections.urm.training.plugins.module_utils._training import (
    ANNOTATION_GPUS,
    GPU_RESOURCE,
    LABEL_GIT_COMMIT,
    LABEL_GIT_DIRTY,
    LABEL_MANAGED,
    LABEL_MODE,
    LABEL_RUN,
    MANAGED_BY,
)
from ansible_collections.urm.training.plugins.module_utils._wait import (
    diagnose_job,
    diagnose_pod,
    job_state,
    pod_logs,
)


def _age(timestamp: str | None, now: datetime.datetime) -> str:
    if not timestamp:
        return ""
    started = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    seconds = int((now - started).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_runs(
    client: K8sClient,
    namespace: str,
    *,
    name: str | None = None,
    label_selector: str | None = None,
    tail_lines: int = 0,
) -> list[dict[str, Any]]:
    """One row per run: phase, nodes, GPUs, age and the reason it failed or waits."""
    selector = f"{LABEL_MANAGED}={MANAGED_BY},{LABEL_RUN}"
    if name:
        selector += f",{LABEL_RUN}={name}"
    if label_selector:
        selector += f",{label_selector}"
    jobs = client.list("Job", namespace, label_selector=selector)
    pods = client.list("Pod", namespace, label_selector=selector)
    records = client.list(
        "ConfigMap", namespace, label_selector=f"{selector},training.urm.io/record=true"
    )
    now = datetime.datetime.now(datetime.UTC)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        run = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN, "")
        by_run.setdefault(run, []).append(pod)
    rows: dict[str, dict[str, Any]] = {}

    def row_for(run: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        run_pods = by_run.get(run, []) if kind == "Job" else [obj]
        reason, message = None, None
        for pod in run_pods:
            problem = diagnose_pod(pod)
            if problem:
                reason, message = problem.reason, problem.message
        if kind == "Job":
            state = job_state(obj)
            phases = {"Complete": "Succeeded", "Failed": "Failed", "Suspended": "Suspended"}
            phase = phases.get(state or "")
            failure = diagnose_job(obj)
            if failure:
                reason, message = failure.reason, (message or failure.message)
            if phase is None:
                seen = {(p.get("status") or {}).get("phase") for p in run_pods}
                phase = "Running" if "Running" in seen else "Pending"
        else:
            phase = (obj.get("status") or {}).get("phase")
        gpus = (meta.get("annotations") or {}).get(ANNOTATION_GPUS)
        labels = meta.get("labels") or {}
        dirty = labels.get(LABEL_GIT_DIRTY)
        return {
            "name": run,
            "kind": kind,
            "mode": labels.get(LABEL_MODE, "job"),
            "phase": phase,
            "reason": reason,
            "message": message,
            "nodes": sorted({(p.get("spec") or {}).get("nodeName") for p in run_pods} - {None}),
            "pods": sorted((p.get("metadata") or {}).get("name", "") for p in run_pods),
            "gpus": int(gpus) if gpus and gpus.isdigit() else None,
            "age": _age(meta.get("creationTimestamp"), now),
            "created": meta.get("creationTimestamp"),
            "commit": labels.get(LABEL_GIT_COMMIT),
            "dirty": None if dirty is None else dirty == "true",
        }

    for job in jobs:
        run = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN, "")
        rows[run] = row_for(run, "Job", job)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_MODE) == "devpod":
            rows[labels.get(LABEL_RUN, "")] = row_for(labels.get(LABEL_RUN, ""), "Pod", pod)
    for record in records:
        run = ((record.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN, "")
        if run in rows:
            continue
        data = record.get("data") or {}
        rows[run] = {
            "name": run,
            "kind": data.get("kind", "Job"),
            "mode": "job",
            "phase": data.get("phase"),
            "reason": data.get("reason") or None,
            "message": (data.get("message") or None)
            or "its Job is gone (ttl); this is the recorded outcome",
            "nodes": [],
            "pods": [],
            "gpus": None,
            "age": "",
            "created": None,
            "commit": None,
            "dirty": None,
        }
    result = sorted(rows.values(), key=lambda r: r["created"] or "", reverse=True)
    if tail_lines > 0:
        for row in result:
            if row["pods"]:
                row["log_tail"] = pod_logs(client, namespace, row["pods"][-1], "train", tail_lines)
    return result


def gpu_summary(client: K8sClient, namespace: str | None, accelerator_label: str) -> dict[str, Any]:
    """Total, allocated and free GPUs per node and per accelerator type, as far as RBAC allows."""
    view = cluster_view(client)
    warnings = list(view.warnings)
    nodes: list[dict[str, Any]] = []
    by_type: dict[str, dict[str, int]] = {}
    for node in view.nodes or []:
        if node.allocatable == 0:
            continue
        kind = node.labels.get(accelerator_label, "unlabelled")
        allocated = node.used if view.pods_visible else None
        free = node.free if view.pods_visible else None
        nodes.append(
            {
                "name": node.name,
                "type": kind,
                "product": node.labels.get("nvidia.com/gpu.product"),
                "total": node.allocatable,
                "allocated": allocated,
                "free": free,
                "schedulable": node.schedulable,
            }
        )
        entry = by_type.setdefault(
            kind, {"total": 0, "allocated": 0, "free": 0, "nodes": 0, "largest_free": 0}
        )
        entry["total"] += node.allocatable
        entry["nodes"] += 1
        if view.pods_visible and node.schedulable:
            entry["allocated"] += node.used
            entry["free"] += node.free
            entry["largest_free"] = max(entry["largest_free"], node.free)
    quota: dict[str, Any] | None = None
    if namespace:
        try:
            for item in client.list("ResourceQuota", namespace):
                status = item.get("status") or {}
                key = f"requests.{GPU_RESOURCE}"
                if key in (status.get("hard") or {}):
                    used = int(status.get("used", {}).get(key, 0))
                    hard = int(status["hard"][key])
                    quota = {
                        "name": item["metadata"]["name"],
                        "used": used,
                        "hard": hard,
                        "left": hard - used,
                    }
        except K8sApiError as exc:
            if exc.status != 403:
                raise
            warnings.append(f"cannot read the ResourceQuota of namespace {namespace} (403)")
    return {
        "nodes_visible": view.nodes is not None,
        "pods_visible": view.pods_visible,
        "nodes": nodes,
        "by_type": by_type,
        "quota": quota,
        "warnings": warnings,
    }
