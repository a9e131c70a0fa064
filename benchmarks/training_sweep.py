"""Benchmark: a sweep of N runs in one training_job task, against N single-run module calls.

Run: .venv/bin/python benchmarks/training_sweep.py [--runs 100]
Needs the local cluster (`localcluster/localcluster up`). Each approach gets its own fresh
namespace (no quota), runs are created with wait=none, and the namespaces are deleted at the end.
Prints wall time and apiserver requests (from the audit log) for both, side by side, as ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import LocalCluster


def playbook(namespace: str, kubeconfig: Path, runs: int, sweep: bool) -> list[dict]:
    common = {
        "namespace": namespace,
        "image": "127.0.0.1:15000/library/busybox:latest",
        "command": ["/bin/true"],
        "gpus": 1,
        "gpu_type": "nvidia-h100",
        "memory_per_gpu": "2Gi",
        "shm_size": "1Gi",
        "wait": "none",
    }
    if sweep:
        task = {
            "urm.training.training_job": {
                **common,
                "runs": [{"name": f"r-{i}"} for i in range(runs)],
            }
        }
    else:
        task = {
            "urm.training.training_job": {**common, "name": "{{ item }}"},
            "loop": [f"r-{i}" for i in range(runs)],
        }
    return [
        {
            "name": "sweep benchmark",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "module_defaults": {"group/urm.training.k8s": {"kubeconfig": str(kubeconfig)}},
            "tasks": [{"name": "launch", **task}],
        }
    ]


def measure(lc: LocalCluster, runs: int, sweep: bool) -> tuple[float, int]:
    namespace = f"bench-{'sweep' if sweep else 'loop'}-{uuid.uuid4().hex[:6]}"
    lc.kubectl("create", "namespace", namespace)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "play.yml"
            path.write_text(json.dumps(playbook(namespace, lc.admin_kubeconfig, runs, sweep)))
            before = lc.audit_line_count()
            started = time.monotonic()
            subprocess.run(
                [
                    str(REPO / ".venv/bin/ansible-playbook"),
                    "-i",
                    "localhost,",
                    "-c",
                    "local",
                    str(path),
                ],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
                env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
            )
            elapsed = time.monotonic() - started
        requests = sum(
            1
            for e in lc.audit_events(before)
            if str(e.get("userAgent", "")).startswith("urm.training/")
            and e.get("stage") == "ResponseComplete"
        )
        jobs = json.loads(lc.kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout)["items"]
        assert len(jobs) == runs, f"expected {runs} Jobs, found {len(jobs)}"
        return elapsed, requests
    finally:
        lc.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    lc = LocalCluster.from_env()
    single_time, single_requests = measure(lc, 1, sweep=False)
    sweep_time, sweep_requests = measure(lc, args.runs, sweep=True)
    loop_time, loop_requests = measure(lc, args.runs, sweep=False)
    n = args.runs
    print(f"one run, one task        : {single_time:6.1f}s  {single_requests:5d} API requests")
    print(f"{n} runs, one sweep task  : {sweep_time:6.1f}s  {sweep_requests:5d} API requests")
    print(f"{n} runs, {n} module calls: {loop_time:6.1f}s  {loop_requests:5d} API requests")
    print(
        f"sweep / ({n} x one run)   : time {sweep_time / (n * single_time):.3f}, "
        f"requests {sweep_requests / (n * single_requests):.3f}"
    )
    print(
        f"sweep / loop of {n}        : time {sweep_time / loop_time:.3f}, "
        f"requests {sweep_requests / loop_requests:.3f}"
    )


if __name__ == "__main__":
    main()
