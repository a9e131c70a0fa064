# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""An Opaque Secret of values that pods read through secretKeyRef (the wandb API key, tokens).

Compared decoded with the live Secret; results and diffs carry key names only, never values.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._dockerconfig import (
    REDACTED,
    REDACTED_CHANGED,
)
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    dns1123_subdomain_error,
)

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "urm.training"}


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        out[key] = base64.b64decode(value).decode("utf-8", "replace")
    return out


def _redacted_diff(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    keys = sorted(set(before) | set(after))
    return {
        "before": {k: REDACTED for k in keys if k in before},
        "after": {
            k: (REDACTED_CHANGED if before.get(k) != after[k] else REDACTED)
            for k in keys
            if k in after
        },
    }


def ensure_env_secret(
    client: K8sClient,
    *,
    name: str,
    namespace: str,
    data: Mapping[str, str],
    state: str,
    check_mode: bool,
) -> dict[str, Any]:
    problem = dns1123_subdomain_error("name", name)
    if problem:
        raise K8sError(problem)
    empty = sorted(k for k, v in data.items() if v in (None, ""))
    if state == "present" and (not data or empty):
        raise K8sError(
            "data must give a non-empty value for every key "
            f"(empty: {', '.join(empty) or 'no keys at all'})"
        )
    if not client.namespace_exists(namespace):
        raise K8sError(f"namespace={namespace!r} does not exist on the cluster")
    live = client.get("Secret", name, namespace)
    result: dict[str, Any] = {"name": name, "namespace": namespace, "keys": sorted(data)}
    if state == "absent":
        result["changed"] = live is not None
        if live is not None and not check_mode:
            client.delete("Secret", name, namespace)
        return result
    if live is not None and live.get("type", "Opaque") != "Opaque":
        raise K8sError(f"Secret {namespace}/{name} exists with type {live.get('type')}, not Opaque")
    desired = {str(k): str(v) for k, v in data.items()}
    before = _decoded(live)
    result["changed"] = before != desired
    result["diff"] = _redacted_diff(before, desired) if result["changed"] else None
    if not result["changed"] or check_mode:
        return result
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in desired.items()}
    if live is None:
        body = {
            "metadata": {"name": name, "labels": dict(MANAGED_LABELS)},
            "type": "Opaque",
            "data": encoded,
        }
        client.create("Secret", body, namespace)
    else:
        client.patch(
            "Secret",
            name,
            [{"op": "replace", "path": "/data", "value": encoded}],
            namespace,
            patch_type="json",
        )
    return result
