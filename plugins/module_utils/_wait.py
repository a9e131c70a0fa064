# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one wait-and-diagnose layer: watch objects until a condition holds, and turn Pod and Job
states into plain-English failures.

Waiting uses the watch API (list, then watch from that resourceVersion), so a failure is seen the
moment the API server records it, not at the next poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sApiError,
    K8sClient,
    K8sError,
    resource_path,
)

T = TypeVar("T")

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")


class WaitTimeout(K8sError):
    """The condition did not hold within the timeout."""


@dataclass(frozen=True)
class Diagnosis:
    """Why a pod or Job is not getting where it should, in words a researcher can act on."""

    reason: str
    message: str
    fatal: bool = True
    exit_code: int | None = None
    container: str | None = None


def _read_lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(8192, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def watch_events(
    client: K8sClient,
    kind: str,
    namespace: str | None,
    *,
    name: str | None = None,
    label_selector: str | None = None,
    timeout: float,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (event type, object): first ADDED for what exists now, then changes, until timeout.

    Raises WaitTimeout when the time is up. A watch that expires (410 Gone) is re-listed.
    """
    import urllib3

    deadline = time.monotonic() + timeout
    path = resource_path(kind, namespace)
    selectors = {
        "labelSelector": label_selector,
        "fieldSelector": f"metadata.name={name}" if name else None,
    }
    while True:
        listing = client.request("GET", path, query=selectors, verb="list", what=f"{kind} objects")
        version = (listing.get("metadata") or {}).get("resourceVersion")
        for item in listing.get("items") or []:
            yield "ADDED", item
        relist = False
        while not relist:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"timed out after {timeout:.0f}s")
            query = dict(
                selectors,
                watch="1",
                resourceVersion=version,
                allowWatchBookmarks="true",
                timeoutSeconds=str(max(1, int(remaining))),
            )
            try:
                response = client.open_raw(path, query=query, timeout=(10.0, remaining + 5.0))
            except K8sApiError as exc:
                if exc.status == 410:
                    break
                raise
            try:
                for line in _read_lines(response):
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            relist = True
                            break
                        raise K8sError(f"watching {kind} failed: {obj.get('message', obj)}")
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event.get("type") == "BOOKMARK":
                        continue
                    yield str(event.get("type")), obj
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                pass  # the server closed or went quiet: check the deadline and watch again
            finally:
                response.release_conn()


def watch_until(
    client: K8sClient,
    kind: str,
    namespace: str | None,
    predicate: Callable[[dict[str, Any]], T | None],
    *,
    name: str | None = None,
    label_selector: str | None = None,
    timeout: float,
) -> T:
    """Return the first non-None ``predicate(object)``; raise WaitTimeout when none comes."""
    for event_type, obj in watch_events(
        client, kind, namespace, name=name, label_selector=label_selector, timeout=timeout
    ):
        if event_type == "DELETED":
            continue
        result = predicate(obj)
        if result is not None:
            return result
    raise AssertionError("unreachable")  # pragma: no cover - watch_events raises on timeout


def pod_logs(
    client: K8sClient,
    namespace: str,
    pod: str,
    container: str | None = None,
    tail_lines: int = 50,
    previous: bool = False,
) -> str:
    """The last lines of a container's log ('' when there is none yet)."""
    path = resource_path("Pod", namespace, pod) + "/log"
    query = {
        "container": container,
        "tailLines": str(tail_lines),
        "previous": "true" if previous else None,
    }
    try:
        response = client.open_raw(path, query=query, what=f"the log of pod {namespace}/{pod}")
    except K8sApiError as exc:
        if exc.status in (400, 404):
            return ""
        raise
    try:
        return bytes(response.data or b"").decode("utf-8", "replace")
    finally:
        response.release_conn()


# -- diagnosis ------------------------------------------------------------------------------


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _memory_limit(pod: dict[str, Any], container: str) -> str | None:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _is_init_container(pod: dict[str, Any], name: str) -> bool:
    return any(c.get("name") == name for c in (pod.get("spec") or {}).get("initContainers") or [])


def _pull_secrets(pod: dict[str, Any]) -> list[str]:
    return [s.get("name", "") for s in (pod.get("spec") or {}).get("imagePullSecrets") or []]


def _terminated(pod: dict[str, Any], name: str, term: dict[str, Any]) -> Diagnosis | None:
    code = term.get("exitCode")
    reason = term.get("reason") or ""
    if reason == "OOMKilled":
        limit = _memory_limit(pod, name)
        return Diagnosis(
            "OOMKilled",
            f"container {name!r} ran out of memory and was killed (OOMKilled, exit code "
            f"{code}); its memory limit is {limit or 'unset'}. Raise memory_per_gpu (shm counts "
            "against it too) or lower the batch size",
            exit_code=code,
            container=name,
        )
    if code not in (None, 0):
        detail = f": {term['message'].strip()}" if term.get("message") else ""
        if _is_init_container(pod, name):
            return Diagnosis(
                "InitContainerFailed",
                f"init container {name!r} failed with exit code {code}, so the training never "
                f"started{detail}",
                exit_code=code,
                container=name,
            )
        return Diagnosis(
            reason or "Error",
            f"container {name!r} exited with code {code} ({reason or 'Error'}){detail}",
            exit_code=code,
            container=name,
        )
    return None


def diagnose_pod(pod: dict[str, Any]) -> Diagnosis | None:
    """The most specific problem the pod shows, or None if it is healthy so far."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    pod_name = meta.get("name", "?")
    if status.get("reason") == "Evicted":
        return Diagnosis(
            "Evicted",
            f"pod {pod_name} was evicted from node {(pod.get('spec') or {}).get('nodeName')}: "
            f"{status.get('message', '')}",
        )
    disruption = _condition(pod, "DisruptionTarget")
    if disruption and disruption.get("status") == "True":
        return Diagnosis(
            "Disrupted",
            f"pod {pod_name} was disrupted ({disruption.get('reason')}): "
            f"{disruption.get('message', '')}",
        )
    for cstatus in _container_statuses(pod):
        name = cstatus.get("name", "?")
        state = cstatus.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in IMAGE_PULL_REASONS:
            secrets = _pull_secrets(pod)
            secret_text = (
                f"the pull secret(s) {', '.join(secrets)} hold a valid credential for its registry"
                if secrets
                else "the pod has an imagePullSecret for its registry (it has none)"
            )
            return Diagnosis(
                reason,
                f"cannot pull image {cstatus.get('image')!r} for container {name!r} ({reason}): "
                f"{waiting.get('message', '').strip()}. Check that the image and tag exist and "
                f"that {secret_text}",
                container=name,
            )
        if reason in CONFIG_REASONS:
            return Diagnosis(
                reason,
                f"container {name!r} cannot be created ({reason}): "
                f"{waiting.get('message', '').strip()}. Usually a Secret or ConfigMap it "
                "refers to, or a key in it, is missing",
                container=name,
            )
        if reason == "CrashLoopBackOff":
            last = (cstatus.get("lastState") or {}).get("terminated") or {}
            found = _terminated(pod, name, last) if last else None
            detail = f"; last time: {found.message}" if found else ""
            return Diagnosis(
                reason,
                f"container {name!r} keeps crashing (CrashLoopBackOff){detail}",
                exit_code=last.get("exitCode"),
                container=name,
            )
        term = state.get("terminated")
        if term:
            found = _terminated(pod, name, term)
            if found:
                return found
    scheduled = _condition(pod, "PodScheduled")
    if (
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        return Diagnosis(
            "Unschedulable",
            f"pod {pod_name} cannot be scheduled: {scheduled.get('message', '')}",
            fatal=False,
        )
    if status.get("phase") == "Failed":
        return Diagnosis(
            status.get("reason") or "Failed",
            f"pod {pod_name} failed: {status.get('message') or 'no reason given'}",
        )
    return None


JOB_FAILURE_TEXT = {
    "BackoffLimitExceeded": "its pod failed and no retries are left (backoffLimit)",
    "DeadlineExceeded": "it ran longer than its active_deadline (activeDeadlineSeconds)",
    "PodFailurePolicy": "a pod failure matched the Job's podFailurePolicy",
    "MaxFailedIndexesExceeded": "too many indexes failed",
}


def job_state(job: dict[str, Any]) -> str | None:
    """'Complete', 'Failed', 'Suspended', or None while it is still going."""
    for kind in ("Complete", "Failed", "Suspended"):
        condition = _condition(job, kind)
        if condition and condition.get("status") == "True":
            return kind
    return None


def diagnose_job(job: dict[str, Any]) -> Diagnosis | None:
    failed = _condition(job, "Failed")
    if not failed or failed.get("status") != "True":
        return None
    reason = failed.get("reason") or "Failed"
    explanation = JOB_FAILURE_TEXT.get(reason, "the Job failed")
    name = (job.get("metadata") or {}).get("name", "?")
    return Diagnosis(
        reason, f"Job {name} failed ({reason}): {explanation}. {failed.get('message', '')}".strip()
    )
