"""An opt-in real node: upstream kubelet on Debian's containerd + runc + CNI plugins.

Everything it owns lives under ``<state>/realnode`` (containerd root/state/socket, kubelet root
dir, CNI config and IPAM data, pod logs), except what the kernel or the tools keep globally: the
CNI bridge (one per world, named after the apiserver port), the netns files containerd makes in
/var/run/netns, the kubelet's symlinks in /var/log/containers, and the kernel tunables the kubelet
insists on (saved at start and restored at stop).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import build, kube
from .pki import write_private
from .processes import ComponentFailed, Process, log_tail, port_is_free
from .settings import Settings

NODE_NAME = "real-0"
ACCELERATOR = "real-cpu"
FAKE_GPUS = 2
GPU = "nvidia.com/gpu"
PAUSE_TAG = "3.10.2"
PAUSE_IMAGE = f"localhost/urm-pause:{PAUSE_TAG}"
CNI_BIN_DIR = Path("/usr/lib/cni")
PYTHON_SUITE = "bookworm"
# python3-minimal alone lacks most of the standard library (json, for one): take python3.
# git (and ssh, for ssh remotes) let the same image fetch code in an init container
# (training_job's git source).
PYTHON_PACKAGES = ("python3", "git", "openssh-client")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
NODE_LABELS = {
    "accelerator": ACCELERATOR,
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "CPU-standing-in-for-a-GPU",
    "urm-localcluster/real-node": "true",
}
# The kubelet sets these at start (KernelTunableModify); we put the old values back at stop.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)

# what must exist -> Debian package that provides it
PREREQUISITES = {
    "/usr/bin/containerd": "containerd",
    "/usr/bin/ctr": "containerd",
    "/usr/sbin/runc": "runc",
    str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
    str(CNI_BIN_DIR / "host-local"): "containernetworking-plugins",
    str(CNI_BIN_DIR / "loopback"): "containernetworking-plugins",
    "/usr/bin/gcc": "gcc",
    "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
    "/usr/sbin/debootstrap": "debootstrap",
    "/usr/sbin/ip": "iproute2",
}


def _say(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def missing_packages() -> list[str]:
    return sorted({pkg for path, pkg in PREREQUISITES.items() if not os.path.exists(path)})


def ensure_prerequisites() -> None:
    """Install what is missing with apt-get (we run as root); name the packages otherwise."""
    missing = missing_packages()
    if not missing:
        return
    _say(f"real node: installing Debian packages {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    result = subprocess.run(install, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False, env=env)
        result = subprocess.run(install, capture_output=True, text=True, check=False, env=env)
    still = missing_packages()
    if result.returncode != 0 or still:
        raise SystemExit(
            "localcluster: the real node needs the Debian packages "
            + " ".join(still or missing)
            + "; apt-get install failed:\n"
            + result.stderr[-1500:]
            + "\nrun: apt-get update && apt-get install -y "
            + " ".join(still or missing)
        )


# --- layout -------------------------------------------------------------------------------------


class Layout:
    def __init__(self, settings: Settings) -> None:
        root = settings.realnode_dir
        self.root = root
        self.containerd_root = root / "containerd" / "root"
        self.containerd_state = root / "containerd" / "state"
        self.containerd_config = root / "containerd" / "config.toml"
        self.certs_d = root / "containerd" / "certs.d"
        self.socket = root / "containerd.sock"
        self.cni_conf_dir = root / "cni" / "net.d"
        self.cni_data_dir = root / "cni" / "ipam"
        self.kubelet_root = root / "kubelet"
        self.kubelet_config = root / "kubelet-config.yaml"
        self.kubelet_kubeconfig = root / "kubeconfig-kubelet.yaml"
        self.pod_logs = root / "pod-logs"
        self.pki = root / "pki"
        self.images = root / "images"
        self.tunables = root / "kernel-tunables.json"
        self.volumes = root / "volumes"


def bridge_name(settings: Settings) -> str:
    return f"urm{settings.apiserver_port}"[:15]


def pod_subnet(settings: Settings) -> str:
    return f"10.233.{settings.apiserver_port % 250}.0/24"


def pod_gateway(settings: Settings) -> str:
    """The bridge's own address: pods reach the host here, and nothing outside the host does."""
    return f"10.233.{settings.apiserver_port % 250}.1"


def create_bridge(settings: Settings) -> None:
    """Make the CNI bridge and its gateway address now, not at the first pod, so a server on the
    host (a test's git server) can listen on the gateway before any pod exists. The bridge
    plugin adopts an existing bridge that already has the gateway address."""
    name = bridge_name(settings)
    if subprocess.run(["ip", "link", "show", name], capture_output=True).returncode != 0:
        _ip("link", "add", "name", name, "type", "bridge")
    addresses = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", name], capture_output=True, text=True
    ).stdout
    if f" {pod_gateway(settings)}/" not in addresses:
        _ip("addr", "add", f"{pod_gateway(settings)}/24", "dev", name)
    _ip("link", "set", name, "up")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ComponentFailed(f"localcluster: ip {' '.join(args)} failed: {result.stderr.strip()}")


def processes(settings: Settings) -> dict[str, Process]:
    return {
        name: Process(name, settings.run_dir, settings.logs_dir)
        for name in ("containerd", "kubelet")
    }


def is_configured(settings: Settings) -> bool:
    return settings.realnode_dir.exists()


# --- containerd ---------------------------------------------------------------------------------


def _containerd_config(settings: Settings, lay: Layout) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{lay.containerd_root}"
state = "{lay.containerd_state}"

[grpc]
  address = "{lay.socket}"

[ttrpc]
  address = "{lay.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{lay.root / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj below containerd's own, so keep
  # every container's score at or above it.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{lay.cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{lay.certs_d}"
"""


def _hosts_toml(host: str, ca: Path) -> str:
    return f"""\
server = "https://{host}"

[host."https://{host}"]
  capabilities = ["pull", "resolve"]
  ca = "{ca}"
"""


def _cni_config(settings: Settings, lay: Layout) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": f"urm-localcluster-{settings.apiserver_port}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge_name(settings),
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": pod_subnet(settings)}]],
                        "dataDir": str(lay.cni_data_dir),
                    },
                }
            ],
        },
        indent=2,
    )


def ctr(lay: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ctr", "--address", str(lay.socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise ComponentFailed(
            f"localcluster: ctr {' '.join(args)} failed: {result.stderr.strip()[-1500:]}"
        )
    return result


def _containerd_answers(lay: Layout) -> bool:
    if not lay.socket.exists():
        return False
    return ctr(lay, "version", check=False).returncode == 0


def start_containerd(settings: Settings, lay: Layout) -> None:
    for path in (lay.containerd_root, lay.containerd_state, lay.cni_conf_dir, lay.cni_data_dir):
        path.mkdir(parents=True, exist_ok=True)
    lay.containerd_config.write_text(_containerd_config(settings, lay))
    for host in (settings.registry_token, settings.registry_basic):
        target = lay.certs_d / host
        target.mkdir(parents=True, exist_ok=True)
        (target / "hosts.toml").write_text(_hosts_toml(host, settings.ca_cert))
    (lay.cni_conf_dir / "10-urm-bridge.conflist").write_text(_cni_config(settings, lay))
    create_bridge(settings)
    proc = processes(settings)["containerd"]
    proc.start(["containerd", "--config", str(lay.containerd_config)])
    proc.wait_healthy(lambda: _containerd_answers(lay), timeout=30)


# --- images -------------------------------------------------------------------------------------


def _pause_source() -> Path:
    source = build.module_source("kubernetes", "k8s.io/kubernetes")
    return source / "build" / "pause" / "linux" / "pause.c"


def build_pause(settings: Settings, lay: Layout) -> Path:
    """A static pause from the pinned kubernetes module, FROM scratch, saved for ctr import."""
    from .podman import podman

    context = lay.images / "pause"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    version = f"v{PAUSE_TAG}-{build.KUBERNETES_VERSION}"
    subprocess.run(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION={version}",
            "-o",
            str(context / "pause"),
            str(_pause_source()),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run(["strip", str(context / "pause")], check=False, capture_output=True)
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
    )
    result = podman(settings, "build", "--quiet", "--tag", PAUSE_IMAGE, str(context))
    if result.returncode != 0:
        raise ComponentFailed(f"localcluster: building the pause image failed:\n{result.stderr}")
    archive = lay.images / "pause.tar"
    archive.unlink(missing_ok=True)
    result = podman(settings, "save", "--output", str(archive), PAUSE_IMAGE)
    if result.returncode != 0:
        raise ComponentFailed(f"localcluster: podman save {PAUSE_IMAGE} failed:\n{result.stderr}")
    return archive


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below root, deepest first (debootstrap leaves /proc
    mounted when it fails; the kubelet leaves tmpfs volumes when it is killed)."""
    for point in reversed(_mounts_under(root)):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(path: Path) -> None:
    unmount_under(path)
    if not _mounts_under(path):
        shutil.rmtree(path, ignore_errors=True)


def python_rootfs() -> Path:
    """debootstrap minbase + PYTHON_PACKAGES, cached as a tarball keyed by suite and packages."""
    key = hashlib.sha256(
        f"{PYTHON_SUITE}|minbase|{','.join(sorted(PYTHON_PACKAGES))}|{DEBIAN_MIRROR}".encode()
    ).hexdigest()[:16]
    tarball = build.CACHE_ROOT / "rootfs" / f"python-{PYTHON_SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = tarball.with_name(tarball.name + ".partial")
    _remove_tree(work)
    work.mkdir()
    _say(f"real node: debootstrap {PYTHON_SUITE} with {' '.join(PYTHON_PACKAGES)} (about 45 s)")
    result = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PYTHON_PACKAGES)}",
            PYTHON_SUITE,
            str(work / "rootfs"),
            DEBIAN_MIRROR,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        _remove_tree(work)
        raise ComponentFailed(
            f"localcluster: debootstrap failed (exit {result.returncode}):\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    # Trim what a container does not need: apt lists and caches, docs, man pages.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        target = work / "rootfs" / junk
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    partial = work / "rootfs.tar"
    subprocess.run(
        ["tar", "--numeric-owner", "-C", str(work / "rootfs"), "-cf", str(partial), "."],
        check=True,
    )
    os.replace(partial, tarball)
    _remove_tree(work)
    return tarball


def python_image(settings: Settings) -> str:
    return f"{settings.registry_token}/library/python:3-{PYTHON_SUITE}"


def build_python(settings: Settings) -> str:
    """library/python: the cached rootfs imported with podman, pushed to the token registry."""
    from .podman import podman

    image = python_image(settings)
    result = podman(
        settings,
        "import",
        "--change",
        'CMD ["python3"]',
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        str(python_rootfs()),
        image,
    )
    if result.returncode != 0:
        raise ComponentFailed(
            f"localcluster: podman import of the python rootfs failed:\n{result.stderr}"
        )
    return image


# --- kubelet ------------------------------------------------------------------------------------


def _node_credentials(settings: Settings, lay: Layout) -> tuple[Path, Path]:
    """A client certificate for system:node:<name> signed by kwokctl's cluster CA."""
    pki = settings.kwok_cluster_dir / "pki"
    with warnings.catch_warnings():
        # kwokctl's CA has a serial number that cryptography warns about; it still loads.
        warnings.simplefilter("ignore")
        ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{NODE_NAME}"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    lay.pki.mkdir(parents=True, exist_ok=True)
    crt, keyfile = lay.pki / "kubelet-client.crt", lay.pki / "kubelet-client.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        keyfile,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return crt, keyfile


def _kubelet_kubeconfig(settings: Settings, lay: Layout) -> None:
    crt, key = _node_credentials(settings, lay)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localcluster",
                "cluster": {
                    "server": f"https://127.0.0.1:{settings.apiserver_port}",
                    "certificate-authority": str(settings.kwok_cluster_dir / "pki" / "ca.crt"),
                },
            }
        ],
        "users": [
            {"name": "kubelet", "user": {"client-certificate": str(crt), "client-key": str(key)}}
        ],
        "contexts": [
            {"name": "kubelet", "context": {"cluster": "localcluster", "user": "kubelet"}}
        ],
        "current-context": "kubelet",
    }
    write_private(lay.kubelet_kubeconfig, json.dumps(config, indent=2))


def node_ip() -> str:
    """The address of the default route's interface: the kubelet refuses a loopback node IP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # TEST-NET-2: no packet is sent
        except OSError as error:
            raise SystemExit(
                "localcluster: the real node needs a non-loopback IPv4 address (the kubelet "
                f"refuses 127.0.0.1 as node IP) and this machine has no default route: {error}"
            ) from error
        return str(sock.getsockname()[0])


def _kubelet_config(settings: Settings, lay: Layout, node_ip: str) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": settings.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": settings.kubelet_healthz_port,
        "containerRuntimeEndpoint": f"unix://{lay.socket}",
        # This VM: cgroup v1 (hybrid), no systemd as init, no swap, no CAP_SYS_RESOURCE.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "protectKernelDefaults": False,
        # The apiserver reaches the kubelet (logs, exec) with kwokctl's admin client certificate
        # (--kubelet-client-certificate, see kube.create); everyone else is checked by webhook.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(settings.kwok_cluster_dir / "pki" / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(lay.pod_logs),
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        # A developer disk is often fuller than a node's: do not evict for it.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "registerWithTaints": [{"key": GPU, "value": "present", "effect": "NoSchedule"}],
        "maxPods": 20,
    }
    return json.dumps(config, indent=2)


def node_json(settings: Settings) -> dict | None:
    out = kube.kubectl(settings, "get", "node", NODE_NAME, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def node_ready(settings: Settings) -> bool:
    node = node_json(settings)
    if not node:
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def _gpus_advertised(settings: Settings) -> bool:
    node = node_json(settings)
    return bool(node) and node["status"].get("allocatable", {}).get(GPU) == str(FAKE_GPUS)


def advertise_gpus(settings: Settings) -> None:
    """The documented way to advertise an extended resource: a status patch of capacity."""
    patch = [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": str(FAKE_GPUS)}]
    kube.kubectl(
        settings,
        "patch",
        "node",
        NODE_NAME,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps(patch),
    )


def _save_tunables(lay: Layout) -> None:
    if lay.tunables.exists():
        return
    values = {}
    for name in KERNEL_TUNABLES:
        try:
            values[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            continue
    lay.tunables.write_text(json.dumps(values, indent=2))


def _restore_tunables(lay: Layout) -> None:
    if not lay.tunables.exists():
        return
    for name, value in json.loads(lay.tunables.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", name).write_text(value + "\n")


def start_kubelet(settings: Settings, lay: Layout) -> None:
    for port in (settings.kubelet_port, settings.kubelet_healthz_port):
        if not port_is_free(port):
            raise SystemExit(
                f"localcluster: port {port} (kubelet) is in use on 127.0.0.1; choose others with "
                "URM_LOCALCLUSTER_KUBELET_PORT and URM_LOCALCLUSTER_KUBELET_HEALTHZ_PORT"
            )
    lay.kubelet_root.mkdir(parents=True, exist_ok=True)
    lay.pod_logs.mkdir(parents=True, exist_ok=True)
    _kubelet_kubeconfig(settings, lay)
    address = node_ip()
    lay.kubelet_config.write_text(_kubelet_config(settings, lay, address))
    _save_tunables(lay)
    labels = ",".join(f"{k}={v}" for k, v in NODE_LABELS.items())
    proc = processes(settings)["kubelet"]
    proc.start(
        [
            str(build.binary_paths()["kubelet"]),
            f"--config={lay.kubelet_config}",
            f"--kubeconfig={lay.kubelet_kubeconfig}",
            f"--root-dir={lay.kubelet_root}",
            f"--cert-dir={lay.pki}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={address}",
            f"--node-labels={labels}",
            "--v=2",
        ]
    )
    proc.wait_healthy(lambda: node_ready(settings), timeout=90)


# --- up / down / health -------------------------------------------------------------------------


def start(settings: Settings) -> None:
    lay = Layout(settings)
    lay.root.mkdir(parents=True, exist_ok=True)
    _say("real node: building the pause image from the kubernetes module's pause.c")
    archive = build_pause(settings, lay)
    _say("real node: starting containerd")
    start_containerd(settings, lay)
    ctr(lay, "images", "import", str(archive))
    _say(f"real node: starting the kubelet as node {NODE_NAME}")
    start_kubelet(settings, lay)
    advertise_gpus(settings)
    kube._wait(f"{GPU}={FAKE_GPUS} on node {NODE_NAME}", lambda: _gpus_advertised(settings))


def health(settings: Settings) -> dict[str, bool]:
    lay = Layout(settings)
    procs = processes(settings)
    return {
        "containerd": procs["containerd"].alive() and _containerd_answers(lay),
        "kubelet": procs["kubelet"].alive(),
        "real-node-ready": node_ready(settings) and _gpus_advertised(settings),
    }


def _mounts_under(root: Path) -> list[str]:
    found = []
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                point = line.split()[4].replace("\\040", " ")
                if point == str(root) or point.startswith(str(root) + "/"):
                    found.append(point)
    except OSError:
        pass
    return found


def _tasks(lay: Layout) -> list[str]:
    out = ctr(lay, "tasks", "ls", "-q", check=False)
    return out.stdout.split() if out.returncode == 0 else []


def stop_pods(settings: Settings, timeout: float = 45.0) -> None:
    """Before the control plane goes: delete the node's pods so the kubelet tears them down
    properly (CNI teardown, netns, volume unmounts)."""
    if not processes(settings)["kubelet"].alive() or not settings.admin_kubeconfig.exists():
        return
    kube.kubectl(
        settings,
        "delete",
        "pods",
        "--all-namespaces",
        f"--field-selector=spec.nodeName={NODE_NAME}",
        "--grace-period=1",
        "--wait=false",
        check=False,
    )
    lay = Layout(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kube.kubectl(
            settings,
            "get",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "-o",
            "name",
            check=False,
        )
        if out.returncode != 0 or (not out.stdout.strip() and not _tasks(lay)):
            return
        time.sleep(1)


def stop(settings: Settings) -> None:
    if not is_configured(settings):
        return
    lay = Layout(settings)
    procs = processes(settings)
    procs["kubelet"].stop()
    if procs["containerd"].alive():
        for task in _tasks(lay):
            ctr(lay, "tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in _tasks(lay):
            ctr(lay, "tasks", "delete", "--force", task, check=False)
        out = ctr(lay, "containers", "ls", "-q", check=False)
        for container in out.stdout.split():
            ctr(lay, "containers", "delete", container, check=False)
    procs["containerd"].stop()
    unmount_under(settings.state_dir)
    subprocess.run(
        ["ip", "link", "delete", bridge_name(settings)], capture_output=True, check=False
    )
    _restore_tunables(lay)


def failure_logs(settings: Settings) -> str:
    return "\n".join(
        f"--- last lines of {proc.log_file}:\n{log_tail(proc.log_file, 20)}"
        for proc in processes(settings).values()
    )
