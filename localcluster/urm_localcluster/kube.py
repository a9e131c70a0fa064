"""The control plane: kwokctl's binary runtime driving the locally built upstream binaries."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from . import build, world
from .pki import write_private
from .processes import ComponentFailed, log_tail, port_is_open
from .settings import CLUSTER_NAME, NAMESPACE, Settings

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""

# kwok's own stage definitions, read from the pinned module source. Passing any
# Stage replaces all defaults, so the node stages are listed as well.
STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/general/pod-create.yaml",
    "pod/general/pod-init-container-running.yaml",
    "pod/general/pod-init-container-completed.yaml",
    "pod/general/pod-ready.yaml",
    "pod/general/pod-complete.yaml",
    "pod/general/pod-delete.yaml",
    "pod/chaos/pod-container-running-failed.yaml",
)


def tool_env(settings: Settings) -> dict[str, str]:
    bins = build.binary_paths()
    path = os.pathsep.join(
        [str(bins["kubectl"].parent), str(bins["kwokctl"].parent), os.environ.get("PATH", "")]
    )
    return dict(os.environ, PATH=path, KWOK_WORKDIR=str(settings.kwok_workdir))


def kubectl(
    settings: Settings,
    *args: str,
    kubeconfig: Path | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    argv = [
        str(build.binary_paths()["kubectl"]),
        "--kubeconfig",
        str(kubeconfig or settings.admin_kubeconfig),
        *args,
    ]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=check, env=tool_env(settings)
    )


def _kwok_module_dir() -> Path:
    return build.module_source("kwok", "sigs.k8s.io/kwok")


# What a kubelet does when a running pod is deleted: stop it, so the pod ends Failed. Without it a
# pod that still carries the Job controller's tracking finalizer is never deleted (kwok's
# pod-delete stage waits for the finalizer, the Job controller waits for a finished pod).
POD_STOP_ON_DELETE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-stop-on-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
    - key: '.metadata.finalizers'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending', 'Running']
  next:
    statusTemplate: |
      phase: Failed
      reason: Terminated
      message: the pod was deleted while it ran
"""


def _real_node_patches(settings: Settings) -> str:
    """kube-apiserver talks to the real kubelet (logs, exec) as kwokctl's admin; kwok manages
    only the annotated fake nodes (the binary runtime passes --manage-all-nodes=true, and the
    later flags win)."""
    pki = settings.kwok_cluster_dir / "pki"
    selector = ",".join(f"{k}={v}" for k, v in world.FAKE_NODE_ANNOTATION.items())
    patches = [
        {
            "name": "kube-apiserver",
            "extraArgs": [
                {"key": "advertise-address", "value": "127.0.0.1"},
                {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
                {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
                # The node's name does not resolve; its InternalIP does.
                {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
            ],
        },
        {
            "name": "kwok-controller",
            "extraArgs": [
                {"key": "manage-all-nodes", "value": "false"},
                {"key": "manage-nodes-with-annotation-selector", "value": selector},
            ],
        },
    ]
    return json.dumps(
        {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "componentsPatches": patches,
        }
    )


def _stage_config() -> str:
    root = _kwok_module_dir() / "kustomize" / "stage"
    stages = [(root / name).read_text() for name in STAGE_FILES]
    return "\n---\n".join([*stages, POD_STOP_ON_DELETE])


def component_logs(settings: Settings) -> list[Path]:
    return sorted((settings.kwok_cluster_dir / "logs").glob("*.log"))


def _failure_report(settings: Settings, what: str) -> str:
    parts = [f"localcluster: {what}"]
    for log in component_logs(settings):
        if log.name != "audit.log":
            parts.append(f"--- last lines of {log}:\n{log_tail(log, 15)}")
    return "\n".join(parts)


def create(settings: Settings) -> None:
    bins = build.binary_paths()
    settings.kwok_workdir.mkdir(parents=True, exist_ok=True)
    policy = settings.state_dir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    stages = settings.state_dir / "kwok-stages.yaml"
    stages.write_text(_stage_config())
    argv = [
        str(bins["kwokctl"]),
        "create",
        "cluster",
        "--name",
        CLUSTER_NAME,
        "--runtime",
        "binary",
        "--kube-apiserver-binary",
        str(bins["kube-apiserver"]),
        "--kube-controller-manager-binary",
        str(bins["kube-controller-manager"]),
        "--kube-scheduler-binary",
        str(bins["kube-scheduler"]),
        "--kwok-controller-binary",
        str(bins["kwok"]),
        "--etcd-binary",
        str(bins["etcd"]),
        "--kube-apiserver-port",
        str(settings.apiserver_port),
        "--secure-port=true",
        "--kube-authorization=true",
        "--kube-audit-policy",
        str(policy),
        "--kubeconfig",
        str(settings.admin_kubeconfig),
        "--extra-args",
        "kube-apiserver=advertise-address=127.0.0.1",
        "--config",
        str(stages),
        "--wait",
        "90s",
    ]
    if settings.real_node:
        # kwokctl v0.8.0's --extra-args indexes its patches wrongly when a second component
        # repeats a key (index out of range), so the real node's patches go in the config file.
        stages.write_text(_stage_config() + "\n---\n" + _real_node_patches(settings))
        where = argv.index("--extra-args")
        del argv[where : where + 2]
    result = subprocess.run(argv, capture_output=True, text=True, env=tool_env(settings))
    if result.returncode != 0:
        raise ComponentFailed(
            _failure_report(
                settings,
                f"kwokctl create cluster failed (exit {result.returncode}):\n"
                + result.stderr[-3000:],
            )
        )
    os.chmod(settings.admin_kubeconfig, 0o600)


def delete(settings: Settings) -> None:
    if not settings.kwok_cluster_dir.exists():
        return
    bins = build.binary_paths()
    subprocess.run(
        [str(bins["kwokctl"]), "delete", "cluster", "--name", CLUSTER_NAME],
        capture_output=True,
        text=True,
        env=tool_env(settings),
        timeout=120,
    )


def apply(settings: Settings, objects: list[dict[str, Any]]) -> None:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl(
        settings,
        "apply",
        "--server-side",
        "--field-manager=localcluster",
        "-f",
        "-",
        stdin=document,
    )


def _wait(what: str, predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise ComponentFailed(f"localcluster: timed out after {timeout:.0f}s waiting for {what}")


def _nodes_ready(settings: Settings) -> bool:
    out = kubectl(settings, "get", "nodes", "-o", "json", check=False)
    if out.returncode != 0:
        return False
    items = json.loads(out.stdout)["items"]
    fake = {spec[0] for spec in world.NODES}
    ready = [
        n
        for n in items
        if n["metadata"]["name"] in fake
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    return len(ready) == len(world.NODES)


def _token(settings: Settings, account: str) -> str | None:
    out = kubectl(
        settings, "-n", NAMESPACE, "get", "secret", f"{account}-token", "-o", "json", check=False
    )
    if out.returncode != 0:
        return None
    token = json.loads(out.stdout).get("data", {}).get("token")
    return base64.b64decode(token).decode() if token else None


def _write_kubeconfig(settings: Settings, path: Path, account: str, token: str) -> None:
    ca = settings.kwok_cluster_dir / "pki" / "ca.crt"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localcluster",
                "cluster": {
                    "server": f"https://127.0.0.1:{settings.apiserver_port}",
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"localcluster-{account}",
                "context": {"cluster": "localcluster", "user": account, "namespace": NAMESPACE},
            }
        ],
        "current-context": f"localcluster-{account}",
    }
    write_private(path, json.dumps(config, indent=2))


def populate(settings: Settings) -> None:
    """Nodes, storage and the `aic` namespace, then kubeconfigs for the namespace-only users."""
    # On a real node the hostPath volumes really exist: keep them in this world's state dir.
    volume_root = settings.realnode_dir / "volumes" if settings.real_node else None
    apply(settings, world.all_nodes() + world.storage(volume_root) + world.namespace())
    _wait("the simulated nodes to be Ready", lambda: _nodes_ready(settings))
    _wait(
        f"the default ServiceAccount in {NAMESPACE}",
        lambda: (
            kubectl(settings, "-n", NAMESPACE, "get", "sa", "default", check=False).returncode == 0
        ),
    )
    for account, path in (
        (world.RESEARCHER, settings.researcher_kubeconfig),
        (world.RESEARCHER_WITH_NODES, researcher_nodes_kubeconfig(settings)),
    ):
        token = _wait(
            f"the token of ServiceAccount {account}",
            lambda account=account: _token(settings, account),
        )
        _write_kubeconfig(settings, path, account, token)


def researcher_nodes_kubeconfig(settings: Settings) -> Path:
    return settings.state_dir / "kubeconfig-researcher-nodes.yaml"


def healthy(settings: Settings) -> dict[str, bool]:
    status: dict[str, bool] = {"kube-apiserver": False, "nodes-ready": False}
    if not settings.admin_kubeconfig.exists() or not port_is_open(settings.apiserver_port):
        return status
    ready = kubectl(settings, "get", "--raw", "/readyz", check=False)
    status["kube-apiserver"] = ready.returncode == 0 and ready.stdout.strip() == "ok"
    if status["kube-apiserver"]:
        status["nodes-ready"] = _nodes_ready(settings)
    return status


def component_pids(settings: Settings) -> dict[str, int | None]:
    """kwokctl keeps one pid file per component in the cluster dir."""
    pids: dict[str, int | None] = {}
    for pid_file in sorted((settings.kwok_cluster_dir / "pids").glob("*.pid")):
        try:
            pids[pid_file.stem] = int(pid_file.read_text().strip())
        except ValueError:
            pids[pid_file.stem] = None
    return pids
