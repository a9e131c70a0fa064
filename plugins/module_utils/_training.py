# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""What a training run is: its validated options, and the pure builders of its objects
(the Job or dev Pod, the headless Service for multi-node runs, the PVCs).

Everything here is a pure function of the options, so it is tested without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    dns1123_subdomain_error,
    is_dns1123_label,
)
from ansible_collections.urm.training.plugins.module_utils._options import string_map
from ansible_collections.urm.training.plugins.module_utils._quantity import (
    QuantityError,
    format_bytes,
    format_number,
    parse_quantity,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
MANAGED_BY = "urm.training"
LABEL_RUN = "training.urm.io/run"
LABEL_MODE = "training.urm.io/mode"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
ANNOTATION_HASH = "training.urm.io/spec-hash"
ANNOTATION_GPUS = "training.urm.io/gpus"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
LABEL_GIT_COMMIT = "training.urm.io/git-commit"
LABEL_GIT_DIRTY = "training.urm.io/git-dirty"
ANNOTATION_GIT_REPO = "training.urm.io/git-repo"
MASTER_PORT = 29500
DEVPOD_DEFAULT_DEADLINE = 8 * 3600
SHM_VOLUME = "dshm"
CODE_VOLUME = "code"
GIT_CONTAINER = "fetch-code"
GIT_DEFAULT_PATH = "/workspace"
GIT_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
GIT_HTTPS_KEYS = ("username", "password")
GIT_SSH_KEYS = ("ssh-privatekey", "known_hosts")
GIT_SSH_VOLUME = "git-ssh"
GIT_SSH_DIR = "/etc/urm-git-ssh"
# Only the key in the Secret, only hosts in its known_hosts, never a prompt.
GIT_SSH_COMMAND = (
    f"ssh -i {GIT_SSH_DIR}/ssh-privatekey -o IdentitiesOnly=yes -o IdentityAgent=none "
    f"-o UserKnownHostsFile={GIT_SSH_DIR}/known_hosts -o StrictHostKeyChecking=yes "
    "-o BatchMode=yes"
)

# The init container's script. Over https, the token reaches git through a credential helper that
# reads the environment (filled from the Secret by reference), so it is never in an argument, the
# remote URL, .git/config or a written file. Over ssh, the key is the Secret mounted read-only
# (0400) and only hosts in its known_hosts are trusted. A failure ends with one plain sentence in
# the termination message, which the diagnosis quotes.
GIT_FETCH_SCRIPT = r"""set -eu
fail() {
  printf 'could not fetch commit %s from %s: %s\n' "$GIT_COMMIT" "$GIT_REPO" "$1" \
    | tee /dev/termination-log >&2
  exit 1
}
command -v git >/dev/null 2>&1 || fail "the image has no git; set git.image to one that has"
if [ -n "${GIT_SSH_COMMAND-}" ]; then
  command -v ssh >/dev/null 2>&1 \
    || fail "the image has no ssh client; set git.image to one that has, or use https"
fi
if [ -n "${GIT_USERNAME-}" ]; then
  helper='!f() { test "$1" = get || exit 0;'
  helper="$helper"' printf "username=%s\npassword=%s\n" "$GIT_USERNAME" "$GIT_PASSWORD"; }; f'
else
  helper=''
fi
g() { git -c credential.helper= -c credential.helper="$helper" -c protocol.version=2 "$@"; }
cd "$CODE_DIR"
git init -q . 2>/tmp/git-err || fail "$(tail -n 2 /tmp/git-err)"
git remote add origin "$GIT_REPO"
if ! g fetch -q --depth "$GIT_DEPTH" origin "$GIT_COMMIT" 2>/tmp/git-err; then
  case "$(cat /tmp/git-err)" in
    *"could not read Username"*)
      fail "the server asks for credentials; name a Secret with username and password \
(a token) in git.credentials_secret" ;;
    *"Host key verification failed"*)
      fail "the server's host key is not in known_hosts of the Secret (add its ssh-keyscan line)" ;;
    *"Permission denied"*)
      fail "the server refused the ssh key in the Secret: \
$(grep -m1 'Permission denied' /tmp/git-err)" ;;
    *"Authentication failed"*|*"returned error: 401"*|*"returned error: 403"*)
      fail "the server refused the credentials in the Secret: $(tail -n 1 /tmp/git-err)" ;;
  esac
  # Some servers refuse to send a commit by its id: take every branch and tag instead.
  g fetch -q origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' \
    2>/tmp/git-err || fail "$(tail -n 2 /tmp/git-err | tr '\n' ' ')"
fi
git -c advice.detachedHead=false checkout -q --detach "$GIT_COMMIT" 2>/tmp/git-err \
  || fail "the repository has no such commit"
test "$(git rev-parse HEAD)" = "$GIT_COMMIT" || fail "HEAD is not the requested commit"
rm -f /tmp/git-err
echo "fetched $GIT_COMMIT from $GIT_REPO into $CODE_DIR"
"""

# Compute capability per accelerator label value. flash-attn 2 and adam-atan2 need >= 8.0.
KNOWN_CAPABILITIES: dict[str, float] = {
    "nvidia-h100": 9.0,
    "nvidia-h200": 9.0,
    "nvidia-a100": 8.0,
    "nvidia-a40": 8.6,
    "nvidia-a10": 8.6,
    "nvidia-l40s": 8.9,
    "nvidia-l4": 8.9,
    "nvidia-rtx-a6000": 8.6,
    "nvidia-gtx-2080ti": 7.5,
    "nvidia-rtx-2080ti": 7.5,
    "nvidia-v100": 7.0,
    "nvidia-t4": 7.5,
}


class SpecError(ValueError):
    """Invalid options, found before anything is sent to the cluster."""


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    mount_path: str
    claim: str
    create: bool
    storage_class: str | None = None
    size: str | None = None
    access_mode: str = "ReadWriteMany"
    read_only: bool = False


@dataclass(frozen=True)
class SecretRef:
    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class GitSource:
    """Code fetched at one commit by an init container into an emptyDir at ``path``."""

    repo: str
    commit: str
    path: str
    image: str | None
    credentials_secret: str | None
    depth: int
    transport: str = "https"

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The keys the credential Secret must have for this transport."""
        return GIT_SSH_KEYS if self.transport == "ssh" else GIT_HTTPS_KEYS


@dataclass(frozen=True)
class RunSpec:
    name: str
    namespace: str
    image: str
    command: list[str]
    args: list[str]
    gpus: int
    nodes: int
    gpu_type: str | None
    accelerator_label: str
    cpu_per_gpu: Decimal
    memory_per_gpu: Decimal
    shm_size: Decimal
    env: dict[str, str]
    secret_env: list[SecretRef]
    volumes: list[VolumeSpec]
    image_pull_secrets: list[str]
    tolerations: list[dict[str, Any]]
    node_selector: dict[str, str]
    priority_class: str | None
    queue: str | None
    active_deadline: int | None
    backoff_limit: int
    ttl_after_finished: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    mode: str
    wandb: dict[str, Any] = field(default_factory=dict)
    git: GitSource | None = None

    @property
    def memory_limit(self) -> Decimal:
        return self.memory_per_gpu * self.gpus

    @property
    def cpu_request(self) -> Decimal:
        return self.cpu_per_gpu * self.gpus

    @property
    def selector(self) -> dict[str, str]:
        selector = dict(self.node_selector)
        if self.gpu_type:
            selector[self.accelerator_label] = self.gpu_type
        return selector

    @property
    def kind(self) -> str:
        return "Pod" if self.mode == "devpod" else "Job"


# -- validation -----------------------------------------------------------------------------


def _int(value: Any, field_name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise SpecError(f"{field_name}={value!r} must be a whole number >= {minimum}")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise SpecError(f"{field_name}={value!r} must be a whole number >= {minimum}") from None
    if number < minimum:
        raise SpecError(f"{field_name}={number} must be >= {minimum}")
    return number


def _optional_int(value: Any, field_name: str) -> int | None:
    return None if value in (None, "") else _int(value, field_name, 0)


def _quantity(value: Any, field_name: str) -> Decimal:
    try:
        quantity = parse_quantity(value, field_name)
    except QuantityError as exc:
        raise SpecError(str(exc)) from None
    if quantity <= 0:
        raise SpecError(f"{field_name}={value!r} must be positive")
    return quantity


def _secret_env(value: Any) -> list[SecretRef]:
    refs = []
    for env_name, ref in (value or {}).items():
        if not isinstance(ref, Mapping) or not ref.get("secret") or not ref.get("key"):
            raise SpecError(
                f"secret_env.{env_name} must name both the Secret and the key in it, for example "
                f"{env_name}: {{secret: wandb, key: api-key}}"
            )
        refs.append(SecretRef(str(env_name), str(ref["secret"]), str(ref["key"])))
    return refs


def _volumes(value: Any, run: str) -> list[VolumeSpec]:
    volumes = []
    for index, entry in enumerate(value or []):
        where = f"volumes[{index}]"
        if not isinstance(entry, Mapping) or not entry.get("mount_path"):
            raise SpecError(f"{where} needs at least mount_path, and claim or storage_class+size")
        mount_path = str(entry["mount_path"])
        if not mount_path.startswith("/"):
            raise SpecError(f"{where}.mount_path={mount_path!r} must be an absolute path")
        claim = entry.get("claim")
        create = bool(entry.get("storage_class"))
        if not claim and not create:
            raise SpecError(f"{where} needs claim (an existing PVC) or storage_class and size")
        if create and not entry.get("size"):
            raise SpecError(f"{where} creates a PVC with storage_class; it needs a size too")
        if create:
            _quantity(entry["size"], f"{where}.size")
        claim_name = str(claim or f"{run}-{entry.get('name') or f'vol{index}'}")
        problem = dns1123_subdomain_error(f"{where}.claim", claim_name)
        if problem:
            raise SpecError(problem)
        volumes.append(
            VolumeSpec(
                name=str(entry.get("name") or f"vol{index}"),
                mount_path=mount_path,
                claim=claim_name,
                create=create,
                storage_class=str(entry["storage_class"]) if create else None,
                size=str(entry["size"]) if create else None,
                access_mode=str(entry.get("access_mode") or "ReadWriteMany"),
                read_only=bool(entry.get("read_only", False)),
            )
        )
    return volumes


_SCP_LIKE_RE = re.compile(
    r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s][^\s]*)$"
)


def _git_transport(repo: str) -> str:
    """'https' or 'ssh' for a remote git can fetch from; SpecError for anything else, and for
    credentials written into the URL."""
    if _SCP_LIKE_RE.match(repo):
        return "ssh"
    parsed = urlsplit(repo)
    if parsed.scheme not in ("https", "http", "ssh") or not parsed.hostname:
        raise SpecError(
            f"git.repo={repo!r} must be an https:// URL (with an access token in "
            "git.credentials_secret) or an ssh remote such as ssh://git@host/org/repo.git or "
            "git@host:org/repo.git (with a deploy key in git.credentials_secret)"
        )
    if parsed.password is not None or (parsed.scheme != "ssh" and parsed.username is not None):
        raise SpecError(
            "git.repo must not carry credentials (they would be stored in the Job for anyone to "
            "read); put them in a Secret and name it in git.credentials_secret"
        )
    return "ssh" if parsed.scheme == "ssh" else "https"


def _git_source(value: Any, volumes: list[VolumeSpec]) -> GitSource | None:
    if value in (None, "", {}):
        return None
    if not isinstance(value, Mapping):
        raise SpecError("git must be a mapping with repo and commit")
    unknown = sorted(
        set(value) - {"repo", "commit", "path", "image", "credentials_secret", "depth"}
    )
    if unknown:
        raise SpecError(
            f"git has unknown key(s) {', '.join(unknown)}; it may set repo, commit, path, image, "
            "credentials_secret and depth"
        )
    repo = str(value.get("repo") or "").strip()
    transport = _git_transport(repo)
    commit = str(value.get("commit") or "").strip()
    if not GIT_COMMIT_RE.match(commit):
        raise SpecError(
            f"git.commit={commit!r} must be a full commit id (40 lower-case hex characters): a "
            "branch or tag moves, so the run could not say which code it ran. Resolve it first, "
            "e.g. git rev-parse origin/main"
        )
    path = str(value.get("path") or GIT_DEFAULT_PATH)
    if not path.startswith("/") or path.rstrip("/") in ("", "/dev/shm"):
        raise SpecError(
            f"git.path={path!r} must be an absolute directory other than / and /dev/shm"
        )
    for volume in volumes:
        if volume.mount_path.rstrip("/") == path.rstrip("/"):
            raise SpecError(
                f"git.path={path!r} is also the mount path of volume {volume.name!r}; give the "
                "code its own directory"
            )
    image = str(value.get("image") or "").strip() or None
    if image and not _image_ok(image):
        raise SpecError(f"git.image={image!r} is not a valid image reference")
    secret = str(value.get("credentials_secret") or "").strip() or None
    if secret:
        problem = dns1123_subdomain_error("git.credentials_secret", secret)
        if problem:
            raise SpecError(problem)
    elif transport == "ssh":
        raise SpecError(
            f"git.repo={repo!r} is an ssh remote, which needs a key: name a Secret with keys "
            "ssh-privatekey (a read-only deploy key) and known_hosts (the server's ssh-keyscan "
            "line) in git.credentials_secret"
        )
    return GitSource(
        repo=repo,
        transport=transport,
        commit=commit,
        path=path.rstrip("/") or "/",
        image=image,
        credentials_secret=secret,
        depth=_int(value.get("depth", 1), "git.depth", 1),
    )


_IMAGE_RE = re.compile(
    r"^[a-z0-9]+([._:-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)


def _image_ok(image: str) -> bool:
    return bool(image) and bool(_IMAGE_RE.match(image))


def build_spec(params: Mapping[str, Any], launching: bool = True) -> RunSpec:
    """Validate one run's options; raise SpecError naming the field, the value and the fix.

    With ``launching=False`` (state absent) only what identifies the run is required.
    """
    name = str(params.get("name") or "")
    if not is_dns1123_label(name):
        raise SpecError(
            f"name={name!r} is not a valid run name: use at most 63 lower-case letters, digits "
            "and '-', starting and ending with a letter or digit (no uppercase, no underscores), "
            "for example 'urm-pretrain-01'"
        )
    namespace = str(params.get("namespace") or "")
    if not is_dns1123_label(namespace):
        raise SpecError(f"namespace={namespace!r} is not a valid namespace name")
    image = str(params.get("image") or "").strip()
    if launching and not _image_ok(image):
        raise SpecError(
            f"image={image!r} is not a valid image reference: use a lower-case "
            "registry/repository:tag or registry/repository@sha256:<digest>"
        )
    mode = str(params.get("mode") or "job")
    gpus = _int(params.get("gpus"), "gpus", 1)
    nodes = _int(params.get("nodes", 1), "nodes", 1)
    if mode == "devpod" and nodes > 1:
        raise SpecError(
            f"nodes={nodes} with mode=devpod: a dev pod is one interactive pod; use mode=job "
            "for multi-node training"
        )
    cpu_per_gpu = _quantity(params.get("cpu_per_gpu", 4), "cpu_per_gpu")
    memory_per_gpu = _quantity(params.get("memory_per_gpu", "16Gi"), "memory_per_gpu")
    shm_size = _quantity(params.get("shm_size") or "8Gi", "shm_size")
    memory_limit = memory_per_gpu * gpus
    if shm_size >= memory_limit:
        raise SpecError(
            f"shm_size={format_bytes(shm_size)} does not fit in the memory limit of "
            f"{format_bytes(memory_limit)} ({gpus} GPUs x memory_per_gpu="
            f"{format_bytes(memory_per_gpu)}): /dev/shm counts against it. Lower shm_size or "
            "raise memory_per_gpu"
        )
    command = [str(c) for c in params.get("command") or []]
    args = [str(a) for a in params.get("args") or []]
    active_deadline = _optional_int(params.get("active_deadline"), "active_deadline")
    if mode == "devpod":
        active_deadline = active_deadline or DEVPOD_DEFAULT_DEADLINE
        command = command or ["sleep", str(active_deadline)]
    if launching and not command and not args:
        raise SpecError("command or args is required: the training command to run")
    tolerations = params.get("tolerations")
    labels = string_map("labels", params.get("labels"), SpecError)
    volumes = _volumes(params.get("volumes"), name)
    git = _git_source(params.get("git"), volumes) if launching else None
    return RunSpec(
        name=name,
        namespace=namespace,
        image=image,
        command=command,
        args=args,
        gpus=gpus,
        nodes=nodes,
        gpu_type=str(params["gpu_type"]) if params.get("gpu_type") else None,
        accelerator_label=str(params.get("accelerator_label") or "accelerator"),
        cpu_per_gpu=cpu_per_gpu,
        memory_per_gpu=memory_per_gpu,
        shm_size=shm_size,
        env=string_map("env", params.get("env"), SpecError),
        secret_env=_secret_env(params.get("secret_env")),
        volumes=volumes,
        image_pull_secrets=[str(s) for s in params.get("image_pull_secrets") or []],
        tolerations=[dict(t) for t in tolerations]
        if tolerations is not None
        else [dict(GPU_TOLERATION)],
        node_selector=string_map("node_selector", params.get("node_selector"), SpecError),
        priority_class=params.get("priority_class") or None,
        queue=params.get("queue") or None,
        active_deadline=active_deadline,
        backoff_limit=_int(params.get("backoff_limit", 0), "backoff_limit", 0),
        ttl_after_finished=_optional_int(params.get("ttl_after_finished"), "ttl_after_finished"),
        labels=labels,
        annotations=string_map("annotations", params.get("annotations"), SpecError),
        mode=mode,
        wandb=dict(params.get("wandb") or {}),
        git=git,
    )


# -- builders -------------------------------------------------------------------------------


def wandb_run_id(spec: RunSpec) -> str:
    """Stable per namespace and run name, so a relaunch resumes the same wandb run."""
    digest = hashlib.sha256(f"{spec.namespace}/{spec.name}".encode()).hexdigest()[:8]
    return f"{spec.name}-{digest}"


def _env(spec: RunSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    wandb = spec.wandb
    if wandb:
        for key, var in (("project", "WANDB_PROJECT"), ("entity", "WANDB_ENTITY")):
            if wandb.get(key):
                env.append({"name": var, "value": str(wandb[key])})
        env.append(
            {"name": "WANDB_RUN_ID", "value": str(wandb.get("run_id") or wandb_run_id(spec))}
        )
        env.append({"name": "WANDB_RESUME", "value": str(wandb.get("resume") or "allow")})
        env.append({"name": "WANDB_NAME", "value": spec.name})
    for ref in spec.secret_env:
        env.append(
            {
                "name": ref.env,
                "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}},
            }
        )
    env.append({"name": "NPROC_PER_NODE", "value": str(spec.gpus)})
    if spec.nodes > 1:
        env += [
            {"name": "MASTER_ADDR", "value": f"{spec.name}-0.{spec.name}"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
            {"name": "NNODES", "value": str(spec.nodes)},
            {
                "name": "NODE_RANK",
                "valueFrom": {
                    "fieldRef": {
                        "fieldPath": (
                            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        )
                    }
                },
            },
        ]
    return env


def common_labels(spec: RunSpec) -> dict[str, str]:
    labels = dict(spec.labels)
    labels.update({LABEL_MANAGED: MANAGED_BY, LABEL_RUN: spec.name, LABEL_MODE: spec.mode})
    if spec.git:
        # A checkout of one commit has no local edits, unlike a code layer from a work tree.
        labels[LABEL_GIT_COMMIT] = spec.git.commit
        labels[LABEL_GIT_DIRTY] = "false"
    if spec.queue:
        labels[LABEL_QUEUE] = spec.queue
    return labels


def git_init_container(spec: RunSpec, git: GitSource) -> dict[str, Any]:
    """Fetches exactly ``git.commit`` into the code volume before the training starts."""
    env: list[dict[str, Any]] = [
        {"name": "GIT_REPO", "value": git.repo},
        {"name": "GIT_COMMIT", "value": git.commit},
        {"name": "GIT_DEPTH", "value": str(git.depth)},
        {"name": "CODE_DIR", "value": git.path},
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts: list[dict[str, Any]] = [{"name": CODE_VOLUME, "mountPath": git.path}]
    if git.transport == "ssh":
        env.append({"name": "GIT_SSH_COMMAND", "value": GIT_SSH_COMMAND})
        mounts.append({"name": GIT_SSH_VOLUME, "mountPath": GIT_SSH_DIR, "readOnly": True})
    elif git.credentials_secret:
        for var, key in (("GIT_USERNAME", "username"), ("GIT_PASSWORD", "password")):
            env.append(
                {
                    "name": var,
                    "valueFrom": {"secretKeyRef": {"name": git.credentials_secret, "key": key}},
                }
            )
    # Enough for a large clone without raising the pod's effective request above the trainer's.
    memory = format_bytes(min(spec.memory_limit, Decimal(2 * 1024**3)))
    cpu = format_number(min(spec.cpu_request, Decimal(2)))
    return {
        "name": GIT_CONTAINER,
        "image": git.image or spec.image,
        "command": ["sh", "-c", GIT_FETCH_SCRIPT],
        "env": env,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def pod_spec(spec: RunSpec) -> dict[str, Any]:
    memory = format_bytes(spec.memory_limit)
    resources = {
        "requests": {
            "cpu": format_number(spec.cpu_request),
            "memory": memory,
            GPU_RESOURCE: str(spec.gpus),
        },
        "limits": {"memory": memory, GPU_RESOURCE: str(spec.gpus)},
    }
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {
            "name": SHM_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": format_bytes(spec.shm_size)},
        }
    ]
    for volume in spec.volumes:
        mounts.append(
            {"name": volume.name, "mountPath": volume.mount_path, "readOnly": volume.read_only}
        )
        volumes.append({"name": volume.name, "persistentVolumeClaim": {"claimName": volume.claim}})
    container: dict[str, Any] = {
        "name": "train",
        "image": spec.image,
        "env": _env(spec),
        "resources": resources,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.command:
        container["command"] = spec.command
    if spec.args:
        container["args"] = spec.args
    if spec.mode == "devpod":
        container["workingDir"] = "/workspace"
    body: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "tolerations": spec.tolerations,
    }
    if spec.git:
        mounts.append({"name": CODE_VOLUME, "mountPath": spec.git.path})
        volumes.append({"name": CODE_VOLUME, "emptyDir": {}})
        if spec.git.transport == "ssh":
            # ssh refuses a key that others can read: 0400, and only the two keys it needs.
            volumes.append(
                {
                    "name": GIT_SSH_VOLUME,
                    "secret": {
                        "secretName": spec.git.credentials_secret,
                        "defaultMode": 0o400,
                        "items": [{"key": key, "path": key} for key in GIT_SSH_KEYS],
                    },
                }
            )
        container["workingDir"] = spec.git.path
        body["initContainers"] = [git_init_container(spec, spec.git)]
    if spec.selector:
        body["nodeSelector"] = spec.selector
    if spec.image_pull_secrets:
        body["imagePullSecrets"] = [{"name": s} for s in spec.image_pull_secrets]
    if spec.priority_class:
        body["priorityClassName"] = spec.priority_class
    if spec.nodes > 1:
        body["subdomain"] = spec.name
        body["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {LABEL_RUN: spec.name}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return body


def _annotations(spec: RunSpec) -> dict[str, str]:
    annotations = dict(spec.annotations)
    if spec.git:
        annotations[ANNOTATION_GIT_REPO] = spec.git.repo
    return annotations


def _metadata(spec: RunSpec, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": labels,
        "annotations": _annotations(spec),
    }


def job(spec: RunSpec) -> dict[str, Any]:
    labels = common_labels(spec)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        # A node drain or preemption is not the training's fault: don't count it as a failure.
        "podFailurePolicy": {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        },
        "template": {
            "metadata": {"labels": labels, "annotations": _annotations(spec)},
            "spec": pod_spec(spec),
        },
    }
    if spec.nodes > 1:
        job_spec.update(
            {"completionMode": "Indexed", "completions": spec.nodes, "parallelism": spec.nodes}
        )
    if spec.active_deadline:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline
    if spec.ttl_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, labels),
        "spec": job_spec,
    }


def devpod(spec: RunSpec) -> dict[str, Any]:
    body = pod_spec(spec)
    body["activeDeadlineSeconds"] = spec.active_deadline
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(spec, common_labels(spec)),
        "spec": body,
    }


def headless_service(spec: RunSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": common_labels(spec)},
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_RUN: spec.name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT}],
            "publishNotReadyAddresses": True,
        },
    }


def claims(spec: RunSpec) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": v.claim,
                "namespace": spec.namespace,
                "labels": {LABEL_MANAGED: MANAGED_BY, LABEL_RUN: spec.name},
            },
            "spec": {
                "storageClassName": v.storage_class,
                "accessModes": [v.access_mode],
                "resources": {"requests": {"storage": v.size}},
            },
        }
        for v in spec.volumes
        if v.create
    ]


def workload(spec: RunSpec) -> dict[str, Any]:
    """The Job (or dev Pod), with the hash of everything rendered in an annotation."""
    body = devpod(spec) if spec.mode == "devpod" else job(spec)
    desired = {
        "workload": body,
        "service": headless_service(spec) if spec.nodes > 1 else None,
        "claims": claims(spec),
    }
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]
    body["metadata"]["annotations"][ANNOTATION_HASH] = digest
    body["metadata"]["annotations"][ANNOTATION_GPUS] = str(spec.gpus * spec.nodes)
    return body


def spec_hash(obj: Mapping[str, Any] | None) -> str | None:
    if not obj:
        return None
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HASH)
