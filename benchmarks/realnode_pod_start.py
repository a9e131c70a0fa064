"""Benchmark: the real node's pod start (creation to Running) and `up --real-node`.

Run: .venv/bin/python benchmarks/realnode_pod_start.py [--rounds N] [--up]
It uses the isolated real-node world of tests/realnode (state /var/tmp/urm-lc-realnode, ports
26443/25000-25002, kubelet 20250; the URM_REALNODE_* overrides apply), which must be up unless
--up is given: then it times `down` + `up --real-node` first (the binaries and the python rootfs
cached) and leaves the world up.

Pod start is the wall time from the create request's return to the first poll (every 50 ms)
that sees phase Running, for library/python pulled from the token registry with a pull Secret:
"cold" after the image was removed from containerd (a real pull each time), "warm" with the
image already on the node. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.realnode.conftest import _load, world_env

CLI = REPO / "localcluster" / "localcluster"


def kubectl(world, *args: str, stdin: str | None = None) -> str:
    return world.kubectl(*args, stdin=stdin).stdout


def pod_start(world, secret: str, image: str) -> float:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": world.namespace},
        "spec": {
            "nodeSelector": {"accelerator": world.accelerator},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "imagePullSecrets": [{"name": secret}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": ["sleep", "60"]}],
        },
    }
    kubectl(world, "create", "-f", "-", stdin=json.dumps(pod))
    started = time.monotonic()
    try:
        while True:
            phase = kubectl(
                world, "-n", world.namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}"
            )
            if phase == "Running":
                return time.monotonic() - started
            if time.monotonic() - started > 120:
                raise SystemExit(f"pod {name} not Running after 120 s (phase {phase!r})")
            time.sleep(0.05)
    finally:
        kubectl(world, "-n", world.namespace, "delete", "pod", name, "--wait=true")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--up", action="store_true", help="time down + up --real-node first")
    args = parser.parse_args()
    env = world_env()
    if args.up:
        subprocess.run([str(CLI), "down"], env=env, check=True, capture_output=True)
        started = time.monotonic()
        subprocess.run([str(CLI), "up", "--real-node"], env=env, check=True, capture_output=True)
        print(f"up --real-node (warm caches): {time.monotonic() - started:.1f} s")
    world = _load(env)
    secret = f"bench-cred-{uuid.uuid4().hex[:6]}"
    auth = base64.b64encode(f"researcher:{world.users['researcher']}".encode()).decode()
    config = {"auths": {world.registry_token: {"auth": auth}}}
    kubectl(
        world,
        "-n",
        world.namespace,
        "create",
        "secret",
        "generic",
        secret,
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-literal=.dockerconfigjson={json.dumps(config)}",
    )
    ctr = [
        "ctr",
        "--address",
        str(Path(env["URM_LOCALCLUSTER_STATE"]) / "realnode" / "containerd.sock"),
        "-n",
        "k8s.io",
    ]
    try:
        cold, warm = [], []
        for _ in range(args.rounds):
            # Every ref but the pause image's: the CRI also keeps a sha256:<id> ref per image,
            # and aic-misc copies share the layers. --sync waits for the content GC.
            rows = subprocess.run(
                [*ctr, "images", "ls"], capture_output=True, text=True, check=True
            ).stdout.splitlines()[1:]
            keep = {row.split()[2] for row in rows if "urm-pause" in row.split()[0]}
            drop = [row.split()[0] for row in rows if row.split()[2] not in keep]
            if drop:
                rm = [*ctr, "images", "rm", "--sync", *drop]
                subprocess.run(rm, check=True, capture_output=True)
            cold.append(pod_start(world, secret, world.python_image))
            warm.append(pod_start(world, secret, world.python_image))
        for label, values in (("cold (real pull, 50 MB)", cold), ("warm (image on node)", warm)):
            print(
                f"pod creation -> Running, {label}: median {statistics.median(values):.2f} s, "
                f"min {min(values):.2f}, max {max(values):.2f} (n={len(values)})"
            )
    finally:
        kubectl(world, "-n", world.namespace, "delete", "secret", secret)


if __name__ == "__main__":
    main()
