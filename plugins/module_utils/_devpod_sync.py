# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""devpod_sync: a local source tree into a running dev pod, through the exec API.

The tree is the code layer of code_layer (the same walk, excludes, .dockerignore, symlink check,
size cap and bytes), so its digest names the tree: a pod whose annotation already holds it is left
alone without an exec. Otherwise the gzip layer goes on stdin to ``tar -x`` in the container, in
``dest``; with ``delete``, files under ``dest`` that the tree no longer has are removed first
(excluded paths, such as data/ and checkpoints/, are never removed). The annotation is written
last, so a failed sync is simply redone by the next run.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._build_context import (
    ContextError,
    IgnorePattern,
    is_excluded,
)
from ansible_collections.urm.training.plugins.module_utils._errors import ModuleFailure
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    dns1123_label_error,
    dns1123_subdomain_error,
)
from ansible_collections.urm.training.plugins.module_utils._oci_append import (
    Layer,
    build_layer,
    layer_patterns,
    normalise_dest,
)
from ansible_collections.urm.training.plugins.module_utils._pod_exec import (
    ExecResult,
    PodExecError,
    exec_in_pod,
)

ANNOTATION_DIGEST = "training.urm.io/synced-digest"
LABEL_MODE = "training.urm.io/mode"
DEVPOD_CONTAINER = "train"
MISSING = "urm-sync: the container has no "
NO_TOOL_EXIT = 127

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "required": True, "aliases": ["pod"]},
    "namespace": {"type": "str", "required": True},
    "src": {"type": "path", "required": True},
    "dest": {"type": "str", "default": "/workspace"},
    "container": {"type": "str"},
    "exclude": {"type": "list", "elements": "str", "default": []},
    "default_excludes": {"type": "bool", "default": True},
    "max_size_mb": {"type": "int", "default": 512},
    "delete": {"type": "bool", "default": False},
    "resync": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "timeout": {"type": "float", "default": 300.0},
}

# $1 dest, $2 leading path components to strip (the layer holds dest's path), $3 bytes on stdin.
# head -c reads exactly the layer, so the end of stdin need not be signalled (protocol v4).
# -m: files get the time of the sync, not the layer's mtime 0, or Python's bytecode cache (mtime
# and size) would keep a stale .pyc for an edit that keeps the size.
EXTRACT = (
    "for t in tar head mkdir; do command -v $t >/dev/null 2>&1 || "
    '{ echo "' + MISSING + '$t" >&2; exit ' + str(NO_TOOL_EXIT) + "; }; done; "
    'mkdir -p -- "$1" && head -c "$3" | tar -xzmf - -C "$1" --strip-components="$2"'
)
LIST = (
    "command -v find >/dev/null 2>&1 || "
    '{ echo "' + MISSING + 'find" >&2; exit ' + str(NO_TOOL_EXIT) + "; }; "
    '[ -d "$1" ] || exit 0; cd -- "$1" && find . -mindepth 1 -print0'
)
REMOVE = (
    "for t in head xargs rm; do command -v $t >/dev/null 2>&1 || "
    '{ echo "' + MISSING + '$t" >&2; exit ' + str(NO_TOOL_EXIT) + "; }; done; "
    'cd -- "$1" && head -c "$2" | xargs -0 -r rm -rf --'
)

Exec = Callable[..., ExecResult]


class SyncError(ModuleFailure):
    """A devpod_sync failure."""


def _check_names(name: str, namespace: str) -> None:
    for problem in (
        dns1123_subdomain_error("name", name),
        dns1123_label_error("namespace", namespace),
    ):
        if problem:
            raise SyncError(problem)


def check_dest(dest: str, delete: bool) -> tuple[str, int]:
    """(normalised dest, path components to strip from the layer's names)."""
    try:
        prefix = normalise_dest(dest)
    except ContextError as exc:
        raise SyncError(str(exc).replace("in the image", "in the container")) from None
    clean = "/" + prefix.rstrip("/")
    if delete and clean == "/":
        raise SyncError(
            "dest=/ with delete=true would remove the container's own files: sync into a "
            "directory such as /workspace, or leave delete off"
        )
    return clean, (prefix.count("/") if prefix else 0)


def _phase_hint(phase: str) -> str:
    if phase == "Pending":
        return "it is still starting (pulling the image or waiting for a node); wait and retry"
    if phase in ("Succeeded", "Failed"):
        return (
            "it has ended (a dev pod sleeps until its active_deadline): start a new one with "
            "training_job mode=devpod"
        )
    return "check it with kubectl describe pod"


def _container(pod: Mapping[str, Any], wanted: str | None, what: str) -> str:
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    if wanted:
        if wanted not in names:
            raise SyncError(f"container={wanted!r} is not in {what}; it has: {', '.join(names)}")
        return wanted
    if len(names) == 1:
        return names[0]
    if DEVPOD_CONTAINER in names:
        return DEVPOD_CONTAINER
    raise SyncError(f"{what} has several containers ({', '.join(names)}): set container")


def check_pod(
    pod: Mapping[str, Any] | None, name: str, namespace: str, container: str | None, force: bool
) -> str:
    """The container to sync into, or a SyncError that says why the pod cannot take a sync."""
    if pod is None:
        raise SyncError(
            f"no dev pod {name} in {namespace}; start one with training_job mode=devpod"
        )
    what = f"pod {namespace}/{name}"
    mode = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_MODE)
    if mode != "devpod" and not force:
        shown = f"{LABEL_MODE}={mode}" if mode else f"no {LABEL_MODE} label"
        raise SyncError(
            f"{what} is not a dev pod ({shown}): syncing would change the code under a running "
            "program. Sync into a pod of training_job mode=devpod, or set force: true if you "
            "mean it"
        )
    phase = str((pod.get("status") or {}).get("phase") or "Unknown")
    if phase != "Running":
        raise SyncError(f"{what} is {phase}, not Running: {_phase_hint(phase)}")
    chosen = _container(pod, container, what)
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != chosen:
            continue
        state = status.get("state") or {}
        if "running" not in state:
            detail: dict[str, Any] = dict(next(iter(state.values()), {}) or {})
            reason = detail.get("reason") or next(iter(state), "not started")
            raise SyncError(
                f"container {chosen} of {what} is not running ({reason}): check it with "
                "kubectl describe pod"
            )
    return chosen


def stale_paths(found: list[str], tree: set[str], patterns: list[IgnorePattern]) -> list[str]:
    """Paths under dest to remove for ``delete``: not in the tree, and not excluded (rsync's
    --delete without --delete-excluded). A directory that holds a kept path stays; only the
    topmost stale path of a stale subtree is listed."""
    keep = set(tree)
    for path in found:
        if path not in tree and is_excluded(path, patterns):
            keep.add(path)
    for path in list(keep):
        parts = path.split("/")
        keep.update("/".join(parts[:i]) for i in range(1, len(parts)))
    stale = sorted(p for p in set(found) if p not in keep)
    chosen: list[str] = []
    for path in stale:
        if not chosen or not path.startswith(chosen[-1] + "/"):
            chosen.append(path)
    return chosen


def _relative(raw: bytes) -> list[str]:
    """find's ./-relative NUL-separated names as tree paths; anything odd is dropped."""
    out = []
    for item in raw.split(b"\0"):
        name = os.fsdecode(item)
        if not name.startswith("./"):
            continue
        rel = name[2:]
        parts = rel.split("/")
        if rel and not any(p in ("", ".", "..") for p in parts):
            out.append(rel)
    return out


class _Pod:
    """The exec side of one sync."""

    def __init__(
        self, client: K8sClient, exec_fn: Exec, namespace: str, name: str, container: str
    ) -> None:
        self.client = client
        self.exec_fn = exec_fn
        self.namespace = namespace
        self.name = name
        self.container = container
        self.what = f"pod {namespace}/{name} (container {container})"

    def run(self, script: str, args: list[str], stdin: Any, timeout: float, doing: str) -> bytes:
        try:
            result = self.exec_fn(
                self.client,
                self.namespace,
                self.name,
                ["sh", "-c", script, "urm-sync", *args],
                container=self.container,
                stdin=stdin,
                timeout=timeout,
            )
        except PodExecError as exc:
            if "executable file not found" in exc.message or "no such file" in exc.message.lower():
                raise SyncError(
                    f"{self.what} has no /bin/sh, which devpod_sync needs to {doing}: use an "
                    f"image with a shell and tar (any Debian or Ubuntu based one) ({exc.message})"
                ) from None
            raise SyncError(f"cannot {doing} in {self.what}: {exc.message}") from None
        if result.exit_code == 0:
            return result.stdout
        err = result.stderr_text()
        if result.exit_code == NO_TOOL_EXIT and MISSING in err:
            tool = err.split(MISSING, 1)[1].split()[0]
            package = "findutils" if tool in ("find", "xargs") else tool
            raise SyncError(
                f"{self.what} has no {tool}, which devpod_sync needs to {doing}: install it in "
                f"the image (Debian: apt-get install {package})"
            )
        raise SyncError(
            f"{doing} in {self.what} failed (exit status {result.exit_code}): "
            f"{err or 'no message on stderr'}"
        )


def run(
    client: K8sClient,
    params: Mapping[str, Any],
    check_mode: bool,
    exec_fn: Exec = exec_in_pod,
) -> tuple[bool, dict[str, Any]]:
    try:
        return _run(client, params, check_mode, exec_fn)
    except ContextError as exc:
        raise SyncError(str(exc)) from None
    except K8sError as exc:
        raise SyncError(exc.message) from None


def _run(
    client: K8sClient, params: Mapping[str, Any], check_mode: bool, exec_fn: Exec
) -> tuple[bool, dict[str, Any]]:
    name, namespace = str(params["name"]), str(params["namespace"])
    _check_names(name, namespace)
    src = str(params["src"])
    if not os.path.isdir(src):
        raise SyncError(f"src={src!r} is not a directory: give the local source tree to sync")
    delete = bool(params.get("delete"))
    dest, strip = check_dest(str(params.get("dest") or "/workspace"), delete)
    pod = client.get("Pod", name, namespace)
    container = check_pod(pod, name, namespace, params.get("container"), bool(params.get("force")))
    assert pod is not None
    previous = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DIGEST)
    exclude = [str(e) for e in params.get("exclude") or []]
    default_excludes = bool(params.get("default_excludes", True))
    max_mb = params.get("max_size_mb")
    layer = build_layer(
        src, dest, exclude, default_excludes, int(max_mb) * 2**20 if max_mb else None
    )
    try:
        result: dict[str, Any] = {
            "pod": name,
            "namespace": namespace,
            "container": container,
            "node": (pod.get("spec") or {}).get("nodeName"),
            "dest": dest,
            "digest": layer.digest,
            "previous_digest": previous,
            "files": layer.file_count,
            "size": layer.tree_size,
            "transferred_bytes": 0,
            "deleted": [],
            "diff": {"before": {"digest": previous}, "after": {"digest": layer.digest}},
        }
        if previous == layer.digest and not params.get("resync"):
            result.update(
                action="unchanged",
                msg=f"pod {namespace}/{name} already holds this tree in {dest} ({layer.digest})",
            )
            return False, result
        if check_mode:
            result.update(
                action="would_sync",
                msg=f"would sync {layer.file_count} files into pod {namespace}/{name}:{dest}",
            )
            return True, result
        target = _Pod(client, exec_fn, namespace, name, container)
        timeout = float(params.get("timeout") or 300.0)
        if delete:
            patterns = layer_patterns(os.path.realpath(src), exclude, default_excludes)
            result["deleted"] = _delete(target, layer, dest, patterns, timeout)
        target.run(
            EXTRACT, [dest, str(strip), str(layer.size)], layer.file, timeout, "unpack the tree"
        )
        client.patch(
            "Pod", name, {"metadata": {"annotations": {ANNOTATION_DIGEST: layer.digest}}}, namespace
        )
        removed = f", removed {len(result['deleted'])} stale paths" if delete else ""
        result.update(
            action="synced",
            transferred_bytes=layer.size,
            msg=(
                f"synced {layer.file_count} files ({layer.size} bytes gzip) into pod "
                f"{namespace}/{name}:{dest}{removed}"
            ),
        )
        return True, result
    finally:
        layer.close()


def _delete(
    target: _Pod, layer: Layer, dest: str, patterns: list[IgnorePattern], timeout: float
) -> list[str]:
    listing = target.run(LIST, [dest], None, timeout, "list dest")
    stale = stale_paths(_relative(listing), {e.path for e in layer.entries}, patterns)
    if stale:
        names = b"".join(os.fsencode("./" + posixpath.normpath(p)) + b"\0" for p in stale)
        target.run(REMOVE, [dest, str(len(names))], names, timeout, "remove stale files")
    return stale
