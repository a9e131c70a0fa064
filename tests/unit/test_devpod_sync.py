"""devpod_sync's runner with a fake API and a local "pod": the exec fake runs the very shell
scripts the module sends, with this host's sh and tar, in a temp dir that stands in for the
container's filesystem. The real exec API is in tests/realnode/test_devpod_sync.py."""

from __future__ import annotations

import copy
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import parse_dockerignore
from ansible_collections.urm.training.plugins.module_utils._devpod_sync import (
    ANNOTATION_DIGEST,
    SyncError,
    check_dest,
    run,
    stale_paths,
)
from ansible_collections.urm.training.plugins.module_utils._oci_append import (
    DEFAULT_EXCLUDES,
    build_layer,
)
from ansible_collections.urm.training.plugins.module_utils._pod_exec import (
    ExecResult,
    PodExecError,
    exec_url,
    parse_status,
)

NS = "aic"
POD = "dev-1"


def devpod(**over: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": POD,
            "namespace": NS,
            "labels": {"training.urm.io/mode": "devpod", "training.urm.io/run": POD},
            "annotations": {},
        },
        "spec": {"nodeName": "real-0", "containers": [{"name": "train"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "train", "state": {"running": {}}}],
        },
    }
    for key, value in over.items():
        pod[key] = value
    return pod


class FakeK8s:
    host = "https://fake:6443"

    def __init__(self, pod: dict[str, Any] | None) -> None:
        self.pod = copy.deepcopy(pod)
        self.patches: list[Any] = []

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert (kind, name, namespace) == ("Pod", POD, NS)
        return copy.deepcopy(self.pod)

    def patch(self, kind: str, name: str, patch: Any, namespace: str | None = None) -> dict:
        assert self.pod is not None
        self.patches.append(patch)
        self.pod["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        return {}


class LocalPod:
    """Runs the exec'd command on this host, like the container would, and records it."""

    def __init__(self, path: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.path = path

    def __call__(
        self,
        client: Any,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        stdin: IO[bytes] | bytes | None = None,
        timeout: float = 300.0,
    ) -> ExecResult:
        self.calls.append(list(command))
        data = stdin if isinstance(stdin, bytes) or stdin is None else stdin.read()
        env = dict(os.environ, PATH=self.path or os.environ["PATH"])
        proc = subprocess.run(
            list(command), input=data or b"", capture_output=True, env=env, timeout=60, check=False
        )
        return ExecResult(proc.returncode, proc.stdout, proc.stderr, "")


def make_tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "train.py").write_text("print('train')\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "link.py").symlink_to("pkg/train.py")
    for skipped in (".git", "data", "checkpoints", "wandb", "pkg/__pycache__"):
        (root / skipped).mkdir()
        (root / skipped / "x").write_text("never sent\n")
    return root


def params(src: Path, dest: Path | str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": POD,
        "namespace": NS,
        "src": str(src),
        "dest": str(dest),
        "container": None,
        "exclude": [],
        "default_excludes": True,
        "max_size_mb": 512,
        "delete": False,
        "resync": False,
        "force": False,
        "timeout": 60.0,
    }
    out.update(kw)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "container" / "workspace"


def test_a_sync_unpacks_the_tree_with_modes_records_the_digest_and_a_rerun_does_nothing(
    tree: Path, dest: Path
) -> None:
    k8s, pod = FakeK8s(devpod()), LocalPod()
    before = time.time() - 5
    changed, out = run(k8s, params(tree, dest), False, pod)  # type: ignore[arg-type]
    assert changed and out["action"] == "synced", out
    assert (dest / "pkg" / "train.py").read_text() == "print('train')\n"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "pkg" / "train.py").stat().st_mode) == 0o644
    assert os.readlink(dest / "link.py") == "pkg/train.py"
    # mtime is the sync's, not the layer's 0, so .pyc files notice edits of the same size.
    assert (dest / "pkg" / "train.py").stat().st_mtime >= before
    for skipped in (".git", "data", "checkpoints", "wandb", "pkg/__pycache__"):
        assert not (dest / skipped).exists(), skipped
    layer = build_layer(str(tree), str(dest))
    layer.close()
    assert out["digest"] == layer.digest and out["files"] == 3
    assert k8s.patches == [{"metadata": {"annotations": {ANNOTATION_DIGEST: layer.digest}}}]
    assert len(pod.calls) == 1 and pod.calls[0][:2] == ["sh", "-c"]

    changed, again = run(k8s, params(tree, dest), False, pod)  # type: ignore[arg-type]
    assert not changed and again["action"] == "unchanged"
    assert len(pod.calls) == 1 and len(k8s.patches) == 1

    (tree / "pkg" / "train.py").write_text("print('traim')\n")  # one byte, same size
    changed, third = run(k8s, params(tree, dest), False, pod)  # type: ignore[arg-type]
    assert changed and third["digest"] != layer.digest
    assert (dest / "pkg" / "train.py").read_text() == "print('traim')\n"


def test_check_mode_packs_and_compares_but_neither_execs_nor_patches(
    tree: Path, dest: Path
) -> None:
    k8s, pod = FakeK8s(devpod()), LocalPod()
    changed, out = run(k8s, params(tree, dest), True, pod)  # type: ignore[arg-type]
    assert changed and out["action"] == "would_sync" and out["transferred_bytes"] == 0
    assert pod.calls == [] and k8s.patches == [] and not dest.exists()


def test_resync_syncs_an_unchanged_tree_again(tree: Path, dest: Path) -> None:
    k8s, pod = FakeK8s(devpod()), LocalPod()
    run(k8s, params(tree, dest), False, pod)  # type: ignore[arg-type]
    (dest / "pkg" / "train.py").write_text("edited in the pod\n")
    changed, _ = run(k8s, params(tree, dest, resync=True), False, pod)  # type: ignore[arg-type]
    assert changed and (dest / "pkg" / "train.py").read_text() == "print('train')\n"


def test_delete_removes_stale_paths_inside_dest_only_and_keeps_excluded_ones(
    tmp_path: Path, tree: Path, dest: Path
) -> None:
    k8s, pod = FakeK8s(devpod()), LocalPod()
    run(k8s, params(tree, dest), False, pod)  # type: ignore[arg-type]
    outside = tmp_path / "container" / "keep-me"
    outside.write_text("outside dest\n")
    (dest / "old").mkdir()
    (dest / "old" / "gone.py").write_text("x")
    (dest / "old" / "__pycache__").mkdir()
    (dest / "old" / "__pycache__" / "gone.pyc").write_text("x")
    (dest / "stale.txt").write_text("x")
    (dest / "-rf").write_text("a name that looks like an option")
    (dest / "data").mkdir()
    (dest / "data" / "shard-0").write_text("the researcher's data\n")
    (dest / "checkpoints").mkdir()
    (dest / "escape").symlink_to(outside)
    (tree / "run.sh").unlink()
    (tree / "new.py").write_text("new\n")
    changed, out = run(k8s, params(tree, dest, delete=True), False, pod)  # type: ignore[arg-type]
    assert changed
    assert out["deleted"] == ["-rf", "escape", "old/gone.py", "run.sh", "stale.txt"], out
    assert sorted(p.name for p in dest.iterdir()) == [
        "checkpoints",
        "data",
        "link.py",
        "new.py",
        "old",
        "pkg",
    ]
    # old/ stays: it holds an excluded __pycache__ (rsync --delete keeps excluded paths too).
    assert (dest / "old" / "__pycache__" / "gone.pyc").exists()
    assert (dest / "data" / "shard-0").read_text() == "the researcher's data\n"
    assert outside.read_text() == "outside dest\n"


STALE_CASES = [
    # found in dest, in the tree, expected removals
    (["a.py", "b.py"], {"a.py"}, ["b.py"]),
    (["old", "old/x.py", "old/y/z.py"], set(), ["old"]),
    (["data", "data/big"], set(), []),
    (["pkg", "pkg/__pycache__", "pkg/__pycache__/m.pyc"], set(), []),
    (["pkg", "pkg/m.py", "pkg/__pycache__"], {"pkg"}, ["pkg/m.py"]),
    ([".git", ".git/HEAD", "src", "src/.git"], {"src"}, []),
    (["checkpoints", "sub", "sub/checkpoints"], {"sub"}, ["sub/checkpoints"]),
]


@pytest.mark.parametrize(("found", "tree", "expected"), STALE_CASES)
def test_stale_paths(found: list[str], tree: set[str], expected: list[str]) -> None:
    patterns = parse_dockerignore("\n".join(DEFAULT_EXCLUDES))
    assert stale_paths(found, tree, patterns) == expected


def test_a_dockerignore_exception_makes_that_file_part_of_the_tree(tree: Path, dest: Path) -> None:
    (tree / "data" / "small.csv").write_text("a,b\n")
    (tree / ".dockerignore").write_text("!data/small.csv\n*.sh\n")
    run(FakeK8s(devpod()), params(tree, dest), False, LocalPod())  # type: ignore[arg-type]
    assert (dest / "data" / "small.csv").read_text() == "a,b\n"
    assert not (dest / "data" / "x").exists() and not (dest / "run.sh").exists()


def test_busybox_tar_unpacks_the_same_tree(tmp_path: Path, tree: Path, dest: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "tar", "head", "mkdir", "find", "xargs", "rm", "gzip"):
        (bin_dir / applet).symlink_to(busybox)
    pod = LocalPod(path=str(bin_dir))
    changed, _ = run(FakeK8s(devpod()), params(tree, dest), False, pod)  # type: ignore[arg-type]
    assert changed and (dest / "pkg" / "train.py").read_text() == "print('train')\n"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755


def tool_dir(tmp_path: Path, without: str) -> str:
    """A PATH with sh and the usual tools, less one."""
    bin_dir = tmp_path / f"no-{without}"
    bin_dir.mkdir()
    for tool in ("sh", "tar", "head", "mkdir", "find", "xargs", "rm", "gzip"):
        found = shutil.which(tool)
        if tool != without and found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_a_container_without_tar_is_named_and_nothing_is_recorded(
    tmp_path: Path, tree: Path, dest: Path
) -> None:
    k8s = FakeK8s(devpod())
    with pytest.raises(SyncError) as err:
        run(k8s, params(tree, dest), False, LocalPod(tool_dir(tmp_path, "tar")))  # type: ignore[arg-type]
    assert "has no tar, which devpod_sync needs to unpack the tree" in err.value.message
    assert "apt-get install tar" in err.value.message
    assert k8s.patches == []


def test_a_container_without_find_fails_delete_before_unpacking(
    tmp_path: Path, tree: Path, dest: Path
) -> None:
    k8s = FakeK8s(devpod())
    pod = LocalPod(tool_dir(tmp_path, "find"))
    with pytest.raises(SyncError) as err:
        run(k8s, params(tree, dest, delete=True), False, pod)  # type: ignore[arg-type]
    assert "has no find" in err.value.message and "findutils" in err.value.message
    assert not dest.exists() and k8s.patches == []


def test_a_failing_tar_reports_its_exit_status_and_stderr(tmp_path: Path, tree: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where dest's parent should be")
    with pytest.raises(SyncError) as err:
        run(FakeK8s(devpod()), params(tree, blocker / "ws"), False, LocalPod())  # type: ignore[arg-type]
    assert "unpack the tree in pod aic/dev-1 (container train) failed (exit status" in str(
        err.value
    )
    assert "Not a directory" in str(err.value) or "File exists" in str(err.value)


def test_no_shell_in_the_image_is_said_plainly(tree: Path, dest: Path) -> None:
    def no_sh(*args: Any, **kw: Any) -> ExecResult:
        raise PodExecError(
            "cannot run 'sh' in pod aic/dev-1: failed to exec in container: exec: \"sh\": "
            "executable file not found in $PATH"
        )

    with pytest.raises(SyncError) as err:
        run(FakeK8s(devpod()), params(tree, dest), False, no_sh)  # type: ignore[arg-type]
    assert "has no /bin/sh, which devpod_sync needs to unpack the tree" in err.value.message


def never(*args: Any, **kw: Any) -> ExecResult:
    raise AssertionError("no exec expected")


ERROR_CASES = [
    ("missing pod", None, {}, "no dev pod dev-1 in aic; start one with training_job mode=devpod"),
    (
        "pending",
        devpod(status={"phase": "Pending"}),
        {},
        "pod aic/dev-1 is Pending, not Running: it is still starting",
    ),
    (
        "ended",
        devpod(status={"phase": "Failed"}),
        {},
        "pod aic/dev-1 is Failed, not Running: it has ended",
    ),
    (
        "a job pod",
        devpod(metadata={"name": POD, "labels": {"training.urm.io/mode": "job"}}),
        {},
        "pod aic/dev-1 is not a dev pod (training.urm.io/mode=job): syncing would change",
    ),
    (
        "no labels",
        devpod(metadata={"name": POD}),
        {},
        "pod aic/dev-1 is not a dev pod (no training.urm.io/mode label)",
    ),
    (
        "crashing container",
        devpod(
            status={
                "phase": "Running",
                "containerStatuses": [
                    {"name": "train", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            }
        ),
        {},
        "container train of pod aic/dev-1 is not running (CrashLoopBackOff)",
    ),
    (
        "unknown container",
        devpod(),
        {"container": "sidecar"},
        "container='sidecar' is not in pod aic/dev-1; it has: train",
    ),
    (
        "several containers",
        devpod(spec={"containers": [{"name": "a"}, {"name": "b"}]}),
        {},
        "pod aic/dev-1 has several containers (a, b): set container",
    ),
    ("relative dest", devpod(), {"dest": "workspace"}, "must be an absolute path in the container"),
    ("delete into /", devpod(), {"dest": "/", "delete": True}, "dest=/ with delete=true"),
    ("bad name", devpod(), {"name": "Dev_1"}, "name='Dev_1' is not a valid Kubernetes name"),
    ("too big", devpod(), {"max_size_mb": 1}, "holds 2.0 MiB after excludes, over max_size_mb=1"),
]


@pytest.mark.parametrize(
    ("pod", "overrides", "message"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_refusals_come_before_any_exec_or_patch(
    tree: Path, pod: dict[str, Any] | None, overrides: dict[str, Any], message: str
) -> None:
    k8s = FakeK8s(pod)
    p = {**params(tree, "/workspace"), **overrides}
    (tree / "big.bin").write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(SyncError) as err:
        run(k8s, p, False, never)  # type: ignore[arg-type]
    assert message in err.value.message, err.value.message
    assert k8s.patches == []


def test_force_syncs_into_a_pod_that_is_not_a_devpod(tree: Path, dest: Path) -> None:
    k8s = FakeK8s(devpod(metadata={"name": POD, "annotations": {}}))
    changed, _ = run(k8s, params(tree, dest, force=True), False, LocalPod())  # type: ignore[arg-type]
    assert changed and (dest / "run.sh").exists()


def test_a_missing_src_is_named(tmp_path: Path) -> None:
    with pytest.raises(SyncError) as err:
        run(FakeK8s(devpod()), params(tmp_path / "nope", "/workspace"), False, never)  # type: ignore[arg-type]
    assert "is not a directory: give the local source tree to sync" in err.value.message


def test_the_digest_depends_on_dest_so_another_dest_syncs_again(tree: Path, tmp_path: Path) -> None:
    k8s, pod = FakeK8s(devpod()), LocalPod()
    run(k8s, params(tree, tmp_path / "a"), False, pod)  # type: ignore[arg-type]
    changed, _ = run(k8s, params(tree, tmp_path / "b"), False, pod)  # type: ignore[arg-type]
    assert changed and (tmp_path / "b" / "run.sh").exists()


@pytest.mark.parametrize(
    ("dest", "expected"),
    [("/workspace", ("/workspace", 1)), ("/a/b/", ("/a/b", 2)), ("/", ("/", 0))],
)
def test_check_dest(dest: str, expected: tuple[str, int]) -> None:
    assert check_dest(dest, False) == expected


STATUS_CASES = [
    ('{"metadata":{},"status":"Success"}', 0, ""),
    (
        '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code:'
        ' error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",'
        '"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
        3,
        "command terminated with non-zero exit code",
    ),
    (
        '{"metadata":{},"status":"Failure","message":"failed to exec in container: exec: '
        '\\"sh\\": executable file not found in $PATH","reason":"InternalError"}',
        None,
        "executable file not found",
    ),
    ("", None, "without an exit status"),
    ("not json", None, "unreadable exec status"),
]


@pytest.mark.parametrize(("raw", "code", "message"), STATUS_CASES)
def test_parse_status(raw: str, code: int | None, message: str) -> None:
    got_code, got_message = parse_status(raw.encode())
    assert got_code == code and message in got_message


def test_exec_url_repeats_command_and_names_the_container() -> None:
    url = exec_url("https://h:6443/", "aic", "dev-1", ["sh", "-c", "a b"], "train", True)
    assert url == (
        "wss://h:6443/api/v1/namespaces/aic/pods/dev-1/exec?command=sh&command=-c&"
        "command=a+b&container=train&stdin=true&stdout=true&stderr=true&tty=false"
    )
