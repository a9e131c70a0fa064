"""The objects that make the local cluster resemble ICE: nodes, storage, namespace `aic`, RBAC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .settings import NAMESPACE

GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
FAKE_NODE_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}

# name, accelerator label, GFD product label, GPUs, CPUs, memory
NODES: tuple[tuple[str, str | None, str | None, int, str, str], ...] = (
    ("h100-0", "nvidia-h100", "NVIDIA-H100-80GB-HBM3", 8, "96", "1Ti"),
    ("h100-1", "nvidia-h100", "NVIDIA-H100-80GB-HBM3", 8, "96", "1Ti"),
    ("rtx2080ti-0", "nvidia-gtx-2080ti", "NVIDIA-GeForce-RTX-2080-Ti", 4, "32", "256Gi"),
    ("cpu-0", None, None, 0, "32", "128Gi"),
)

# storage class, access mode, sizes of the pre-made volumes
VOLUMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rook-ceph-fs", "ReadWriteMany", ("1Ti", "1Ti", "100Gi", "100Gi", "10Gi", "10Gi")),
    ("rook-ceph-rbd", "ReadWriteOnce", ("100Gi", "100Gi", "10Gi", "10Gi")),
)
PROVISIONERS = {
    "rook-ceph-fs": "rook-ceph.cephfs.csi.ceph.com",
    "rook-ceph-rbd": "rook-ceph.rbd.csi.ceph.com",
}

GPU_QUOTA = 16
MEMORY_QUOTA = "4Ti"

RESEARCHER = "researcher"
RESEARCHER_WITH_NODES = "researcher-nodes"


def node(
    name: str, accelerator: str | None, product: str | None, gpus: int, cpu: str, memory: str
) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "2Ti"}
    spec: dict[str, Any] = {}
    if accelerator:
        labels["accelerator"] = accelerator
        labels["nvidia.com/gpu.product"] = product or ""
        labels["nvidia.com/gpu.present"] = "true"
        resources[GPU] = str(gpus)
        spec["taints"] = [GPU_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": dict(FAKE_NODE_ANNOTATION)},
        "spec": spec,
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


VOLUME_ROOT = Path("/var/lib/urm-localcluster")


def storage(root: Path | None = None) -> list[dict[str, Any]]:
    root = root or VOLUME_ROOT
    objects: list[dict[str, Any]] = []
    for storage_class, mode, sizes in VOLUMES:
        objects.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": storage_class},
                "provisioner": PROVISIONERS[storage_class],
                "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": True,
            }
        )
        for index, size in enumerate(sizes):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {
                        "name": f"{storage_class}-pv-{index}",
                        "labels": {"storage-class": storage_class},
                    },
                    "spec": {
                        "storageClassName": storage_class,
                        "capacity": {"storage": size},
                        "accessModes": [mode],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {
                            "path": str(root / storage_class / str(index)),
                            "type": "DirectoryOrCreate",
                        },
                    },
                }
            )
    return objects


def namespace() -> list[dict[str, Any]]:
    rules = [
        {
            "apiGroups": [""],
            "resources": [
                "pods",
                "secrets",
                "configmaps",
                "services",
                "persistentvolumeclaims",
                "serviceaccounts",
            ],
            "verbs": [
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        },
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
        {
            "apiGroups": [""],
            "resources": ["pods/exec", "pods/attach", "pods/portforward"],
            "verbs": ["get", "create"],
        },
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": [
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        },
        # Reading one's own quota is what a Rancher project member can do, and what a
        # preflight needs.
        {
            "apiGroups": [""],
            "resources": ["events", "resourcequotas", "limitranges"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["events.k8s.io"],
            "resources": ["events"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "aic-quota", "namespace": NAMESPACE},
            "spec": {
                "hard": {
                    f"requests.{GPU}": str(GPU_QUOTA),
                    "requests.memory": MEMORY_QUOTA,
                    "limits.memory": MEMORY_QUOTA,
                }
            },
        },
        {
            # With a memory quota every pod must state memory; the LimitRange fills in
            # small defaults.
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "aic-defaults", "namespace": NAMESPACE},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"memory": "512Mi"},
                        "defaultRequest": {"memory": "128Mi", "cpu": "100m"},
                    }
                ]
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "researcher", "namespace": NAMESPACE},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "urm-node-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
            ],
        },
    ]
    for account in (RESEARCHER, RESEARCHER_WITH_NODES):
        objects += [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": NAMESPACE},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": f"{account}-token",
                    "namespace": NAMESPACE,
                    "annotations": {"kubernetes.io/service-account.name": account},
                },
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": account, "namespace": NAMESPACE},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "researcher",
                },
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
            },
        ]
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{RESEARCHER_WITH_NODES}-node-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "urm-node-reader",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": RESEARCHER_WITH_NODES, "namespace": NAMESPACE}
            ],
        }
    )
    return objects


def all_nodes() -> list[dict[str, Any]]:
    return [node(*spec) for spec in NODES]
