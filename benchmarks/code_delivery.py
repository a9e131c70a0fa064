"""Benchmark: from a code edit to the training container Running on the real node, by the two
ways code reaches a run: code_from layer (code_layer appends the tree to the image in the
registry; the node pulls one new layer) and code_from git (the commit is pushed; the init
container clones it over HTTP).

Run: .venv/bin/python benchmarks/code_delivery.py [--tree-mb 50] [--rounds 3]
It uses the real-node world of localcluster/realnode-world.env, which must be up
(`env $(grep -v '^#' localcluster/realnode-world.env | xargs) localcluster/localcluster up`).
The git server is tests/integration/git_http_server.py on the pod gateway.

Per round one file of the tree is edited, then, side by side:
- layer: the code_layer module task (ansible, so about 1 s of it is Ansible starting), then a
  pod from training_job's builders with the new image_ref, timed from create to Running;
- git: `git commit` + `git push` to the local server, then the same pod with a git source,
  timed from create to Running (the init container's clone is inside that time).
The base image (library/python) stays on the node, as it does on a GPU node that ran it before.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / ".collections")]

from ansible_collections.urm.training.plugins.module_utils._training import (
    build_spec,
    workload,
)
from benchmarks.code_layer import make_tree
from tests.integration.ansible_runner import run_module
from tests.integration.git_http_server import GitHttpServer, git
from tests.realnode.conftest import _load, world_env

PASSWORD_ENV = "URM_BENCH_REGISTRY_PASSWORD"
TOKEN = "bench-git-token"


def pod_body(world: Any, secrets: dict[str, str], image: str, git_source: dict | None) -> dict:
    spec = build_spec(
        {
            "name": f"bench-code-{uuid.uuid4().hex[:6]}",
            "namespace": world.namespace,
            "image": image,
            "command": ["sleep", "60"],
            "gpus": 1,
            "gpu_type": world.accelerator,
            "cpu_per_gpu": "500m",
            "memory_per_gpu": "512Mi",
            "shm_size": "16Mi",
            "image_pull_secrets": [secrets["pull"]],
            "mode": "devpod",
            "active_deadline": 300,
            "git": git_source,
        }
    )
    body = workload(spec)
    body["spec"]["terminationGracePeriodSeconds"] = 1
    return body


def running_after(world: Any, body: dict) -> float:
    name = body["metadata"]["name"]
    world.kubectl("create", "-f", "-", stdin=json.dumps(body))
    started = time.monotonic()
    try:
        while True:
            phase = world.kubectl(
                "-n", world.namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}"
            ).stdout
            if phase == "Running":
                return time.monotonic() - started
            if phase == "Failed" or time.monotonic() - started > 300:
                raise SystemExit(f"pod {name} did not run (phase {phase!r})")
            time.sleep(0.05)
    finally:
        world.kubectl("-n", world.namespace, "delete", "pod", name, "--wait=true")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    world = _load(world_env())
    password = world.users["researcher"]
    work = Path(tempfile.mkdtemp(prefix="urm-bench-delivery-"))
    secrets = {
        "pull": f"bench-pull-{uuid.uuid4().hex[:6]}",
        "git": f"bench-git-{uuid.uuid4().hex[:6]}",
    }
    env = {PASSWORD_ENV: password, "URM_BENCH_GIT_TOKEN": TOKEN}
    common = {"kubeconfig": str(world.researcher_kubeconfig), "namespace": world.namespace}
    try:
        made = run_module(
            "urm.training.registry_secret",
            {
                **common,
                "name": secrets["pull"],
                "registry": world.registry_token,
                "username": "researcher",
                "password": f"{{{{ lookup('ansible.builtin.env', '{PASSWORD_ENV}') }}}}",
                "registry_ca_cert": str(world.ca_cert),
            },
            env=env,
        )
        assert made.rc == 0, made.output[-2000:]
        made = run_module(
            "urm.training.env_secret",
            {
                **common,
                "name": secrets["git"],
                "data": {
                    "username": "researcher",
                    "password": "{{ lookup('ansible.builtin.env', 'URM_BENCH_GIT_TOKEN') }}",
                },
            },
            env=env,
        )
        assert made.rc == 0, made.output[-2000:]
        tree = work / "tree"
        tree.mkdir()
        make_tree(tree, args.tree_mb)
        src = tree / "urm"
        git(src, "init", "-q", "-b", "main")
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", "tree")
        served = work / "srv"
        served.mkdir()
        git(served, "init", "-q", "--bare", "urm.git")
        git(src, "remote", "add", "origin", str(served / "urm.git"))
        git(src, "push", "-q", "origin", "main")
        tree_bytes = sum(
            p.stat().st_size for p in src.rglob("*") if p.is_file() and ".git" not in p.parts
        )
        layer_args = {
            "src": str(src),
            "base": world.python_image,
            "repository": f"{world.registry_token}/aic-misc/bench-delivery",
            "registry_username": "researcher",
            "registry_password": f"{{{{ lookup('ansible.builtin.env', '{PASSWORD_ENV}') }}}}",
            "registry_ca_cert": str(world.ca_cert),
            "max_size_mb": args.tree_mb * 4,
        }
        gateway = world.exports["URM_LOCALCLUSTER_POD_GATEWAY"]
        figures: dict[str, list[float]] = {
            k: [] for k in ("layer_make", "layer_pod", "git_make", "git_pod")
        }
        with GitHttpServer(served, "researcher", TOKEN, host=gateway) as server:
            # Warm the base on the node once, as a GPU node that ran the image before has it.
            running_after(world, pod_body(world, secrets, world.python_image, None))
            for round_no in range(args.rounds):
                edited = src / "pkg0" / "module_000.py"
                edited.write_text(edited.read_text() + f"# edit {round_no} {uuid.uuid4().hex}\n")

                started = time.monotonic()
                result = run_module("urm.training.code_layer", layer_args, env=env, timeout=900)
                figures["layer_make"].append(time.monotonic() - started)
                assert result.rc == 0, result.output[-2000:]
                image_ref = result.adhoc["image_ref"]
                figures["layer_pod"].append(
                    running_after(world, pod_body(world, secrets, image_ref, None))
                )

                started = time.monotonic()
                git(src, "commit", "-q", "-am", f"edit {round_no}")
                git(src, "push", "-q", "origin", "main")
                figures["git_make"].append(time.monotonic() - started)
                commit = git(src, "rev-parse", "HEAD")
                source = {
                    "repo": server.url("urm.git"),
                    "commit": commit,
                    "credentials_secret": secrets["git"],
                }
                figures["git_pod"].append(
                    running_after(world, pod_body(world, secrets, world.python_image, source))
                )
        med = {k: statistics.median(v) for k, v in figures.items()}
        layer_total = med["layer_make"] + med["layer_pod"]
        git_total = med["git_make"] + med["git_pod"]
        print(f"tree: {tree_bytes / 2**20:.1f} MiB; rounds: {args.rounds}; medians:")
        print(
            f"layer: code_layer task {med['layer_make']:.2f} s + pod create->Running "
            f"{med['layer_pod']:.2f} s = {layer_total:.2f} s"
        )
        print(
            f"git:   commit+push {med['git_make']:.2f} s + pod create->Running (clone inside) "
            f"{med['git_pod']:.2f} s = {git_total:.2f} s"
        )
        print(
            f"edit -> Running, git / layer: {git_total / layer_total:.2f}x; "
            f"pod start alone, git / layer: {med['git_pod'] / med['layer_pod']:.2f}x"
        )
    finally:
        for kind, name in (("secret", secrets["pull"]), ("secret", secrets["git"])):
            world.kubectl("-n", world.namespace, "delete", kind, name, "--ignore-not-found")
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
