"""Real pulls, real containers, real exit codes: our modules against the real node.

Needs the isolated world of conftest.py (`localcluster up --real-node`): a kubelet v1.36.3 on
Debian's containerd, beside the KWOK nodes. Every pod here runs on that node for real.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import ansible_runner
from tests.integration.ansible_runner import REPO, RunResult, run_module

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

PW_ENV = "URM_IT_REGISTRY_PASSWORD"
PW = "{{ lookup('ansible.builtin.env', '" + PW_ENV + "') }}"
PRIVATE_REPO = "aic-misc/python-it"


@pytest.fixture(scope="module")
def private_image(realnode) -> str:
    """library/python copied to aic-misc/, which anonymous callers may not pull."""
    target = f"{realnode.registry_token}/{PRIVATE_REPO}:1"
    realnode.podman("tag", realnode.python_image, target)
    realnode.podman("push", "--authfile", str(realnode.authfile), target)
    return target


@pytest.fixture
def cleanup(realnode) -> Iterator[list[tuple[str, str]]]:
    """(kind, name) pairs in the namespace to delete afterwards."""
    objects: list[tuple[str, str]] = []
    yield objects
    for kind, name in reversed(objects):
        realnode.kubectl(
            "-n",
            realnode.namespace,
            "delete",
            kind,
            name,
            "--ignore-not-found",
            "--wait=true",
            "--cascade=foreground",
            "--timeout=60s",
            check=False,
        )


def make_secret(realnode, cleanup, password: str, *, validate: bool = True) -> str:
    name = f"rn-cred-{uuid.uuid4().hex[:6]}"
    cleanup.append(("secret", name))
    result = run_module(
        "urm.training.registry_secret",
        {
            "name": name,
            "namespace": realnode.namespace,
            "registry": realnode.registry_token,
            "username": "researcher",
            "password": PW,
            "registry_ca_cert": str(realnode.ca_cert),
            "validate": validate,
            "kubeconfig": str(realnode.researcher_kubeconfig),
        },
        env={PW_ENV: password},
    )
    assert result.rc == 0, result.output[-3000:]
    assert result.adhoc["secret_action"] == "created"
    return name


def get_json(realnode, *args: str) -> dict[str, Any]:
    out = realnode.kubectl("-n", realnode.namespace, "get", *args, "-o", "json").stdout
    return dict(json.loads(out))


def wait_for(what: str, predicate, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def job_args(realnode, name: str, image: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "namespace": realnode.namespace,
        "name": name,
        "image": image,
        "gpus": 1,
        "gpu_type": realnode.accelerator,
        "min_compute_capability": 0,
        "cpu_per_gpu": "500m",
        "memory_per_gpu": "256Mi",
        "shm_size": "16Mi",
        "wait": "complete",
        "wait_timeout": 180,
        "kubeconfig": str(realnode.researcher_nodes_kubeconfig),
    }
    args.update(kw)
    return args


def test_the_real_node_is_ready_with_fake_gpus_and_kwok_leaves_it_alone(realnode) -> None:
    node = json.loads(realnode.kubectl("get", "node", realnode.node, "-o", "json").stdout)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["metadata"]["labels"]["accelerator"] == realnode.accelerator
    assert "kwok.x-k8s.io/node" not in (node["metadata"].get("annotations") or {})
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True" and ready[0]["reason"] == "KubeletReady"


def test_a_pod_pulls_with_our_secret_runs_and_its_logs_are_read(
    realnode, cleanup, private_image
) -> None:
    secret = make_secret(realnode, cleanup, realnode.users["researcher"])
    name = f"rn-pull-{uuid.uuid4().hex[:6]}"
    cleanup.append(("pod", name))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": realnode.namespace},
        "spec": {
            "nodeSelector": {"accelerator": realnode.accelerator},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "imagePullSecrets": [{"name": secret}],
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": private_image,
                    "command": [
                        "python3",
                        "-c",
                        "import platform; print('real python', platform.python_version())",
                    ],
                }
            ],
        },
    }
    realnode.kubectl(
        "apply", "-f", "-", stdin=json.dumps(pod), kubeconfig=realnode.researcher_kubeconfig
    )
    done = wait_for(
        f"pod {name} to succeed",
        lambda: (
            (p := get_json(realnode, "pod", name))["status"].get("phase") in ("Succeeded", "Failed")
            and p
        ),
    )
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
    assert done["spec"]["nodeName"] == realnode.node
    state = done["status"]["containerStatuses"][0]
    assert state["state"]["terminated"]["exitCode"] == 0
    assert state["imageID"].startswith(f"{realnode.registry_token}/{PRIVATE_REPO}@sha256:")
    logs = realnode.kubectl(
        "-n", realnode.namespace, "logs", name, kubeconfig=realnode.researcher_kubeconfig
    ).stdout
    assert logs.startswith("real python 3.11."), logs


def test_a_wrong_credential_fails_the_pull_and_the_diagnosis_says_so(
    realnode, cleanup, private_image
) -> None:
    secret = make_secret(realnode, cleanup, "not-the-password", validate=False)
    name = f"rn-badpull-{uuid.uuid4().hex[:6]}"
    cleanup.append(("job", name))
    result = run_module(
        "urm.training.training_job",
        job_args(
            realnode,
            name,
            private_image,
            command=["python3", "-c", "print('never')"],
            image_pull_secrets=[secret],
            wait="running",
            wait_timeout=90,
        ),
    )
    assert result.rc != 0
    out = result.adhoc
    assert "cannot pull image" in out["msg"], out["msg"]
    assert out["reason"] in ("ErrImagePull", "ImagePullBackOff"), out
    pods = realnode.kubectl(
        "-n", realnode.namespace, "get", "pods", "-l", f"job-name={name}", "-o", "json"
    ).stdout
    waiting = json.loads(pods)["items"][0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff")
    # The kubelet really asked the registry and was refused, not a simulated failure: like
    # Harbor, the token server answers a bad credential with an anonymous token, which the
    # registry then refuses for this private repository.
    assert "insufficient_scope: authorization failed" in waiting["message"], waiting


TRAIN = """
import json, os, pathlib, sys, time
ckpt = pathlib.Path(os.environ["CHECKPOINT_DIR"])
state = {"step": 0, "loss": 1.0}
for step in range(1, 51):
    state = {"step": step, "loss": state["loss"] * 0.9}
(ckpt / "ckpt-final.json").write_text(json.dumps(state))
print("trained", state["step"], "steps; checkpoint in", ckpt, flush=True)
"""


def test_a_training_job_writes_a_checkpoint_to_its_pvc_and_exits_0(
    realnode, cleanup, private_image
) -> None:
    secret = make_secret(realnode, cleanup, realnode.users["researcher"])
    name = f"rn-train-{uuid.uuid4().hex[:6]}"
    # Cleanup runs in reverse: the Job (and its pod) first, then the claim it holds.
    cleanup.append(("pvc", f"{name}-checkpoints"))
    cleanup.append(("job", name))
    result = run_module(
        "urm.training.training_job",
        job_args(
            realnode,
            name,
            private_image,
            command=["python3", "-c", TRAIN],
            env={"CHECKPOINT_DIR": "/checkpoints"},
            image_pull_secrets=[secret],
            volumes=[
                {
                    "name": "checkpoints",
                    "mount_path": "/checkpoints",
                    "storage_class": "rook-ceph-fs",
                    "size": "1Gi",
                }
            ],
        ),
    )
    assert result.rc == 0, result.output[-3000:]
    out = result.adhoc
    assert out["phase"] == "Succeeded" and out["nodes"] == [realnode.node], out
    pod = json.loads(
        realnode.kubectl(
            "-n", realnode.namespace, "get", "pods", "-l", f"job-name={name}", "-o", "json"
        ).stdout
    )["items"][0]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    logs = realnode.kubectl("-n", realnode.namespace, "logs", pod["metadata"]["name"]).stdout
    assert "trained 50 steps" in logs
    # The checkpoint is on the volume behind the claim, on the node's disk.
    pvc = get_json(realnode, "pvc", f"{name}-checkpoints")
    pv = json.loads(realnode.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    checkpoint = Path(pv["spec"]["hostPath"]["path"]) / "ckpt-final.json"
    assert json.loads(checkpoint.read_text())["step"] == 50
    checkpoint.unlink()
    # The pre-made PVs are Retain: once the Job and the claim are gone, make the volume
    # Available again, so a reused world does not run out of them.
    for kind, target in (("job", name), ("pvc", f"{name}-checkpoints")):
        realnode.kubectl(
            "-n", realnode.namespace, "delete", kind, target, "--cascade=foreground", "--wait=true"
        )
    realnode.kubectl(
        "patch",
        "pv",
        pv["metadata"]["name"],
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/claimRef"}]',
    )


def test_a_tiny_memory_limit_ends_in_oomkilled_and_the_diagnosis_says_so(
    realnode, cleanup, private_image
) -> None:
    secret = make_secret(realnode, cleanup, realnode.users["researcher"])
    name = f"rn-oom-{uuid.uuid4().hex[:6]}"
    cleanup.append(("job", name))
    hog = "blocks = [bytearray(16 * 2**20) for _ in range(64)]; print('survived')"
    result = run_module(
        "urm.training.training_job",
        job_args(
            realnode,
            name,
            private_image,
            command=["python3", "-c", hog],
            image_pull_secrets=[secret],
            memory_per_gpu="64Mi",
            shm_size="1Mi",
        ),
    )
    assert result.rc != 0
    out = result.adhoc
    assert "ran out of memory and was killed (OOMKilled" in out["msg"], out["msg"]
    assert out["phase"] == "Failed" and out["reason"] == "OOMKilled", out
    pod = json.loads(
        realnode.kubectl(
            "-n", realnode.namespace, "get", "pods", "-l", f"job-name={name}", "-o", "json"
        ).stdout
    )["items"][0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137


def train_yml(env: dict[str, str], extra: dict[str, Any]) -> RunResult:
    """ansible-playbook train.yml -i inventories/local, as a user runs it (run_playbook writes
    its own localhost inventory, which lacks inventories/local's group_vars)."""
    with tempfile.TemporaryDirectory(prefix="urm-play-") as tmp:
        cmd = [
            str(ansible_runner.BIN / "ansible-playbook"),
            "-i",
            str(REPO / "inventories" / "local"),
            str(REPO / "train.yml"),
            "-e",
            json.dumps(extra),
        ]
        return ansible_runner._run(cmd, ansible_runner._env(env, Path(tmp)), 300)


def test_train_yml_runs_on_the_real_node_and_a_rerun_changes_nothing(realnode, cleanup) -> None:
    """The `default` Molecule scenario's play (train.yml on inventories/local), pointed at this
    world and sized for the real node: docker_build through podman, push, pull with the Secret,
    a real container that writes its checkpoint to the PVC."""
    name = f"rn-flow-{uuid.uuid4().hex[:6]}"
    cleanup.append(("pvc", f"{name}-checkpoints"))
    cleanup.append(("job", name))
    # inventories/local takes the registry port (and so the trainer's base image) from the env.
    extra = {
        "urm_image_context": str(REPO / "image" / "local-trainer"),
        "urm_localcluster_kubeconfig": "kubeconfig-researcher-nodes.yaml",
        "urm_run_name": name,
        "urm_gpu_type": realnode.accelerator,
        "urm_gpus": 1,
        "urm_memory_per_gpu": "256Mi",
        "urm_shm_size": "16Mi",
        "urm_checkpoint_size": "1Gi",
        "training_launch_cpu_per_gpu": "500m",
        "training_launch_min_compute_capability": 0,
    }
    env = {
        key: realnode.env[key]
        for key in ("URM_LOCALCLUSTER_STATE", "URM_LOCALCLUSTER_REGISTRY_TOKEN_PORT")
    }
    first = train_yml(env, extra)
    assert first.rc == 0, first.output[-3000:]
    assert f"run {name}: created, phase Succeeded on {realnode.node}" in first.output
    logs = realnode.kubectl("-n", realnode.namespace, "logs", f"job/{name}").stdout
    assert "training" in logs and logs.rstrip().endswith("done"), logs
    pvc = get_json(realnode, "pvc", f"{name}-checkpoints")
    pv = json.loads(realnode.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    checkpoint = Path(pv["spec"]["hostPath"]["path"]) / "last.ckpt"
    assert checkpoint.read_text().strip() == "step=100"
    second = train_yml(env, extra)
    assert second.rc == 0, second.output[-3000:]
    assert "changed=0" in second.output, second.output[-2000:]
    checkpoint.unlink()
