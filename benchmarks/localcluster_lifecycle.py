"""Benchmark: warm `localcluster up`, `down`, and the control plane's memory.

Run: .venv/bin/python benchmarks/localcluster_lifecycle.py [--rounds N]
It needs the binaries already built (a warm cache), and leaves the world in the
state it found it (up or down). Figures are printed, not asserted: the target
for a warm up is <= 20 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = Path(__file__).resolve().parent.parent / "localcluster" / "localcluster"
CONTROL_PLANE = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok-controller",
)


def run(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([str(CLI), *args], check=True, capture_output=True, text=True)
    return time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    was_up = subprocess.run([str(CLI), "status"], capture_output=True).returncode == 0
    if was_up:
        run("down")
    ups, downs, rss_totals = [], [], []
    per_component: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        ups.append(run("up"))
        time.sleep(5)  # let the controllers settle before reading memory
        status = json.loads(
            subprocess.run([str(CLI), "status", "--json"], capture_output=True, text=True).stdout
        )
        total = 0.0
        for name, pid in status["pids"].items():
            if pid:
                mib = rss_mib(pid)
                per_component.setdefault(name, []).append(mib)
                if name in CONTROL_PLANE:
                    total += mib
        rss_totals.append(total)
        downs.append(run("down"))
    if was_up:
        run("up")
    print(f"rounds: {args.rounds}")
    print(
        f"warm up   : median {statistics.median(ups):.1f}s  "
        f"(all: {', '.join(f'{u:.1f}' for u in ups)})  target <= 20s"
    )
    print(
        f"down      : median {statistics.median(downs):.1f}s  "
        f"(all: {', '.join(f'{d:.1f}' for d in downs)})"
    )
    print(
        f"control plane RSS (etcd + apiserver + controller-manager + scheduler + kwok): "
        f"median {statistics.median(rss_totals):.0f} MiB"
    )
    for name, values in sorted(per_component.items()):
        print(f"  {name:26} {statistics.median(values):7.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
