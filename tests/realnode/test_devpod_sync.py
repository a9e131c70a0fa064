"""devpod_sync against a real dev pod: training_job mode=devpod starts it on the real node, and
the tree goes through the apiserver's exec API to the kubelet, containerd and tar in the
container. What landed is read back with kubectl exec; the apiserver's audit log shows which
execs the module made (none on an unchanged tree, none in check mode).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import ansible_runner
from tests.integration.ansible_runner import REPO, RunResult, run_module
from tests.realnode.test_realnode import get_json, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

ANNOTATION = "training.urm.io/synced-digest"

# What /workspace holds, as JSON: path -> [octal mode, content or link target]. Python is in the
# image; the researcher's kubectl exec is the one a user would run.
LIST_TREE = """
import json, os, stat
out = {}
for dirpath, dirs, files in os.walk("/workspace"):
    for name in dirs + files:
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, "/workspace")
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ["link", os.readlink(full)]
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = [oct(stat.S_IMODE(st.st_mode)), None]
        else:
            out[rel] = [oct(stat.S_IMODE(st.st_mode)), open(full).read()]
print(json.dumps(out, sort_keys=True))
"""


def devpod_args(realnode, name: str) -> dict[str, Any]:
    return {
        "namespace": realnode.namespace,
        "name": name,
        "mode": "devpod",
        "image": realnode.python_image,
        "gpus": 1,
        "gpu_type": realnode.accelerator,
        "min_compute_capability": 0,
        "cpu_per_gpu": "250m",
        "memory_per_gpu": "256Mi",
        "shm_size": "16Mi",
        "active_deadline": 900,
        "wait": "running",
        "wait_timeout": 180,
        "kubeconfig": str(realnode.researcher_nodes_kubeconfig),
    }


@pytest.fixture(scope="module")
def pod(realnode) -> Iterator[str]:
    """A dev pod on the real node, deleted by name afterwards."""
    name = f"rn-sync-{uuid.uuid4().hex[:6]}"
    try:
        result = run_module("urm.training.training_job", devpod_args(realnode, name))
        assert result.rc == 0, result.output[-3000:]
        live = get_json(realnode, "pod", name)
        assert live["spec"]["nodeName"] == realnode.node
        assert live["metadata"]["labels"]["training.urm.io/mode"] == "devpod"
        yield name
    finally:
        realnode.kubectl(
            "-n", realnode.namespace, "delete", "pod", name, "--ignore-not-found",
            "--now", "--wait=true", "--timeout=60s", check=False,
        )  # fmt: skip


def sync(realnode, name: str, src: Path, check: bool = False, **kw: Any) -> RunResult:
    args = {
        "namespace": realnode.namespace,
        "name": name,
        "src": str(src),
        "kubeconfig": str(realnode.researcher_kubeconfig),
        **kw,
    }
    return run_module("urm.training.devpod_sync", args, check=check, diff=True)


def in_pod(realnode, name: str, *command: str) -> str:
    return realnode.kubectl(
        "-n", realnode.namespace, "exec", name, "-c", "train", "--", *command,
        kubeconfig=realnode.researcher_kubeconfig,
    ).stdout  # fmt: skip


def workspace(realnode, name: str) -> dict[str, list[Any]]:
    return dict(json.loads(in_pod(realnode, name, "python3", "-c", LIST_TREE)))


def module_execs(realnode, name: str, since: int) -> list[dict[str, Any]]:
    """Exec requests into ``name`` since audit line ``since`` that kubectl did not make."""
    return [
        e
        for e in realnode.audit_events(since)
        if e.get("stage") == "ResponseComplete"
        and e.get("objectRef", {}).get("name") == name
        and e.get("objectRef", {}).get("subresource") == "exec"
        and not str(e.get("userAgent", "")).startswith("kubectl")
    ]


def pod_writes(realnode, name: str, since: int) -> list[dict[str, Any]]:
    """Patches or updates of the pod object itself (not its status) since audit line ``since``."""
    return [
        e
        for e in realnode.audit_events(since)
        if e.get("stage") == "ResponseComplete"
        and e.get("verb") in ("patch", "update")
        and e.get("objectRef", {}).get("resource") == "pods"
        and e.get("objectRef", {}).get("name") == name
        and not e.get("objectRef", {}).get("subresource")
    ]


def kubectl_exec_seen(realnode, name: str, since: int) -> bool:
    return any(
        e.get("objectRef", {}).get("name") == name
        and e.get("objectRef", {}).get("subresource") == "exec"
        and str(e.get("userAgent", "")).startswith("kubectl")
        and e.get("stage") == "ResponseComplete"
        for e in realnode.audit_events(since)
    )


def make_tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "train.py").write_text("print('step 1')\n")
    (root / "run.sh").write_text("#!/bin/sh\nexec python3 pkg/train.py\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest.py").symlink_to("pkg/train.py")
    (root / "notes.tmp").write_text("scratch\n")
    (root / ".dockerignore").write_text("*.tmp\n")
    for skipped in (".git", "data", "checkpoints", "wandb", "pkg/__pycache__"):
        (root / skipped).mkdir()
        (root / skipped / "blob").write_text("not for the pod\n")
    return root


def test_sync_lands_in_the_pod_and_only_a_changed_tree_execs_again(
    realnode, pod: str, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    start = realnode.audit_line_count()
    first = sync(realnode, pod, src)
    assert first.rc == 0, first.output[-3000:]
    out = first.adhoc
    assert out["changed"] and out["action"] == "synced", out
    assert out["files"] == 4 and out["node"] == realnode.node and out["dest"] == "/workspace"
    tree = workspace(realnode, pod)
    assert tree == {
        ".dockerignore": ["0o644", "*.tmp\n"],
        "latest.py": ["link", "pkg/train.py"],
        "pkg": ["0o755", None],
        "pkg/train.py": ["0o644", "print('step 1')\n"],
        "run.sh": ["0o755", "#!/bin/sh\nexec python3 pkg/train.py\n"],
    }, tree
    assert in_pod(realnode, pod, "sh", "/workspace/run.sh") == "step 1\n"
    live = get_json(realnode, "pod", pod)
    assert live["metadata"]["annotations"][ANNOTATION] == out["digest"]
    wait_for("the module's exec in the audit log", lambda: module_execs(realnode, pod, start))
    assert len(module_execs(realnode, pod, start)) == 1

    # Unchanged: no exec, no patch. kubectl's own exec marks the point the log has reached.
    mark = realnode.audit_line_count()
    second = sync(realnode, pod, src)
    assert second.rc == 0 and not second.adhoc["changed"], second.output[-3000:]
    assert second.adhoc["action"] == "unchanged" and second.adhoc["digest"] == out["digest"]
    in_pod(realnode, pod, "true")
    wait_for("kubectl's exec in the audit log", lambda: kubectl_exec_seen(realnode, pod, mark))
    assert module_execs(realnode, pod, mark) == []
    # The kubelet may write the pod's status at any time; the pod itself must not be written.
    assert pod_writes(realnode, pod, mark) == []

    # One byte changed: check mode says so and writes nothing.
    (src / "pkg" / "train.py").write_text("print('step 2')\n")
    mark = realnode.audit_line_count()
    dry = sync(realnode, pod, src, check=True)
    assert dry.rc == 0 and dry.adhoc["changed"] and dry.adhoc["action"] == "would_sync", dry.output
    assert dry.adhoc["diff"]["before"]["digest"] == out["digest"]
    in_pod(realnode, pod, "true")
    wait_for("kubectl's exec in the audit log", lambda: kubectl_exec_seen(realnode, pod, mark))
    assert module_execs(realnode, pod, mark) == []
    assert pod_writes(realnode, pod, mark) == []
    assert workspace(realnode, pod)["pkg/train.py"][1] == "print('step 1')\n"
    assert get_json(realnode, "pod", pod)["metadata"]["annotations"][ANNOTATION] == out["digest"]

    mark = realnode.audit_line_count()
    third = sync(realnode, pod, src)
    assert third.rc == 0 and third.adhoc["changed"], third.output[-3000:]
    wait_for("the digest patch in the audit log", lambda: pod_writes(realnode, pod, mark))
    assert [e["verb"] for e in pod_writes(realnode, pod, mark)] == ["patch"]
    assert third.adhoc["digest"] != out["digest"]
    assert in_pod(realnode, pod, "sh", "/workspace/run.sh") == "step 2\n"
    assert (
        get_json(realnode, "pod", pod)["metadata"]["annotations"][ANNOTATION]
        == (third.adhoc["digest"])
    )

    # The annotation does not disturb training_job: the dev pod is still unchanged for it.
    again = run_module("urm.training.training_job", devpod_args(realnode, pod))
    assert again.rc == 0 and not again.adhoc["changed"], again.output[-3000:]


def test_delete_removes_what_the_tree_dropped_and_keeps_data(
    realnode, pod: str, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    (src / "old.py").write_text("old\n")
    assert sync(realnode, pod, src).rc == 0
    in_pod(realnode, pod, "sh", "-c", "mkdir -p /workspace/data && echo keep > /workspace/data/x")
    in_pod(realnode, pod, "sh", "-c", "echo outside > /tmp/outside")
    (src / "old.py").unlink()
    result = sync(realnode, pod, src, delete=True)
    assert result.rc == 0, result.output[-3000:]
    assert result.adhoc["deleted"] == ["old.py"], result.adhoc
    tree = workspace(realnode, pod)
    assert "old.py" not in tree and tree["data/x"] == ["0o644", "keep\n"], tree
    assert in_pod(realnode, pod, "cat", "/tmp/outside") == "outside\n"


def test_a_missing_pod_is_named_with_the_way_to_start_one(realnode, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    result = sync(realnode, "rn-sync-nobody", src)
    assert result.rc != 0
    assert result.adhoc["msg"] == (
        f"no dev pod rn-sync-nobody in {realnode.namespace}; start one with training_job "
        "mode=devpod"
    )


def test_sync_yml_on_inventories_local_syncs_urm_code_dir(
    realnode, pod: str, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "code")
    (src / "pkg" / "train.py").write_text("print('from sync.yml')\n")
    extra = {"run": pod, "urm_code_dir": str(src)}
    env = {"URM_LOCALCLUSTER_STATE": realnode.env["URM_LOCALCLUSTER_STATE"]}
    with tempfile.TemporaryDirectory(prefix="urm-play-") as tmp:
        cmd = [
            str(ansible_runner.BIN / "ansible-playbook"),
            "-i",
            str(REPO / "inventories" / "local"),
            str(REPO / "playbooks" / "sync.yml"),
            "-e",
            json.dumps(extra),
        ]
        result = ansible_runner._run(cmd, ansible_runner._env(env, Path(tmp)), 300)
    assert result.rc == 0, result.output[-3000:]
    assert result.task("Sync the tree into the dev pod")["changed"] is True
    assert f"kubectl -n {realnode.namespace} exec -it {pod} -- bash" in result.output
    assert in_pod(realnode, pod, "sh", "/workspace/run.sh") == "from sync.yml\n"
    assert os.path.isdir(src)
