# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The kaniko_build runner: pure builders for the context ConfigMap and the Kaniko Job, and the
skip / create-or-attach / watch / verify logic around them.

The Job's success proves nothing by itself: the image counts as built only when the pod's
termination message holds the digest Kaniko wrote (``--digest-file=/dev/termination-log``) or the
registry has the manifest.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._build_context import (
    DIGEST_RE,
    BuildContext,
    ContextError,
    Repository,
    check_tag,
    credential_for,
    parse_repository,
    scan,
    tar_gz,
)
from ansible_collections.urm.training.plugins.module_utils._dockerconfig import (
    SECRET_TYPE,
    DockerConfigError,
    secret_config,
)
from ansible_collections.urm.training.plugins.module_utils._errors import ModuleFailure
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    AUTH_ARG_SPEC,
    K8sApiError,
    K8sClient,
    K8sError,
    dns1123_label_error,
    dns1123_subdomain_error,
    with_auth_options,
)
from ansible_collections.urm.training.plugins.module_utils._options import string_map
from ansible_collections.urm.training.plugins.module_utils._registry import (
    MASK,
    REGISTRY_TLS_ARG_SPEC,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
)
from ansible_collections.urm.training.plugins.module_utils._wait import (
    WaitTimeout,
    diagnose_job,
    diagnose_pod,
    job_state,
    pod_logs,
    watch_until,
)

DEFAULT_KANIKO_IMAGE = "ghcr.io/osscontainertools/kaniko:v1.28.0"
CONTAINER = "kaniko"
CONTEXT_KEY = "context.tar.gz"
CA_KEY = "registry-ca.crt"
CONTEXT_DIR = "/kaniko/context"  # under /kaniko, which Kaniko leaves out of every snapshot
CERTS_DIR = "/kaniko/certs"
DOCKER_CONFIG_DIR = "/kaniko/.docker/"
TERMINATION_LOG = "/dev/termination-log"
# The API server refuses a ConfigMap whose data exceeds 1 MiB; keep room for metadata and the CA.
CONFIGMAP_LIMIT = 1024 * 1024
CONFIGMAP_HEADROOM = 64 * 1024
LOG_LINES = 50
CHECK_INTERVAL = 10.0  # seconds between re-checks of a pod that does not change
MANAGED_BY = {"app.kubernetes.io/managed-by": "urm.training"}
HASH_LABEL = "urm.training/context-hash"
DIGEST_ANNOTATION = "urm.training/context-digest"
DESTINATIONS_ANNOTATION = "urm.training/destinations"
DEFAULT_RESOURCES = {"cpu": "4", "memory": "32Gi", "ephemeral_storage": "100Gi"}

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "repository": {"type": "str", "required": True},
    "tag": {"type": "str"},
    "extra_tags": {"type": "list", "elements": "str", "default": []},
    "context_dir": {"type": "path", "required": True},
    "dockerfile": {"type": "str", "default": "Dockerfile"},
    "build_args": {"type": "dict", "default": {}},
    "target": {"type": "str"},
    "namespace": {"type": "str", "required": True},
    "registry_secret": {"type": "str", "default": "urm-registry-cred"},
    "cache": {"type": "bool", "default": True},
    "cache_repo": {"type": "str"},
    "kaniko_image": {"type": "str", "default": DEFAULT_KANIKO_IMAGE},
    "resources": {
        "type": "dict",
        "default": {},
        "options": {
            "cpu": {"type": "str", "default": DEFAULT_RESOURCES["cpu"]},
            "memory": {"type": "str", "default": DEFAULT_RESOURCES["memory"]},
            "ephemeral_storage": {"type": "str", "default": DEFAULT_RESOURCES["ephemeral_storage"]},
        },
    },
    "node_selector": {"type": "dict", "default": {}},
    "tolerations": {"type": "list", "elements": "dict", "default": []},
    "pod_labels": {"type": "dict", "default": {}},
    "pod_annotations": {"type": "dict", "default": {}},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "push_retry": {"type": "int", "default": 2},
    "timeout": {"type": "int", "default": 3600},
    "unschedulable_timeout": {"type": "int", "default": 600},
    "wait": {"type": "bool", "default": True},
    "force": {"type": "bool", "default": False},
    "ttl": {"type": "int", "default": 3600},
    **REGISTRY_TLS_ARG_SPEC,
}


def argument_spec() -> dict[str, dict[str, Any]]:
    return with_auth_options(ARGUMENT_SPEC)


class BuildError(ModuleFailure):
    """A kaniko_build failure."""


@dataclass
class KanikoRequest:
    repository: Repository
    tags: list[str]
    ctx: BuildContext
    namespace: str
    registry_secret: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    cache: bool = True
    cache_repo: str | None = None
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    resources: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    push_retry: int = 2
    ttl: int = 3600
    ca_pem: str | None = None
    validate_certs: bool = True

    @property
    def name(self) -> str:
        return f"kaniko-{self.ctx.short}"

    @property
    def destinations(self) -> list[str]:
        return [f"{self.repository.name}:{t}" for t in self.tags]


def parse_request(params: Mapping[str, Any]) -> KanikoRequest:
    """Check every option that can be checked without a server, then hash the context."""
    namespace = params.get("namespace") or ""
    secret = params.get("registry_secret") or ""
    for err in (
        dns1123_label_error("namespace", namespace),
        dns1123_subdomain_error("registry_secret", secret),
    ):
        if err:
            raise ContextError(err)
    repository = parse_repository(params["repository"])
    cache_repo = params.get("cache_repo")
    if cache_repo:
        parse_repository(cache_repo, "cache_repo")
    build_args = string_map("build_args", params.get("build_args"), ContextError)
    target = params.get("target") or None
    ctx = scan(params["context_dir"], params.get("dockerfile") or "Dockerfile", build_args, target)
    tags = [check_tag(params["tag"])] if params.get("tag") else [ctx.tag]
    for extra in params.get("extra_tags") or []:
        if check_tag(extra, "extra_tags") not in tags:
            tags.append(extra)
    ca_pem = None
    ca_path = params.get("registry_ca_cert")
    if ca_path:
        try:
            with open(ca_path, encoding="utf-8") as handle:
                ca_pem = handle.read()
        except OSError as exc:
            raise ContextError(f"registry_ca_cert={ca_path!r} cannot be read: {exc}") from None
    resources = {k: str(v) for k, v in (params.get("resources") or {}).items() if v}
    for key, default in DEFAULT_RESOURCES.items():
        resources.setdefault(key, default)
    for option in ("timeout", "ttl", "push_retry", "unschedulable_timeout"):
        if int(params.get(option) or 0) < 0:
            raise ContextError(f"{option}={params.get(option)} must not be negative")
    return KanikoRequest(
        repository=repository,
        tags=tags,
        ctx=ctx,
        namespace=namespace,
        registry_secret=secret,
        build_args=build_args,
        target=target,
        cache=bool(params.get("cache", True)),
        cache_repo=cache_repo or None,
        kaniko_image=params.get("kaniko_image") or DEFAULT_KANIKO_IMAGE,
        resources=resources,
        node_selector=string_map("node_selector", params.get("node_selector"), ContextError),
        tolerations=[dict(t) for t in params.get("tolerations") or []],
        pod_labels=string_map("pod_labels", params.get("pod_labels"), ContextError),
        pod_annotations=string_map("pod_annotations", params.get("pod_annotations"), ContextError),
        extra_args=[str(a) for a in params.get("extra_args") or []],
        push_retry=int(params.get("push_retry") or 0),
        ttl=3600 if params.get("ttl") is None else int(params["ttl"]),
        ca_pem=ca_pem,
        validate_certs=bool(params.get("registry_validate_certs", True)),
    )


# -- pure object builders ---------------------------------------------------------------------


def check_size(archive: bytes, ca_pem: str | None) -> int:
    """Raise unless the archive (plus the CA) fits in one ConfigMap; return the data size."""
    size = len(archive) + len((ca_pem or "").encode())
    limit = CONFIGMAP_LIMIT - CONFIGMAP_HEADROOM
    if size > limit:
        raise ContextError(
            f"the build context is {size} bytes as tar.gz, more than the {limit} bytes that fit "
            f"in a ConfigMap (the API server's limit is {CONFIGMAP_LIMIT} bytes per object, "
            f"minus {CONFIGMAP_HEADROOM} bytes of headroom): exclude large files with "
            ".dockerignore (data, checkpoints, .git), or build with builder docker"
        )
    return size


def labels(req: KanikoRequest) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "app.kubernetes.io/name": "kaniko",
        "app.kubernetes.io/component": "image-build",
        HASH_LABEL: req.ctx.digest[:16],
    }


def job_annotations(req: KanikoRequest) -> dict[str, str]:
    return {
        DIGEST_ANNOTATION: f"sha256:{req.ctx.digest}",
        DESTINATIONS_ANNOTATION: ",".join(req.destinations),
    }


def build_configmap(req: KanikoRequest, archive: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": req.name,
            "namespace": req.namespace,
            "labels": labels(req),
            "annotations": job_annotations(req),
        },
        "binaryData": {CONTEXT_KEY: base64.b64encode(archive).decode("ascii")},
    }
    if req.ca_pem:
        body["data"] = {CA_KEY: req.ca_pem}
    return body


def kaniko_args(req: KanikoRequest) -> list[str]:
    args = [
        f"--dockerfile={req.ctx.dockerfile}",
        f"--context=tar://{CONTEXT_DIR}/{CONTEXT_KEY}",
        *(f"--destination={d}" for d in req.destinations),
        f"--digest-file={TERMINATION_LOG}",
        f"--push-retry={req.push_retry}",
    ]
    if req.cache:
        args += ["--cache=true", f"--cache-repo={req.cache_repo or req.repository.name + '/cache'}"]
    else:
        args.append("--cache=false")
    args += [f"--build-arg={k}={req.build_args[k]}" for k in sorted(req.build_args)]
    if req.target:
        args.append(f"--target={req.target}")
    if not req.validate_certs:
        args += ["--skip-tls-verify", "--skip-tls-verify-pull"]
    elif req.ca_pem:
        registries = {req.repository.registry}
        if req.cache_repo:
            registries.add(parse_repository(req.cache_repo, "cache_repo").registry)
        args += [f"--registry-certificate={r}={CERTS_DIR}/{CA_KEY}" for r in sorted(registries)]
    return args + list(req.extra_args)


def build_job(req: KanikoRequest) -> dict[str, Any]:
    res = req.resources
    quantities = {
        "cpu": res["cpu"],
        "memory": res["memory"],
        "ephemeral-storage": res["ephemeral_storage"],
    }
    mounts = [
        {"name": "context", "mountPath": CONTEXT_DIR, "readOnly": True},
        {"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "context",
            "configMap": {"name": req.name, "items": [{"key": CONTEXT_KEY, "path": CONTEXT_KEY}]},
        },
        {
            "name": "docker-config",
            "secret": {
                "secretName": req.registry_secret,
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        },
    ]
    if req.ca_pem and req.validate_certs:
        mounts.append({"name": "registry-ca", "mountPath": CERTS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "registry-ca",
                "configMap": {"name": req.name, "items": [{"key": CA_KEY, "path": CA_KEY}]},
            }
        )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": req.registry_secret}],
        "containers": [
            {
                "name": CONTAINER,
                "image": req.kaniko_image,
                "args": kaniko_args(req),
                "env": [{"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR}],
                "resources": {"requests": dict(quantities), "limits": dict(quantities)},
                "volumeMounts": mounts,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
            }
        ],
        "volumes": volumes,
    }
    if req.node_selector:
        pod_spec["nodeSelector"] = dict(req.node_selector)
    if req.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in req.tolerations]
    return {
        "metadata": {
            "name": req.name,
            "namespace": req.namespace,
            "labels": labels(req),
            "annotations": job_annotations(req),
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": req.ttl,
            "template": {
                "metadata": {
                    "labels": {**req.pod_labels, **labels(req)},
                    "annotations": dict(req.pod_annotations),
                },
                "spec": pod_spec,
            },
        },
    }


def owner_patch(job: Mapping[str, Any]) -> dict[str, Any]:
    """Make the ConfigMap a dependent of the Job, so the Job's TTL removes both."""
    meta = job.get("metadata") or {}
    return {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                    "blockOwnerDeletion": False,
                }
            ]
        }
    }


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    changed: bool
    result: dict[str, Any]


def _registry_credential(k8s: K8sClient, req: KanikoRequest) -> tuple[str, str]:
    what = f"registry_secret {req.namespace}/{req.registry_secret}"
    secret = k8s.get("Secret", req.registry_secret, req.namespace)
    if secret is None:
        raise ContextError(
            f"registry_secret={req.registry_secret!r} does not exist in namespace "
            f"{req.namespace}: create it first (urm.training.registry_secret or the registry_auth "
            "role), or fix registry_secret"
        )
    if secret.get("type") != SECRET_TYPE:
        raise ContextError(
            f"{what} has type {secret.get('type')!r}, not {SECRET_TYPE}: Kaniko needs a "
            "dockerconfigjson Secret"
        )
    try:
        config = secret_config(secret)
    except DockerConfigError as exc:
        raise ContextError(f"{what}: {exc}") from None
    cred = credential_for(config, req.repository.registry)
    if cred is None:
        raise ContextError(
            f"{what} has no credential for the registry {req.repository.registry} of "
            f"repository {req.repository.name}: store one with urm.training.registry_secret"
        )
    return cred


def _registry(
    req: KanikoRequest, cred: tuple[str, str], params: Mapping[str, Any]
) -> RegistryClient:
    return RegistryClient(
        req.repository.registry,
        cred[0],
        cred[1],
        ca_cert=params.get("registry_ca_cert"),
        validate_certs=req.validate_certs,
        timeout=float(params.get("registry_timeout") or 15.0),
    )


def _result(req: KanikoRequest, **extra: Any) -> dict[str, Any]:
    tag = req.tags[0]
    base = {
        "image": f"{req.repository.name}:{tag}",
        "repository": req.repository.name,
        "tag": tag,
        "tags": list(req.tags),
        "context_hash": f"sha256:{req.ctx.digest}",
        "context_files": req.ctx.file_count,
        "job": req.name,
        "namespace": req.namespace,
        "digest": None,
        "image_ref": None,
        "duration": None,
    }
    base.update(extra)
    if base.get("digest"):
        base["image_ref"] = f"{req.repository.name}@{base['digest']}"
    return base


def _destinations_of(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(DESTINATIONS_ANNOTATION))


def _pod_terminal(pod: dict[str, Any]) -> dict[str, Any] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return pod
    diagnosis = diagnose_pod(pod)
    return pod if diagnosis is not None and diagnosis.fatal else None


def termination_message(pod: Mapping[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            term = (status.get("state") or {}).get("terminated") or {}
            return str(term.get("message") or "")
    return ""


def _log_tail(k8s: K8sClient, namespace: str, pod: str) -> str:
    try:
        text = pod_logs(k8s, namespace, pod, CONTAINER, LOG_LINES)
    except K8sError as exc:
        return f"(the build log is not available: {exc})"
    return text.rstrip() or "(the build log is empty)"


def _job_events(k8s: K8sClient, req: KanikoRequest) -> str:
    try:
        events = k8s.list("Event", req.namespace, field_selector=f"involvedObject.name={req.name}")
    except K8sError:
        return ""
    texts = [f"{e.get('reason')}: {e.get('message')}" for e in events if e.get("type") == "Warning"]
    return "; ".join(texts[-3:])


def _give_up(k8s: K8sClient, req: KanikoRequest, why: str, started: float) -> BuildError:
    """A pod that can never start: delete the Job (its ConfigMap goes with it), so that a rerun
    with better settings is not attached to it."""
    k8s.delete("Job", req.name, req.namespace, propagation="Background")
    return BuildError(
        f"{why}. Lower resources (cpu, memory, ephemeral_storage) or fix node_selector and "
        f"tolerations; the Job {req.namespace}/{req.name} was deleted",
        _result(req, duration=round(time.monotonic() - started, 1)),
    )


def _failed_create(k8s: K8sClient, req: KanikoRequest) -> str | None:
    """The Job controller's FailedCreate warning (e.g. a quota), when the Job has no pod."""
    if k8s.list("Pod", req.namespace, label_selector=f"job-name={req.name}"):
        return None
    events = k8s.list("Event", req.namespace, field_selector=f"involvedObject.name={req.name}")
    failed = [e for e in events if e.get("type") == "Warning" and e.get("reason") == "FailedCreate"]
    return str(failed[-1].get("message") or "") if failed else None


def _watch_pod(
    k8s: K8sClient, req: KanikoRequest, timeout: float, stuck_after: float, started: float
) -> dict[str, Any]:
    """The build pod once it ended or failed for good. The watch is renewed every
    CHECK_INTERVAL seconds, so a pod that stays unschedulable, or a Job that cannot create its
    pod, is given up on after ``stuck_after`` seconds instead of at the timeout."""
    selector = f"job-name={req.name}"
    deadline = time.monotonic() + timeout
    stuck_since: dict[str, float] = {}

    def predicate(pod: dict[str, Any]) -> dict[str, Any] | None:
        if _pod_terminal(pod) is not None:
            return pod
        diagnosis = diagnose_pod(pod)
        if diagnosis is not None and diagnosis.reason == "Unschedulable":
            first = stuck_since.setdefault(
                str(pod.get("metadata", {}).get("name")), time.monotonic()
            )
            if time.monotonic() - first >= stuck_after:
                raise _give_up(k8s, req, f"the Kaniko pod {diagnosis.message}", started)
        return None

    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return watch_until(
                k8s,
                "Pod",
                req.namespace,
                predicate,
                label_selector=selector,
                timeout=min(remaining, CHECK_INTERVAL),
            )
        except WaitTimeout:
            pass
        message = _failed_create(k8s, req)
        if message is not None:
            first = stuck_since.setdefault("", time.monotonic())
            if time.monotonic() - first >= stuck_after:
                raise _give_up(
                    k8s, req, f"the Kaniko Job cannot create its pod: {message}", started
                )
    job = k8s.get("Job", req.name, req.namespace) or {}
    pods = k8s.list("Pod", req.namespace, label_selector=selector)
    known = next((d for d in (diagnose_pod(p) for p in pods) if d), None) or diagnose_job(job)
    detail = known.message if known else _job_events(k8s, req)
    raise BuildError(
        f"timed out after {timeout:.0f}s waiting for the Kaniko Job {req.namespace}/{req.name}"
        f" ({len(pods)} pod(s)){': ' + detail if detail else ''}. The Job keeps running: a "
        "rerun attaches to it",
        _result(req, duration=round(time.monotonic() - started, 1)),
    )


def wait_for_build(
    k8s: K8sClient,
    registry: RegistryClient,
    req: KanikoRequest,
    timeout: float,
    started: float,
    stuck_after: float = 600.0,
) -> dict[str, Any]:
    """Watch the Job's pod to its end; return the result with the verified digest, or raise."""
    pod = _watch_pod(k8s, req, timeout, stuck_after, started)
    pod_name = (pod.get("metadata") or {}).get("name", "?")
    duration = round(time.monotonic() - started, 1)
    if (pod.get("status") or {}).get("phase") != "Succeeded":
        diagnosis = diagnose_pod(pod)
        reason = diagnosis.message if diagnosis else "the build pod failed"
        raise BuildError(
            f"the Kaniko build failed in pod {req.namespace}/{pod_name}: {reason}\n"
            f"last {LOG_LINES} lines of the build log:\n{_log_tail(k8s, req.namespace, pod_name)}",
            _result(req, duration=duration, pod=pod_name),
        )
    # The Job controller marks the Job Complete a moment after its pod; report what it says.
    try:
        state = watch_until(k8s, "Job", req.namespace, job_state, name=req.name, timeout=10)
    except WaitTimeout:
        state = None
    message = termination_message(pod).strip()
    match = DIGEST_RE.fullmatch(message) if message else None
    if match:
        return _result(
            req,
            digest=match.group(0),
            duration=duration,
            pod=pod_name,
            job_state=state,
            digest_source="termination-message",
        )
    info = registry.manifest_head(req.repository.path, req.tags[0])
    if info.exists and info.digest:
        return _result(
            req,
            digest=info.digest,
            duration=duration,
            pod=pod_name,
            job_state=state,
            digest_source="registry",
        )
    said = f"{message[:200]!r}" if message else "empty"
    raise BuildError(
        f"the Kaniko Job completed but pushed no image: pod {req.namespace}/{pod_name} ended "
        f"Succeeded (Job {state or 'state unknown'}), its termination message is {said} instead "
        f"of the digest Kaniko writes with --digest-file={TERMINATION_LOG}, and the registry has "
        f"no manifest for {req.destinations[0]}. The container did not run Kaniko to the end "
        "(on a simulated node nothing runs at all); check the kaniko_image and the node.\n"
        f"last {LOG_LINES} lines of the build log:\n{_log_tail(k8s, req.namespace, pod_name)}",
        _result(req, duration=duration, pod=pod_name, job_state=state),
    )


def run(
    params: Mapping[str, Any],
    check_mode: bool,
    k8s_factory: Callable[[Mapping[str, Any]], K8sClient] | None = None,
) -> Outcome:
    """Skip, build, or attach. Raises BuildError (message scrubbed of the registry password)."""
    secrets: list[str] = []
    try:
        return _run(params, check_mode, k8s_factory, secrets)
    except BuildError as exc:
        raise BuildError(scrub(exc.message, secrets), exc.result) from None
    except (ContextError, K8sError, RegistryError) as exc:
        raise BuildError(scrub(str(exc), secrets)) from None


def _run(
    params: Mapping[str, Any],
    check_mode: bool,
    k8s_factory: Callable[[Mapping[str, Any]], K8sClient] | None,
    secrets: list[str],
) -> Outcome:
    started = time.monotonic()
    req = parse_request(params)
    archive = tar_gz(req.ctx)
    size = check_size(archive, req.ca_pem)
    auth = {k: params.get(k) for k in AUTH_ARG_SPEC}
    k8s = (k8s_factory or K8sClient.from_params)(auth)
    if not k8s.namespace_exists(req.namespace):
        raise ContextError(
            f"namespace={req.namespace!r} does not exist on the server {k8s.host}: fix namespace"
        )
    cred = _registry_credential(k8s, req)
    secrets += [cred[1], base64.b64encode(f"{cred[0]}:{cred[1]}".encode()).decode()]
    registry = _registry(req, cred, params)
    try:
        registry.check_credentials()
    except RegistryAuthError as exc:
        raise BuildError(
            f"authentication failed: the registry {req.repository.registry} rejected the "
            f"credential for user {cred[0]!r} in registry_secret {req.namespace}/"
            f"{req.registry_secret} ({exc}); refresh it with urm.training.registry_secret"
        ) from None
    verb = "would be" if check_mode else "was"

    if not params.get("force"):
        info = registry.manifest_head(req.repository.path, req.tags[0])
        if info.exists and info.digest:
            return Outcome(
                False,
                _result(
                    req,
                    digest=info.digest,
                    action="would_skip" if check_mode else "skipped",
                    context_size=size,
                    msg=f"{req.repository.name}:{req.tags[0]} already exists ({info.digest}): "
                    "nothing to build",
                ),
            )

    live = k8s.get("Job", req.name, req.namespace)
    timeout = float(params.get("timeout") or 3600)
    if live is not None and job_state(live) is None:
        return _attach(k8s, registry, req, live, params, check_mode, size, started)

    if check_mode:
        again = " (replacing the finished Job)" if live is not None else ""
        return Outcome(
            True,
            _result(
                req,
                action="would_build",
                context_size=size,
                msg=f"{req.destinations[0]} {verb} built by Job {req.namespace}/{req.name}{again}",
            ),
        )
    if live is not None:
        # A finished Job of this hash that left no image behind: start afresh.
        k8s.delete("Job", req.name, req.namespace, propagation="Background")
    job = _create(k8s, req, archive)
    if job is None:  # a concurrent run created the Job first
        live = k8s.get("Job", req.name, req.namespace) or {}
        return _attach(k8s, registry, req, live, params, check_mode, size, started)
    if not params.get("wait", True):
        return Outcome(
            True,
            _result(
                req,
                action="started",
                context_size=size,
                msg=f"Job {req.namespace}/{req.name} started building {req.destinations[0]}",
            ),
        )
    try:
        result = wait_for_build(k8s, registry, req, timeout, started, _stuck_after(params))
    except BuildError as exc:
        exc.result["changed"] = True  # the ConfigMap and the Job were created
        raise
    result.update(
        action="built",
        context_size=size,
        msg=f"built {result['image_ref']} with Job {req.namespace}/{req.name}",
    )
    return Outcome(True, result)


def _stuck_after(params: Mapping[str, Any]) -> float:
    value = params.get("unschedulable_timeout")
    return 600.0 if value is None else float(value)


def _create(k8s: K8sClient, req: KanikoRequest, archive: bytes) -> dict[str, Any] | None:
    """Create the ConfigMap, then the Job; None when a concurrent run's Job exists already.

    The ConfigMap is complete before the Job exists, so the pod never sees a partial context.
    """
    body = build_configmap(req, archive)
    live_cm = k8s.get("ConfigMap", req.name, req.namespace)
    if live_cm is not None and (live_cm.get("metadata") or {}).get("ownerReferences"):
        # Left by an earlier Job of this hash (the garbage collector may not have run yet).
        k8s.delete("ConfigMap", req.name, req.namespace)
        live_cm = None
    if live_cm is None:
        try:
            k8s.create("ConfigMap", body, req.namespace)
        except K8sApiError as exc:
            if exc.status != 409:
                raise
            live_cm = {}
    if live_cm is not None:
        # Another run of the same hash wrote it a moment ago; make sure it holds our bytes.
        content = {"binaryData": body["binaryData"], "data": body.get("data")}
        k8s.patch("ConfigMap", req.name, content, req.namespace)
    try:
        job = k8s.create("Job", build_job(req), req.namespace)
    except K8sApiError as exc:
        if exc.status == 409:
            return None
        raise
    k8s.patch("ConfigMap", req.name, owner_patch(job), req.namespace)
    return job


def _attach(
    k8s: K8sClient,
    registry: RegistryClient,
    req: KanikoRequest,
    live: Mapping[str, Any],
    params: Mapping[str, Any],
    check_mode: bool,
    size: int,
    started: float,
) -> Outcome:
    """Follow the Job that is already building this hash, instead of starting a second one."""
    if _destinations_of(live) != ",".join(req.destinations):
        raise BuildError(
            f"Job {req.namespace}/{req.name} is already building the same context for "
            f"{_destinations_of(live)}, not {','.join(req.destinations)}: wait for it to "
            "finish, or delete it"
        )
    if check_mode or not params.get("wait", True):
        return Outcome(
            False,
            _result(
                req,
                action="would_attach" if check_mode else "running",
                context_size=size,
                msg=f"Job {req.namespace}/{req.name} is already building {req.destinations[0]}",
            ),
        )
    timeout = float(params.get("timeout") or 3600)
    result = wait_for_build(k8s, registry, req, timeout, started, _stuck_after(params))
    result.update(
        action="attached",
        context_size=size,
        msg=f"attached to Job {req.namespace}/{req.name}: built {result['image_ref']}",
    )
    return Outcome(True, result)


def scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, MASK)
    return message


__all__ = [
    "BuildError",
    "ContextError",
    "K8sError",
    "Outcome",
    "RegistryError",
    "argument_spec",
    "build_configmap",
    "build_job",
    "parse_request",
    "run",
]
