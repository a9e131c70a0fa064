"""localcluster up | down | status | env"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

from . import build, kube, podman, realnode, registry
from .pki import ensure_pki
from .processes import ComponentFailed, pid_alive, port_is_free
from .settings import NAMESPACE, Settings

# command -> Debian package that provides it
PREREQUISITES = {
    "podman": "podman",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "busybox": "busybox-static",
    "curl": "curl",
}


def _say(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def check_prerequisites() -> None:
    missing = {cmd: pkg for cmd, pkg in PREREQUISITES.items() if shutil.which(cmd) is None}
    if shutil.which("go") is None:
        raise SystemExit(
            "localcluster: Go is not on PATH; install Go >= 1.26 (localcluster/go pins need it)"
        )
    if missing:
        names = ", ".join(f"{cmd} (Debian package {pkg})" for cmd, pkg in missing.items())
        raise SystemExit(
            f"localcluster: missing commands: {names}; run: apt-get install -y "
            + " ".join(sorted(set(missing.values())))
        )


def health(settings: Settings) -> dict[str, bool]:
    status = kube.healthy(settings)
    status.update(registry.health(settings))
    status["podman-service"] = podman.socket_answers(settings)
    if realnode.is_configured(settings):
        status.update(realnode.health(settings))
    return status


def _stop_everything(settings: Settings) -> None:
    # The real node's pods go first, while the apiserver can still tell the kubelet to stop them.
    if realnode.is_configured(settings):
        realnode.stop_pods(settings)
        realnode.stop(settings)
    kube.delete(settings)
    registry.stop(settings)
    podman.service(settings).stop()
    podman.unconfigure(settings)


def up(settings: Settings) -> int:
    started = time.monotonic()
    check_prerequisites()
    if settings.real_node:
        realnode.ensure_prerequisites()
    build.build()
    if settings.ready_marker.exists():
        status = health(settings)
        if settings.real_node and not realnode.is_configured(settings):
            raise SystemExit(
                f"localcluster: the world in {settings.state_dir} runs without a real node; "
                "run `localcluster down` first (with the same environment) to recreate it with one"
            )
        if all(status.values()):
            _say(f"already up and healthy; nothing to do ({time.monotonic() - started:.1f}s)")
            return 0
        broken = ", ".join(name for name, ok in status.items() if not ok)
        _say(
            f"found a stale cluster in {settings.state_dir} ({broken} not healthy); cleaning it up"
        )
        down(settings)
    elif settings.state_dir.exists():
        _say(f"found leftover state from an unfinished run in {settings.state_dir}; cleaning it up")
        down(settings)

    ports = {
        "kube-apiserver": settings.apiserver_port,
        "registry (token auth)": settings.registry_token_port,
        "registry (basic auth)": settings.registry_basic_port,
        "token server": settings.token_server_port,
    }
    taken = [f"{port} ({name})" for name, port in ports.items() if not port_is_free(port)]
    if taken:
        raise SystemExit(
            f"localcluster: already in use on 127.0.0.1: port {', port '.join(taken)}; stop "
            "whatever holds it or choose another with "
            "URM_LOCALCLUSTER_<APISERVER|REGISTRY_TOKEN|REGISTRY_BASIC|TOKEN_SERVER>_PORT"
        )

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        ensure_pki(settings.pki_dir)
        registry.ensure_credentials(settings)
        _say(
            "starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
        )
        kube.create(settings)
        kube.populate(settings)
        _say("starting the registries and the token server")
        registry.start(settings)
        _say("configuring podman and its Docker-compatible socket")
        podman.configure(settings)
        podman.start_service(settings)
        podman.login(settings)
        _say("building and pushing library/busybox")
        podman.push(settings, podman.build_busybox(settings))
        if settings.real_node:
            realnode.start(settings)
            _say("real node: building and pushing library/python")
            podman.push(settings, realnode.build_python(settings))
    except (ComponentFailed, SystemExit, Exception) as error:
        _say("up failed; stopping what it started (logs stay in " + str(settings.logs_dir) + ")")
        kube_logs = settings.kwok_cluster_dir / "logs"
        if kube_logs.exists():
            shutil.copytree(kube_logs, settings.logs_dir / "kube", dirs_exist_ok=True)
        _stop_everything(settings)
        if isinstance(error, SystemExit):
            raise
        raise SystemExit(f"localcluster: up failed: {error}") from error
    settings.ready_marker.write_text(f"{time.time()}\n")
    _say(
        f"up in {time.monotonic() - started:.1f}s; "
        "run `localcluster/localcluster env` for the exports"
    )
    return 0


def down(settings: Settings) -> int:
    started = time.monotonic()
    _stop_everything(settings)
    pids = kube.component_pids(settings)
    pids.update({name: proc.pid() for name, proc in realnode.processes(settings).items()})
    leftovers = [
        f"{name} (pid {pid})" for name, pid in pids.items() if pid is not None and pid_alive(pid)
    ]
    if leftovers:
        raise SystemExit(f"localcluster: these components did not stop: {', '.join(leftovers)}")
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    _say(f"down in {time.monotonic() - started:.1f}s")
    return 0


def status(settings: Settings, as_json: bool) -> int:
    state = health(settings) if settings.state_dir.exists() else {}
    pids = kube.component_pids(settings)
    pids.update({name: proc.pid() for name, proc in registry.processes(settings).items()})
    pids["podman-service"] = podman.service(settings).pid()
    if realnode.is_configured(settings):
        pids.update({name: proc.pid() for name, proc in realnode.processes(settings).items()})
    ok = bool(state) and all(state.values()) and settings.ready_marker.exists()
    if as_json:
        print(json.dumps({"healthy": ok, "checks": state, "pids": pids}, indent=2))
    else:
        if not state:
            print(f"localcluster is down (no state in {settings.state_dir})")
        for name, pid in sorted(pids.items()):
            alive = "running" if pid and pid_alive(pid) else "stopped"
            print(f"{name:28} pid {pid!s:8} {alive}")
        for name, good in state.items():
            print(f"{name:28} {'healthy' if good else 'UNHEALTHY'}")
        print("overall: " + ("healthy" if ok else "not healthy"))
    return 0 if ok else 1


def env(settings: Settings) -> int:
    exports = {
        "KUBECONFIG": settings.admin_kubeconfig,
        "URM_LOCALCLUSTER_KUBECONFIG_ADMIN": settings.admin_kubeconfig,
        "URM_LOCALCLUSTER_KUBECONFIG_RESEARCHER": settings.researcher_kubeconfig,
        "URM_LOCALCLUSTER_KUBECONFIG_RESEARCHER_NODES": kube.researcher_nodes_kubeconfig(settings),
        "URM_LOCALCLUSTER_NAMESPACE": NAMESPACE,
        "URM_LOCALCLUSTER_REGISTRY": settings.registry_token,
        "URM_LOCALCLUSTER_REGISTRY_BASIC": settings.registry_basic,
        "URM_LOCALCLUSTER_TOKEN_REALM": settings.token_realm,
        "URM_LOCALCLUSTER_CA_CERT": settings.ca_cert,
        "URM_LOCALCLUSTER_CREDENTIALS": settings.credentials_file,
        "URM_LOCALCLUSTER_AUDIT_LOG": settings.audit_log,
        "DOCKER_HOST": f"unix://{settings.podman_socket}",
        "CONTAINERS_CONF": settings.containers_conf,
        "PATH": f"{build.binary_paths()['kubectl'].parent}:$PATH",
    }
    if realnode.is_configured(settings):
        exports["URM_LOCALCLUSTER_REAL_NODE_NAME"] = realnode.NODE_NAME
        exports["URM_LOCALCLUSTER_REAL_NODE_ACCELERATOR"] = realnode.ACCELERATOR
        exports["URM_LOCALCLUSTER_PYTHON_IMAGE"] = realnode.python_image(settings)
        exports["URM_LOCALCLUSTER_POD_GATEWAY"] = realnode.pod_gateway(settings)
    for key, value in exports.items():
        quoted = f'"{value}"' if key == "PATH" else f"'{value}'"
        print(f"export {key}={quoted}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser(
        "up", help="build what is missing and start the local world (idempotent)"
    )
    up_parser.add_argument(
        "--real-node",
        action="store_true",
        help="also run a real kubelet + containerd node (or URM_LOCALCLUSTER_REAL_NODE=1)",
    )
    sub.add_parser("down", help="stop every process started by up and remove the state")
    status_parser = sub.add_parser("status", help="show each component and its health")
    status_parser.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print shell exports for the running world")
    sub.add_parser("build", help="only build the pinned binaries")
    sub.add_parser(
        "kubectl", help="run the pinned kubectl with the admin kubeconfig: kubectl ARGS..."
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kubectl"]:
        settings = Settings.load()
        binary = str(build.binary_paths()["kubectl"])
        os.execv(binary, [binary, "--kubeconfig", str(settings.admin_kubeconfig), *argv[1:]])
    args = parser.parse_args(argv)
    settings = Settings.load()
    if args.command == "up":
        if args.real_node:
            settings = dataclasses.replace(settings, real_node=True)
        sys.exit(up(settings))
    if args.command == "down":
        sys.exit(down(settings))
    if args.command == "status":
        sys.exit(status(settings, args.json))
    if args.command == "env":
        sys.exit(env(settings))
    if args.command == "build":
        for name, path in build.build().items():
            print(f"{name}\t{path}")
