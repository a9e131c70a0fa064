# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Launch, relaunch, stop and watch training runs: the runner behind training_job.

Idempotency: a run's identity is its name; the hash of everything rendered for it is kept in an
annotation. Same hash: unchanged, whatever phase. Different hash: ``on_change`` decides. A finished
run is started again only with ``rerun``. A record ConfigMap keeps the spec hash and the terminal
phase, so that a Job removed by ``ttlSecondsAfterFinished`` is still known as finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sApiError,
    K8sClient,
    K8sError,
    with_auth_options,
)
from ansible_collections.urm.training.plugins.module_utils._preflight import (
    PreflightError,
    check_capability,
    check_gpu_fit,
    check_quota,
    check_references,
    cluster_view,
)
from ansible_collections.urm.training.plugins.module_utils._quantity import format_bytes
from ansible_collections.urm.training.plugins.module_utils._training import (
    LABEL_MANAGED,
    LABEL_RUN,
    MANAGED_BY,
    RunSpec,
    claims,
    headless_service,
    spec_hash,
    workload,
)
from ansible_collections.urm.training.plugins.module_utils._wait import (
    Diagnosis,
    WaitTimeout,
    diagnose_job,
    diagnose_pod,
    job_state,
    pod_logs,
    watch_events,
    watch_until,
)

ANNOTATION_SUMMARY = "training.urm.io/spec"
RECORD_PREFIX = "urm-run-"
WAIT_TARGETS = ("none", "scheduled", "running", "complete")
LOG_LINES = 30


class RunFailed(K8sError):
    """A run was created but failed, or did not get where it was asked to within the time."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class RunResult:
    name: str
    kind: str = "Job"
    action: str = "unchanged"
    changed: bool = False
    job_name: str | None = None
    pods: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    spec_hash: str | None = None
    diff: dict[str, Any] | None = None
    log_tail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(spec: RunSpec) -> dict[str, Any]:
    """What a person recognises in a diff: the options, with Secret *references* only."""
    return {
        "image": spec.image,
        "command": spec.command,
        "args": spec.args,
        "gpus": spec.gpus,
        "nodes": spec.nodes,
        "gpu_type": spec.gpu_type,
        "cpu": str(spec.cpu_request),
        "memory": format_bytes(spec.memory_limit),
        "shm_size": format_bytes(spec.shm_size),
        "env": dict(sorted(spec.env.items())),
        "secret_env": {r.env: f"{r.secret}/{r.key}" for r in spec.secret_env},
        "wandb": {k: v for k, v in sorted(spec.wandb.items())},
        "volumes": {v.mount_path: v.claim for v in spec.volumes},
        "node_selector": spec.selector,
        "tolerations": spec.tolerations,
        "image_pull_secrets": spec.image_pull_secrets,
        "priority_class": spec.priority_class,
        "queue": spec.queue,
        "active_deadline": spec.active_deadline,
        "backoff_limit": spec.backoff_limit,
        "ttl_after_finished": spec.ttl_after_finished,
        "labels": spec.labels,
        "annotations": spec.annotations,
        "mode": spec.mode,
        "git": {
            "repo": spec.git.repo,
            "commit": spec.git.commit,
            "path": spec.git.path,
            "credentials_secret": spec.git.credentials_secret,
            "image": spec.git.image,
            "depth": spec.git.depth,
        }
        if spec.git
        else None,
    }


def _live_summary(obj: dict[str, Any]) -> dict[str, Any]:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SUMMARY)
    try:
        return dict(json.loads(text)) if text else {}
    except ValueError:
        return {}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {
        "before": {k: before.get(k) for k in keys},
        "after": {k: after.get(k) for k in keys},
    }


def _record_name(run: str) -> str:
    return f"{RECORD_PREFIX}{run}"


def _finished_phase(obj: dict[str, Any], kind: str) -> str | None:
    if kind == "Pod":
        phase = (obj.get("status") or {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None
    state = job_state(obj)
    return {"Complete": "Succeeded", "Failed": "Failed"}.get(state or "")


class TrainingRunner:
    def __init__(self, client: K8sClient, namespace: str, check_mode: bool) -> None:
        self.client = client
        self.namespace = namespace
        self.check_mode = check_mode
        self.warnings: list[str] = []

    # -- reading ------------------------------------------------------------------------

    def _live(self, kind: str) -> dict[str, dict[str, Any]]:
        items = self.client.list(
            kind, self.namespace, label_selector=f"{LABEL_MANAGED}={MANAGED_BY}"
        )
        return {(i.get("metadata") or {}).get("name", ""): i for i in items}

    def _records(self) -> dict[str, dict[str, Any]]:
        items = self.client.list(
            "ConfigMap",
            self.namespace,
            label_selector=f"{LABEL_MANAGED}={MANAGED_BY},training.urm.io/record=true",
        )
        out = {}
        for item in items:
            run = ((item.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN)
            if run:
                out[run] = item
        return out

    # -- writing ------------------------------------------------------------------------

    def _write_record(
        self, spec: RunSpec, digest: str | None, phase: str, reason: str = "", message: str = ""
    ) -> None:
        body = {
            "metadata": {
                "name": _record_name(spec.name),
                "labels": {
                    LABEL_MANAGED: MANAGED_BY,
                    LABEL_RUN: spec.name,
                    "training.urm.io/record": "true",
                },
            },
            "data": {
                "spec-hash": digest or "",
                "kind": spec.kind,
                "phase": phase,
                "reason": reason,
                "message": message[:2000],
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        try:
            self.client.create("ConfigMap", body, self.namespace)
        except K8sApiError as exc:
            if exc.status != 409:
                raise
            self.client.patch(
                "ConfigMap", _record_name(spec.name), {"data": body["data"]}, self.namespace
            )

    def _delete_workload(self, spec: RunSpec, kind: str, timeout: float = 120) -> None:
        """Delete the Job (and its pods) or dev Pod, and wait until it is gone."""
        if not self.client.delete(kind, spec.name, self.namespace, propagation="Foreground"):
            return
        deadline = time.monotonic() + timeout
        while self.client.get(kind, spec.name, self.namespace) is not None:
            if time.monotonic() > deadline:
                raise K8sError(
                    f"{kind} {self.namespace}/{spec.name} was not deleted within {timeout:.0f}s"
                )
            time.sleep(0.3)

    def _create(self, spec: RunSpec, body: dict[str, Any]) -> None:
        for claim in claims(spec):
            if (
                self.client.get("PersistentVolumeClaim", claim["metadata"]["name"], self.namespace)
                is None
            ):
                self.client.create("PersistentVolumeClaim", claim, self.namespace)
        if spec.nodes > 1 and self.client.get("Service", spec.name, self.namespace) is None:
            self.client.create("Service", headless_service(spec), self.namespace)
        self.client.create(spec.kind, body, self.namespace)
        self._write_record(spec, spec_hash(body), "Created")

    # -- the plan -----------------------------------------------------------------------

    def plan(
        self, specs: list[RunSpec], on_change: str, rerun: bool
    ) -> list[tuple[RunSpec, dict[str, Any], RunResult]]:
        jobs = self._live("Job")
        pods = self._live("Pod") if any(s.mode == "devpod" for s in specs) else {}
        records = self._records()
        conflicts = []
        plan = []
        for spec in specs:
            body = workload(spec)
            body["metadata"]["annotations"][ANNOTATION_SUMMARY] = json.dumps(
                summary(spec), sort_keys=True
            )
            digest = spec_hash(body)
            live = (pods if spec.kind == "Pod" else jobs).get(spec.name)
            result = RunResult(name=spec.name, kind=spec.kind, job_name=spec.name, spec_hash=digest)
            if live is not None:
                finished = _finished_phase(live, spec.kind)
                if spec_hash(live) != digest:
                    result.diff = _diff(_live_summary(live), summary(spec))
                    if on_change == "fail":
                        conflicts.append((spec, result))
                        continue
                    result.action = "replace"
                elif finished and rerun:
                    result.action = "rerun"
                else:
                    result.action = "unchanged"
                    result.phase = finished or (live.get("status") or {}).get("phase")
            else:
                record = records.get(spec.name)
                data = (record or {}).get("data") or {}
                if (
                    data.get("spec-hash") == digest
                    and data.get("phase") in ("Succeeded", "Failed")
                    and not rerun
                ):
                    result.action = "unchanged"
                    result.phase, result.reason = data.get("phase"), data.get("reason") or None
                    result.message = (
                        "the run finished earlier and its Job was cleaned up; "
                        "set rerun to start it again"
                    )
                else:
                    result.action = "create"
            plan.append((spec, body, result))
        if conflicts:
            lines = []
            for spec, result in conflicts:
                diff = result.diff or {"before": {}, "after": {}}
                changes = ", ".join(
                    f"{k}: {json.dumps(diff['before'][k])} -> {json.dumps(diff['after'][k])}"
                    for k in diff["after"]
                )
                lines.append(f"{spec.name} ({changes})")
            error = RunFailed(
                "the spec of existing run(s) changed and on_change=fail, so nothing was touched: "
                + "; ".join(lines)
                + ". Use a new run name, or on_change: replace to delete and recreate",
                conflicts[0][1],
            )
            error.result.action = "conflict"
            raise error
        return plan

    def preflight(
        self,
        planned: list[RunSpec],
        minimum: float,
        action: str,
        capabilities: dict[str, float],
        new_for_quota: list[RunSpec],
    ) -> None:
        if not planned:
            return
        secrets: dict[str, dict[str, Any] | None] = {}
        view = cluster_view(self.client)
        self.warnings += view.warnings
        if view.nodes is None:
            self.warnings.append(
                "the GPU fit check is skipped; the quota is still checked, and scheduling "
                "problems are reported while waiting"
            )
        for spec in planned:
            check_capability(spec, minimum, action, capabilities, self.warnings)
            check_references(self.client, spec, secrets)
            check_gpu_fit(view, spec, self.warnings)
        check_quota(self.client, self.namespace, new_for_quota, self.warnings)

    def apply(self, plan: list[tuple[RunSpec, dict[str, Any], RunResult]]) -> None:
        for spec, body, result in plan:
            if result.action == "unchanged":
                continue
            result.changed = True
            if self.check_mode:
                result.action = f"would-{result.action}"
                continue
            if result.action in ("replace", "rerun"):
                self._delete_workload(spec, spec.kind)
            self._create(spec, body)
            result.action = {"create": "created", "replace": "replaced", "rerun": "rerun"}[
                result.action
            ]
            if spec.kind == "Pod":
                self.warnings.append(
                    f"dev pod {spec.name} bills {spec.gpus} GPU(s) for as long as it exists, "
                    f"idle or not; it stops itself after {spec.active_deadline}s "
                    "(active_deadline). Delete it "
                    "with state: absent when done"
                )

    # -- stopping -----------------------------------------------------------------------

    def absent(self, spec: RunSpec) -> RunResult:
        result = RunResult(name=spec.name, kind=spec.kind, action="absent")
        existing = [
            kind
            for kind in ("Job", "Pod")
            if (kind == "Pod" or spec.mode != "devpod") and self._exists(kind, spec.name)
        ]
        service = self.client.get("Service", spec.name, self.namespace)
        record = self.client.get("ConfigMap", _record_name(spec.name), self.namespace)
        owned_service = (
            service is not None
            and ((service.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN) == spec.name
        )
        if not existing and not owned_service and record is None:
            return result
        result.changed = True
        result.action = "would-delete" if self.check_mode else "deleted"
        if self.check_mode:
            return result
        for kind in existing:
            self._delete_workload(spec, kind)
        if owned_service:
            self.client.delete("Service", spec.name, self.namespace)
        if record is not None:
            self.client.delete("ConfigMap", _record_name(spec.name), self.namespace)
        return result

    def _exists(self, kind: str, name: str) -> bool:
        obj = self.client.get(kind, name, self.namespace)
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return labels.get(LABEL_MANAGED) == MANAGED_BY

    # -- waiting ------------------------------------------------------------------------

    def _logs(self, pod: str) -> str:
        try:
            return pod_logs(self.client, self.namespace, pod, "train", tail_lines=LOG_LINES)
        except K8sError:
            return ""

    def fill(self, result: RunResult, pods: dict[str, dict[str, Any]]) -> None:
        result.pods = sorted(pods)
        result.nodes = sorted(
            {str(n) for p in pods.values() if (n := (p.get("spec") or {}).get("nodeName"))}
        )
        phases = [(p.get("status") or {}).get("phase") for p in pods.values()]
        if phases:
            for phase in ("Failed", "Pending", "Running", "Succeeded"):
                if phase in phases:
                    result.phase = phase
                    break
        starts = sorted(
            str((p.get("status") or {}).get("startTime"))
            for p in pods.values()
            if (p.get("status") or {}).get("startTime")
        )
        result.start_time = starts[0] if starts else None

    def wait(self, spec: RunSpec, result: RunResult, target: str, timeout: float) -> None:
        if target == "none":
            return
        if spec.kind == "Pod" and target == "complete":
            target = "running"
        deadline = time.monotonic() + timeout
        pods: dict[str, dict[str, Any]] = {}
        last: Diagnosis | None = None
        try:
            for event, pod in watch_events(
                self.client,
                "Pod",
                self.namespace,
                label_selector=f"{LABEL_RUN}={spec.name}",
                timeout=timeout,
            ):
                name = (pod.get("metadata") or {}).get("name", "")
                if event == "DELETED":
                    pods.pop(name, None)
                    if spec.kind == "Job":
                        job = self.client.get("Job", spec.name, self.namespace) or {}
                        failure = diagnose_job(job)
                        if failure:
                            self._fail(spec, result, pods, failure)
                    continue
                pods[name] = pod
                self.fill(result, pods)
                problem = diagnose_pod(pod)
                if problem is not None:
                    last = problem
                    if problem.fatal and (
                        spec.kind == "Pod" or spec.backoff_limit == 0 or problem.exit_code is None
                    ):
                        self._fail(spec, result, pods, problem, pod_name=name)
                if self._reached(spec, pods, target):
                    break
            if target == "complete":
                remaining = max(deadline - time.monotonic(), 1.0)
                finished = self._finished_job(spec, remaining)
                failure = diagnose_job(finished) if finished else None
                if failure:
                    self._fail(spec, result, pods, failure)
                result.phase = "Succeeded"
                self._write_record(spec, result.spec_hash, "Succeeded", "Complete")
        except WaitTimeout:
            reached = {"scheduled": "be scheduled", "running": "run", "complete": "complete"}[
                target
            ]
            why = f": {last.message}" if last else ""
            result.reason, result.message = (
                (last.reason if last else "Timeout"),
                (last.message if last else None),
            )
            raise RunFailed(
                f"run {spec.name} did not {reached} within {timeout:.0f}s{why}", result
            ) from None

    def _finished_job(self, spec: RunSpec, timeout: float) -> dict[str, Any] | None:
        """The Job once Complete or Failed; None if ttlSecondsAfterFinished removed it first."""
        if self.client.get("Job", spec.name, self.namespace) is None:
            return None
        for event, job in watch_events(
            self.client, "Job", self.namespace, name=spec.name, timeout=timeout
        ):
            if event == "DELETED":
                return None
            if job_state(job) in ("Complete", "Failed"):
                return job
        return None  # pragma: no cover - watch_events raises on timeout

    def _reached(self, spec: RunSpec, pods: dict[str, dict[str, Any]], target: str) -> bool:
        if len(pods) < spec.nodes:
            return False
        values = list(pods.values())
        if target == "scheduled":
            return all((p.get("spec") or {}).get("nodeName") for p in values)
        phases = [(p.get("status") or {}).get("phase") for p in values]
        if target == "running":
            return all(phase in ("Running", "Succeeded") for phase in phases)
        return all(phase == "Succeeded" for phase in phases)

    def _fail(
        self,
        spec: RunSpec,
        result: RunResult,
        pods: dict[str, dict[str, Any]],
        problem: Diagnosis,
        pod_name: str | None = None,
    ) -> None:
        self.fill(result, pods)
        message = problem.message
        if spec.kind == "Job":
            # Give the Job controller a moment to record its own verdict
            # (e.g. BackoffLimitExceeded).
            try:
                job = watch_until(
                    self.client,
                    "Job",
                    self.namespace,
                    lambda j: j if job_state(j) == "Failed" else None,
                    name=spec.name,
                    timeout=10,
                )
                verdict = diagnose_job(job)
                if verdict and verdict.reason != problem.reason:
                    message = f"{message}; {verdict.message}"
            except WaitTimeout:
                pass
        if pod_name and problem.exit_code is not None:
            result.log_tail = self._logs(pod_name) or None
            if result.log_tail:
                message = f"{message}\nlast log lines of {pod_name}:\n{result.log_tail}"
        result.phase, result.reason, result.message = "Failed", problem.reason, problem.message
        if not self.check_mode:
            self._write_record(spec, result.spec_hash, "Failed", problem.reason, problem.message)
        raise RunFailed(f"run {spec.name} failed: {message}", result)


def run_training(
    client: K8sClient,
    specs: list[RunSpec],
    *,
    state: str,
    on_change: str,
    rerun: bool,
    wait: str,
    wait_timeout: float,
    check_mode: bool,
    min_compute_capability: float,
    capability_action: str,
    capabilities: dict[str, float],
) -> tuple[list[RunResult], list[str]]:
    """Bring every run in ``specs`` to ``state``.

    One listing of Jobs and records serves all runs, so a sweep costs one task.
    """
    namespace = specs[0].namespace
    runner = TrainingRunner(client, namespace, check_mode)
    if not client.namespace_exists(namespace):
        raise PreflightError(f"namespace={namespace!r} does not exist on the cluster")
    if state == "absent":
        return [runner.absent(spec) for spec in specs], runner.warnings
    plan = runner.plan(specs, on_change, rerun)
    starting = [spec for spec, _, result in plan if result.action != "unchanged"]
    fresh = [spec for spec, _, result in plan if result.action == "create"]
    runner.preflight(starting, min_compute_capability, capability_action, capabilities, fresh)
    runner.apply(plan)
    results = [result for _, _, result in plan]
    if check_mode:
        return results, runner.warnings
    settled = [r for r in results if r.action == "unchanged"]
    if settled:
        by_run: dict[str, dict[str, dict[str, Any]]] = {}
        for pod in client.list(
            "Pod", namespace, label_selector=f"{LABEL_MANAGED}={MANAGED_BY},{LABEL_RUN}"
        ):
            meta = pod.get("metadata") or {}
            by_run.setdefault((meta.get("labels") or {}).get(LABEL_RUN, ""), {})[
                meta.get("name", "")
            ] = pod
        for result in settled:
            phase = result.phase
            runner.fill(result, by_run.get(result.name, {}))
            result.phase = phase or result.phase
    deadline = time.monotonic() + wait_timeout
    for spec, _, result in plan:
        if result.phase in ("Succeeded", "Failed") and result.action == "unchanged":
            continue
        runner.wait(spec, result, wait, max(deadline - time.monotonic(), 1.0))
    return results, runner.warnings


# -- the module's interface -----------------------------------------------------------------

RUN_OPTIONS: dict[str, dict[str, Any]] = {
    "name": {"type": "str"},
    "image": {"type": "str"},
    "command": {"type": "list", "elements": "str"},
    "args": {"type": "list", "elements": "str"},
    "gpus": {"type": "raw", "default": 1},
    "nodes": {"type": "raw", "default": 1},
    "gpu_type": {"type": "str"},
    "accelerator_label": {"type": "str", "default": "accelerator"},
    "cpu_per_gpu": {"type": "raw", "default": 4},
    "memory_per_gpu": {"type": "str", "default": "16Gi"},
    "shm_size": {"type": "str", "default": "8Gi"},
    "env": {"type": "dict", "default": {}},
    "secret_env": {"type": "dict", "default": {}},
    "wandb": {"type": "dict"},
    "git": {
        "type": "dict",
        "options": {
            "repo": {"type": "str", "required": True},
            "commit": {"type": "str", "required": True},
            "credentials_secret": {"type": "str"},
            "path": {"type": "str", "default": "/workspace"},
            "image": {"type": "str"},
            "depth": {"type": "int", "default": 1},
        },
    },
    "volumes": {"type": "list", "elements": "dict", "default": []},
    "image_pull_secrets": {"type": "list", "elements": "str", "default": []},
    "tolerations": {"type": "list", "elements": "dict"},
    "node_selector": {"type": "dict", "default": {}},
    "priority_class": {"type": "str"},
    "queue": {"type": "str"},
    "active_deadline": {"type": "raw"},
    "backoff_limit": {"type": "raw", "default": 0},
    "ttl_after_finished": {"type": "raw"},
    "labels": {"type": "dict", "default": {}},
    "annotations": {"type": "dict", "default": {}},
    "mode": {"type": "str", "default": "job", "choices": ["job", "devpod"]},
}

MODULE_OPTIONS: dict[str, dict[str, Any]] = {
    "namespace": {"type": "str", "required": True},
    "runs": {"type": "list", "elements": "dict"},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "on_change": {"type": "str", "default": "fail", "choices": ["fail", "replace"]},
    "rerun": {"type": "bool", "default": False},
    "wait": {"type": "str", "default": "running", "choices": list(WAIT_TARGETS)},
    "wait_timeout": {"type": "int", "default": 600},
    "min_compute_capability": {"type": "float", "default": 8.0},
    "capability_check": {"type": "str", "default": "fail", "choices": ["fail", "warn"]},
    "accelerator_capabilities": {"type": "dict", "default": {}},
}


def training_job_argument_spec() -> dict[str, dict[str, Any]]:
    return with_auth_options(RUN_OPTIONS, MODULE_OPTIONS)


def expand_runs(params: dict[str, Any]) -> list[dict[str, Any]]:
    """One options dict per run: the top-level options, overridden by each entry of ``runs``."""
    base = {k: params.get(k) for k in RUN_OPTIONS}
    base["namespace"] = params["namespace"]
    if not params.get("runs"):
        return [base]
    expanded = []
    for index, overrides in enumerate(params["runs"]):
        unknown = sorted(set(overrides) - set(RUN_OPTIONS))
        if unknown:
            raise PreflightError(
                f"runs[{index}] has unknown option(s) {', '.join(unknown)}; a run may set: "
                f"{', '.join(sorted(RUN_OPTIONS))}"
            )
        merged = dict(base)
        merged.update(overrides)
        expanded.append(merged)
    names = [str(r.get("name")) for r in expanded]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PreflightError(
            f"runs: each run needs its own name; repeated: {', '.join(duplicates)}"
        )
    return expanded
