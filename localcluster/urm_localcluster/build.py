"""Build the pinned upstream binaries from the Go module proxy, cached by pin."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent.parent / "go"
CACHE_ROOT = Path(
    os.environ.get("URM_LOCALCLUSTER_CACHE", Path.home() / ".cache" / "urm-localcluster")
)
BUILD_TAGS = "selinux,notest,grpcnotrace"


@dataclass(frozen=True)
class GoModule:
    """One pin module under localcluster/go and the commands built from it."""

    dirname: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: str = ""

    @property
    def moddir(self) -> Path:
        return GO_DIR / self.dirname

    def cache_key(self) -> str:
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((self.moddir / name).read_bytes())
        digest.update(f"{BUILD_TAGS}|{self.ldflags}|{sorted(self.packages.items())}".encode())
        return digest.hexdigest()[:16]

    def bindir(self) -> Path:
        return CACHE_ROOT / "bin" / f"{self.dirname}-{self.cache_key()}"


def _kubernetes_version() -> str:
    for line in (GO_DIR / "kubernetes" / "go.mod").read_text().splitlines():
        if line.startswith("require k8s.io/kubernetes "):
            return line.split()[-1]
    raise RuntimeError("localcluster/go/kubernetes/go.mod does not require k8s.io/kubernetes")


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(["-s -w", *flags])


KUBERNETES_VERSION = _kubernetes_version()
MODULES: tuple[GoModule, ...] = (
    GoModule(
        "kubernetes",
        {
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
                "kubelet",
            )
        },
        _version_ldflags(KUBERNETES_VERSION),
    ),
    GoModule("etcd", {"etcd": "go.etcd.io/etcd/server/v3"}, "-s -w"),
    GoModule(
        "kwok",
        {"kwok": "sigs.k8s.io/kwok/cmd/kwok", "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl"},
        "-s -w",
    ),
)


def module_source(dirname: str, module: str) -> Path:
    """The Go module cache dir of the pinned ``module`` (downloaded if needed)."""
    out = subprocess.run(
        ["go", "list", "-m", "-json", module],
        cwd=GO_DIR / dirname,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
    ).stdout
    return Path(json.loads(out)["Dir"])


def binary_paths() -> dict[str, Path]:
    """Where every binary lives in the cache (built or not)."""
    return {name: module.bindir() / name for module in MODULES for name in module.packages}


def missing_binaries() -> list[str]:
    return [name for name, path in binary_paths().items() if not os.access(path, os.X_OK)]


def build(log=sys.stderr) -> dict[str, Path]:
    """Build every binary whose pin changed; a warm cache costs nothing."""
    if shutil.which("go") is None:
        raise SystemExit(
            "localcluster: Go is not on PATH; install Go >= 1.26 "
            "(the pins in localcluster/go need it)"
        )
    for module in MODULES:
        bindir = module.bindir()
        todo = [name for name in module.packages if not os.access(bindir / name, os.X_OK)]
        if not todo:
            continue
        staging = bindir.with_name(bindir.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
        for name in todo:
            print(
                f"localcluster: building {name} ({module.dirname} pins, cache {bindir})",
                file=log,
                flush=True,
            )
            cmd = [
                "go",
                "build",
                "-p",
                "2",
                "-trimpath",
                "-tags",
                BUILD_TAGS,
                "-ldflags",
                module.ldflags,
                "-o",
                str(staging / name),
                module.packages[name],
            ]
            subprocess.run(cmd, cwd=module.moddir, env=env, check=True)
        bindir.mkdir(parents=True, exist_ok=True)
        for name in todo:
            os.replace(staging / name, bindir / name)
        shutil.rmtree(staging, ignore_errors=True)
    return binary_paths()


if __name__ == "__main__":
    for binary, path in build().items():
        print(f"{binary}\t{path}")
