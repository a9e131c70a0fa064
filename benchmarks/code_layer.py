"""Benchmark: from a one-file code edit to a new image_ref, code_layer vs a full docker rebuild.

Run: .venv/bin/python benchmarks/code_layer.py [--base-mb 1000] [--tree-mb 50] [--rounds 2]
It needs a running localcluster (token registry and podman's Docker API). It creates the base
once (FROM library/busybox plus a layer of random data, built with podman and pushed to
aic-misc/bench-base) and reuses it on later runs. The source tree is made in a temp dir and
removed at the end, as are the images the docker builder left in podman's storage.

Per round, one file of the tree is edited, then:
- code_layer: the module task (ansible), appending the tree to the base inside the registry;
- docker warm: the docker_build module (podman's Docker API; FROM base + COPY tree), with the
  base already in podman's storage, as on a workstation that built it;
- docker cold: the same with the base removed from podman's storage first, as in a fresh CI
  runner or a Kaniko pod, which must pull it.
Bytes uploaded are the sizes of the blobs each run PUT into the registry (from its access log),
so they count the same way for both builders. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / ".collections")]

from ansible_collections.urm.training.plugins.module_utils._registry import (
    RegistryClient,
)
from tests.conftest import LocalCluster
from tests.integration.ansible_runner import run_module

BASE_REPO = "aic-misc/bench-base"
CODE_REPO = "aic-misc/bench-code"
DOCKER_REPO = "aic-misc/bench-docker"
PASSWORD_ENV = "URM_BENCH_REGISTRY_PASSWORD"
BENCH_LABEL = "urm.bench=code-layer"
GET_BLOB_RE = re.compile(r'"GET /v2/[^ ]+/blobs/sha256:[0-9a-f]{64} HTTP/[\d.]+" 200 (\d+)')
PUT_RE = re.compile(
    r'"PUT /v2/(?P<repo>[^ ]+)/blobs/uploads/[^ ]*digest=(?P<digest>sha256%3A[0-9a-f]{64})'
)


def podman(lc: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(lc.containers_conf)}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check)


def ensure_base(lc: LocalCluster, client: RegistryClient, authfile: Path, size_mb: int) -> str:
    tag = f"{size_mb}m"
    info = client.manifest_head(BASE_REPO, tag)
    if info.exists:
        print(f"base {BASE_REPO}:{tag} exists ({info.digest}), reused")
        return f"{lc.registry_token}/{BASE_REPO}:{tag}"
    print(f"creating the base {BASE_REPO}:{tag} ({size_mb} MiB of random data) once ...")
    with tempfile.TemporaryDirectory(prefix="urm-bench-base-") as tmp:
        with open(Path(tmp) / "random.bin", "wb") as handle:
            for _ in range(size_mb // 16):
                handle.write(os.urandom(16 * 2**20))
        (Path(tmp) / "Containerfile").write_text(
            f"FROM {lc.registry_token}/library/busybox:latest\n"
            "COPY random.bin /opt/deps/random.bin\n"
        )
        image = f"{lc.registry_token}/{BASE_REPO}:{tag}"
        started = time.monotonic()
        podman(lc, "build", "--authfile", str(authfile), "-t", image, tmp)
        podman(lc, "push", "--authfile", str(authfile), image)
        print(f"  built and pushed in {time.monotonic() - started:.0f}s")
    return f"{lc.registry_token}/{BASE_REPO}:{tag}"


def make_tree(root: Path, size_mb: int) -> None:
    """About size_mb MiB: text sources (a fifth) and binary assets, deterministic."""
    rng = random.Random(8)
    words = [f"tok{n}" for n in range(500)]
    src = root / "urm"
    for i in range(200):
        pkg = src / f"pkg{i % 10}"
        pkg.mkdir(parents=True, exist_ok=True)
        lines = (
            " ".join(rng.choices(words, k=12)) for _ in range(size_mb * 2**20 // 5 // 200 // 80)
        )
        (pkg / f"module_{i:03d}.py").write_text("\n".join(f"# {line}" for line in lines) + "\n")
    assets = src / "assets"
    assets.mkdir()
    for i in range(max(1, size_mb * 4 // 5)):
        (assets / f"asset_{i:03d}.bin").write_bytes(rng.randbytes(2**20))


def remove_local_images(lc: LocalCluster, base: str) -> None:
    """Only what this benchmark made: the labelled builds (and their cached steps), the base."""
    # A cached step cannot go before the images built on it: repeat until none is left.
    for _ in range(10):
        ids = podman(lc, "images", "-a", "-q", "--filter", f"label={BENCH_LABEL}", check=False)
        if not ids.stdout.split():
            break
        for image_id in sorted(set(ids.stdout.split())):
            podman(lc, "rmi", "-f", image_id, check=False)
    names = podman(lc, "images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    for name in names.stdout.split():
        if name.startswith(f"{lc.registry_token}/{DOCKER_REPO}:"):
            podman(lc, "rmi", "-f", name, check=False)
    podman(lc, "rmi", "-f", base, check=False)
    if podman(lc, "image", "exists", base, check=False).returncode == 0:
        raise SystemExit(f"could not remove {base} from podman's storage: the cold figure is void")


def log_since(lc: LocalCluster, offset: int) -> str:
    log = lc.credentials_file.parent / "logs" / "registry-token.log"
    with open(log, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def downloaded_bytes(lc: LocalCluster, offset: int) -> int:
    """Bytes the registry sent for blob GETs (the response size of its access log)."""
    return sum(int(m.group(1)) for m in GET_BLOB_RE.finditer(log_since(lc, offset)))


def uploaded_bytes(lc: LocalCluster, client: RegistryClient, offset: int, repos: set[str]) -> int:
    text = log_since(lc, offset)
    total = 0
    for match in PUT_RE.finditer(text):
        if match.group("repo") not in repos:
            continue
        digest = match.group("digest").replace("%3A", ":")
        resp = client.request(
            "HEAD",
            f"/v2/{match.group('repo')}/blobs/{digest}",
            scope=f"repository:{match.group('repo')}:pull",
        )
        total += int(resp.headers.get("Content-Length") or 0)
    return total


def log_size(lc: LocalCluster) -> int:
    return (lc.credentials_file.parent / "logs" / "registry-token.log").stat().st_size


def timed(fn: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-mb", type=int, default=1000)
    parser.add_argument("--tree-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lc = LocalCluster.from_env()
    password = lc.users["researcher"]
    client = RegistryClient(lc.registry_token, "researcher", password, ca_cert=str(lc.ca_cert))
    work = Path(tempfile.mkdtemp(prefix="urm-bench-code-"))
    try:
        authfile = work / "auth.json"
        subprocess.run(
            [
                *("podman", "login", "--authfile", str(authfile)),
                *("--username", "researcher", "--password-stdin", lc.registry_token),
            ],
            input=password,
            text=True,
            check=True,
            capture_output=True,
            env={**os.environ, "CONTAINERS_CONF": str(lc.containers_conf)},
        )
        base = ensure_base(lc, client, authfile, args.base_mb)
        # The docker builder pulls the base with the credential docker-py sends (X-Registry-Config).
        docker_config = work / "docker"
        docker_config.mkdir()
        auth = json.loads(authfile.read_text())
        (docker_config / "config.json").write_text(json.dumps(auth))
        ctx = work / "ctx"
        ctx.mkdir()
        make_tree(ctx, args.tree_mb)
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\nLABEL {BENCH_LABEL}\nCOPY urm/ /workspace/\nWORKDIR /workspace\n"
        )
        tree_bytes = sum(p.stat().st_size for p in (ctx / "urm").rglob("*") if p.is_file())
        env = {PASSWORD_ENV: password, "DOCKER_CONFIG": str(docker_config)}
        common = {
            "registry_username": "researcher",
            "registry_password": f"{{{{ lookup('ansible.builtin.env', '{PASSWORD_ENV}') }}}}",
            "registry_ca_cert": str(lc.ca_cert),
        }
        code_args = {
            "src": str(ctx / "urm"),
            "base": base,
            "repository": f"{lc.registry_token}/{CODE_REPO}",
            "max_size_mb": args.tree_mb * 4,
            **common,
        }
        docker_args = {
            "repository": f"{lc.registry_token}/{DOCKER_REPO}",
            "context_dir": str(ctx),
            "docker_host": lc.docker_host,
            "timeout": 3600,
            **common,
        }

        def code_layer() -> dict[str, Any]:
            run = run_module("urm.training.code_layer", code_args, env=env, timeout=1800)
            if run.rc != 0:
                raise SystemExit(run.output[-3000:])
            return run.adhoc

        def docker_build(force: bool = False) -> dict[str, Any]:
            run = run_module(
                "urm.training.docker_build",
                {**docker_args, "force": force},
                env=env,
                timeout=3600,
            )
            if run.rc != 0:
                raise SystemExit(run.output[-3000:])
            return run.adhoc

        # Warm-up: the base mounted into the code repository, the base in podman's storage.
        code_layer()
        docker_build(force=True)
        edited = ctx / "urm" / "pkg0" / "module_000.py"
        rows: dict[str, list[tuple[float, int, int]]] = {
            "code_layer": [],
            "docker warm": [],
            "docker cold": [],
        }
        for n in range(args.rounds):
            with open(edited, "a") as handle:
                handle.write(f"EDIT = {n} + {time.time_ns()}\n")
            offset = log_size(lc)
            seconds, result = timed(code_layer)
            assert result["changed"], result
            rows["code_layer"].append(
                (
                    seconds,
                    uploaded_bytes(lc, client, offset, {CODE_REPO}),
                    downloaded_bytes(lc, offset),
                )
            )
            reported = result["uploaded_bytes"]
            offset = log_size(lc)
            seconds, result = timed(docker_build)
            assert result["action"] == "built", result
            rows["docker warm"].append(
                (
                    seconds,
                    uploaded_bytes(lc, client, offset, {DOCKER_REPO}),
                    downloaded_bytes(lc, offset),
                )
            )
            # Cold: the builder has neither the base nor earlier builds (which share its layers).
            remove_local_images(lc, base)
            with open(edited, "a") as handle:
                handle.write(f"EDIT_COLD = {n} + {time.time_ns()}\n")
            offset = log_size(lc)
            seconds, result = timed(docker_build)
            assert result["action"] == "built", result
            rows["docker cold"].append(
                (
                    seconds,
                    uploaded_bytes(lc, client, offset, {DOCKER_REPO}),
                    downloaded_bytes(lc, offset),
                )
            )
            print(f"round {n + 1}: done (code_layer reported uploaded_bytes={reported})")

        print()
        print(
            f"one-file edit -> new image_ref; base {args.base_mb} MiB, tree "
            f"{tree_bytes / 2**20:.1f} MiB, {args.rounds} rounds (median)"
        )
        print(
            f"{'path':<14}{'seconds':>10}{'uploaded MiB':>15}{'downloaded MiB':>17}"
            f"{'time vs code_layer':>21}"
        )
        code_median = statistics.median(r[0] for r in rows["code_layer"])
        for name, values in rows.items():
            seconds = statistics.median(r[0] for r in values)
            sent = statistics.median(r[1] for r in values) / 2**20
            got = statistics.median(r[2] for r in values) / 2**20
            print(
                f"{name:<14}{seconds:>10.1f}{sent:>15.1f}{got:>17.1f}"
                f"{seconds / code_median:>20.1f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        remove_local_images(lc, f"{lc.registry_token}/{BASE_REPO}:{args.base_mb}m")


if __name__ == "__main__":
    main()
