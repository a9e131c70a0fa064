"""podman as this VM allows it, its Docker-compatible socket, and the base images pushed at `up`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .processes import Process
from .registry import ensure_credentials
from .settings import Settings

# crun fails on this cgroup v1 hybrid host, and higher ulimits need CAP_SYS_RESOURCE.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
CERTS_D = Path("/etc/containers/certs.d")
BUSYBOX = Path("/bin/busybox")


def podman_env(settings: Settings) -> dict[str, str]:
    return dict(os.environ, CONTAINERS_CONF=str(settings.containers_conf))


def podman(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=podman_env(settings),
        check=False,
    )


def service(settings: Settings) -> Process:
    return Process("podman-service", settings.run_dir, settings.logs_dir)


def authfile(settings: Settings) -> Path:
    return settings.state_dir / "podman-auth.json"


def configure(settings: Settings) -> None:
    if shutil.which("podman") is None:
        raise SystemExit(
            "localcluster: podman is missing; install the Debian packages podman and runc"
        )
    settings.containers_conf.write_text(CONTAINERS_CONF)
    for host in (settings.registry_token, settings.registry_basic):
        target = CERTS_D / host
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.ca_cert, target / "ca.crt")


def unconfigure(settings: Settings) -> None:
    for host in (settings.registry_token, settings.registry_basic):
        shutil.rmtree(CERTS_D / host, ignore_errors=True)


def start_service(settings: Settings) -> None:
    proc = service(settings)
    settings.podman_socket.unlink(missing_ok=True)
    proc.start(
        ["podman", "system", "service", "--time=0", f"unix://{settings.podman_socket}"],
        env=podman_env(settings),
    )
    proc.wait_healthy(lambda: socket_answers(settings), timeout=30)


def socket_answers(settings: Settings) -> bool:
    if not settings.podman_socket.exists():
        return False
    result = subprocess.run(
        [
            "curl",
            "-s",
            "--max-time",
            "2",
            "--unix-socket",
            str(settings.podman_socket),
            "http://d/_ping",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "OK"


def login(settings: Settings, user: str = "lcadmin") -> None:
    password = ensure_credentials(settings)[user]
    for host in (settings.registry_token, settings.registry_basic):
        result = podman(
            settings,
            "login",
            "--authfile",
            str(authfile(settings)),
            "--username",
            user,
            "--password-stdin",
            host,
            stdin=password,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"localcluster: podman login to {host} as {user} failed: {result.stderr.strip()}"
            )
    os.chmod(authfile(settings), 0o600)


def build_busybox(settings: Settings) -> str:
    """library/busybox: FROM scratch plus Debian's busybox-static, nothing pulled."""
    if not BUSYBOX.exists():
        raise SystemExit(
            "localcluster: /bin/busybox is missing; install the Debian package busybox-static"
        )
    context = settings.state_dir / "images" / "busybox"
    rootfs = context / "rootfs"
    shutil.rmtree(context, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    for extra in ("tmp", "etc", "workspace"):
        (rootfs / extra).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["sh"]\n')
    image = f"{settings.registry_token}/library/busybox:latest"
    result = podman(settings, "build", "--quiet", "--tag", image, str(context))
    if result.returncode != 0:
        raise SystemExit(f"localcluster: building library/busybox failed:\n{result.stderr[-2000:]}")
    return image


def push(settings: Settings, image: str) -> None:
    result = podman(settings, "push", "--authfile", str(authfile(settings)), image)
    if result.returncode != 0:
        raise SystemExit(f"localcluster: pushing {image} failed:\n{result.stderr[-2000:]}")
