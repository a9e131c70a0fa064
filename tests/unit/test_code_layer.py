"""code_layer without a registry: the deterministic layer, excludes and bad trees, config and
manifest rewriting, tag derivation, platform selection, and the mount-refused copy fallback
against a loopback fake."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import ContextError
from ansible_collections.urm.training.plugins.module_utils._oci_append import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_LAYER,
    OCI_MANIFEST,
    ConfigOptions,
    Layer,
    Platform,
    _Appender,
    build_layer,
    derive_tag,
    git_state,
    new_config,
    new_manifest,
    normalise_dest,
    parse_image,
    parse_platform,
    select_platform,
    sha256_digest,
)
from ansible_collections.urm.training.plugins.module_utils._registry import RegistryClient
from tests.unit.fakeserver import Reply, Request, serve

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def make_tree(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "model.cpython-312.pyc").write_bytes(b"\0pyc")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o744)
    (root / "link").symlink_to("pkg/model.py")
    for name in ("data", "checkpoints", "wandb", ".git"):
        (root / name).mkdir()
        (root / name / "x").write_text("excluded\n")
    return root


def layer_bytes(layer: Layer) -> bytes:
    layer.file.seek(0)
    return layer.file.read()


def members(layer: Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer_bytes(layer)), mode="r:gz") as tar:
        return tar.getmembers()


def test_the_same_tree_gives_the_same_bytes_whatever_mtimes_modes_and_owners(
    tmp_path: Path,
) -> None:
    first = make_tree(tmp_path / "a")
    second = tmp_path / "b"
    shutil.copytree(first, second, symlinks=True)
    for path in second.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (12345, 67890))
            if os.geteuid() == 0:
                os.chown(path, 4321, 4321)
    (second / "train.py").chmod(0o600)
    (second / "run.sh").chmod(0o700)  # still executable
    a, b = build_layer(str(first)), build_layer(str(second))
    assert layer_bytes(a) == layer_bytes(b)
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    assert a.digest == sha256_digest(layer_bytes(a))
    assert a.diff_id == sha256_digest(gzip.decompress(layer_bytes(a)))
    raw = layer_bytes(a)
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    (second / "train.py").write_text("print('trains')\n")
    assert build_layer(str(second)).digest != a.digest


def test_layer_entries_sorted_normalised_and_under_dest(tmp_path: Path) -> None:
    layer = build_layer(str(make_tree(tmp_path / "t")), dest="/opt/code")
    infos = members(layer)
    names = [i.name for i in infos]
    assert names == [
        "opt",
        "opt/code",
        "opt/code/link",
        "opt/code/pkg",
        "opt/code/pkg/model.py",
        "opt/code/run.sh",
        "opt/code/train.py",
    ]
    by_name = {i.name: i for i in infos}
    assert by_name["opt/code/run.sh"].mode == 0o755
    assert by_name["opt/code/train.py"].mode == 0o644
    assert by_name["opt/code/pkg"].mode == 0o755 and by_name["opt/code/pkg"].isdir()
    assert by_name["opt/code/link"].issym() and by_name["opt/code/link"].linkname == "pkg/model.py"
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    assert layer.file_count == 4  # link, model.py, run.sh, train.py


def test_dockerignore_reincludes_and_exclude_option(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    (root / "data" / "small.csv").write_text("a,b\n")
    (root / ".dockerignore").write_text("!data/small.csv\n")
    names = [i.name for i in members(build_layer(str(root), exclude=["run.sh", "pkg/*.py"]))]
    assert "workspace/data/small.csv" in names and "workspace/data/x" not in names
    assert "workspace/run.sh" not in names and "workspace/pkg/model.py" not in names
    assert "workspace/.dockerignore" in names
    everything = [i.name for i in members(build_layer(str(root), default_excludes=False))]
    assert "workspace/.git/x" in everything and "workspace/wandb/x" in everything


@pytest.mark.parametrize("target", ["../../outside", "../pkg/../../x", "/etc/passwd"])
def test_symlinks_to_outside_are_refused(tmp_path: Path, target: str) -> None:
    root = make_tree(tmp_path / "t")
    (root / "pkg" / "bad").symlink_to(target)
    with pytest.raises(ContextError, match=r"pkg/bad -> .* points outside the tree"):
        build_layer(str(root))


def test_relative_symlinks_inside_the_tree_stay_links(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    (root / "pkg" / "up").symlink_to("../train.py")
    (root / "pkg" / "dangling").symlink_to("../nothing-here")
    infos = {i.name: i for i in members(build_layer(str(root)))}
    assert infos["workspace/pkg/up"].issym() and infos["workspace/pkg/up"].linkname == "../train.py"
    assert infos["workspace/pkg/dangling"].issym()


def test_size_cap_and_missing_dir(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    (root / "big.bin").write_bytes(b"\1" * 3000)
    with pytest.raises(ContextError, match="over max_size_mb"):
        build_layer(str(root), max_size=2048)
    assert build_layer(str(root), max_size=2048, exclude=["*.bin"]).tree_size < 2048
    with pytest.raises(ContextError, match="is not a directory"):
        build_layer(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("dest", "prefix"),
    [("/workspace", "workspace/"), ("/opt/code/", "opt/code/"), ("/", ""), ("/a/../b", "b/")],
)
def test_normalise_dest(dest: str, prefix: str) -> None:
    assert normalise_dest(dest) == prefix


def test_relative_dest_refused() -> None:
    with pytest.raises(ContextError, match="absolute"):
        normalise_dest("workspace")


BASE_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/bin", "KEEP=1"], "Cmd": ["sh"], "Labels": {"a": "1"}},
    "rootfs": {"type": "layers", "diff_ids": [DIGEST_A]},
    "history": [{"created_by": "base"}],
}


def test_new_config_appends_and_sets_options_without_touching_the_base() -> None:
    before = json.dumps(BASE_CONFIG, sort_keys=True)
    opts = ConfigOptions("/workspace", "/workspace", {"PATH": "/usr/bin", "NEW": "x"}, {"b": "2"})
    config = new_config(BASE_CONFIG, DIGEST_B, opts, "urm")
    assert json.dumps(BASE_CONFIG, sort_keys=True) == before
    assert config["rootfs"]["diff_ids"] == [DIGEST_A, DIGEST_B]
    assert config["history"][-1] == {"created": "1970-01-01T00:00:00Z", "created_by": "urm"}
    assert config["config"]["WorkingDir"] == "/workspace"
    assert config["config"]["Env"] == ["PATH=/usr/bin", "KEEP=1", "NEW=x"]
    assert config["config"]["Labels"] == {"a": "1", "b": "2"}
    assert config["config"]["Cmd"] == ["sh"]


def test_new_config_keeps_workdir_and_starts_no_history() -> None:
    base = {k: v for k, v in BASE_CONFIG.items() if k != "history"}
    base["config"] = {**base["config"], "WorkingDir": "/base"}
    config = new_config(base, DIGEST_B, ConfigOptions("/w", None, {}, {}), "urm")
    assert "history" not in config and config["config"]["WorkingDir"] == "/base"


def _layer(digest: str = DIGEST_B, size: int = 99) -> Layer:
    return Layer([], 0, 0, DIGEST_A, digest, size, io.BytesIO())


@pytest.mark.parametrize(
    ("media_type", "layer_type"), [(OCI_MANIFEST, OCI_LAYER), (DOCKER_MANIFEST, DOCKER_LAYER)]
)
def test_new_manifest_appends_the_layer_in_the_base_type(media_type: str, layer_type: str) -> None:
    base = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "cfg", "digest": DIGEST_A, "size": 1},
        "layers": [{"mediaType": layer_type, "digest": DIGEST_A, "size": 5}],
    }
    config_blob = b'{"x":1}'
    manifest = new_manifest(base, media_type, config_blob, _layer(), "r/b:1", DIGEST_A)
    assert manifest["config"] == {
        "mediaType": "cfg",
        "digest": sha256_digest(config_blob),
        "size": len(config_blob),
    }
    assert manifest["layers"][0] == base["layers"][0]
    assert manifest["layers"][1] == {"mediaType": layer_type, "digest": DIGEST_B, "size": 99}
    if media_type == OCI_MANIFEST:
        assert manifest["annotations"]["org.opencontainers.image.base.digest"] == DIGEST_A
    else:
        assert "annotations" not in manifest
    assert len(base["layers"]) == 1


def test_tag_is_stable_and_depends_on_every_input() -> None:
    amd64 = Platform("linux", "amd64")
    opts = ConfigOptions("/workspace", "/workspace", {"A": "1"}, {"l": "v"})
    tag = derive_tag(DIGEST_A, DIGEST_B, amd64, opts)
    assert tag == derive_tag(DIGEST_A, DIGEST_B, amd64, opts)
    assert tag.startswith("code-") and len(tag) == len("code-") + 16
    variants = [
        derive_tag(DIGEST_B, DIGEST_B, amd64, opts),
        derive_tag(DIGEST_A, DIGEST_A, amd64, opts),
        derive_tag(DIGEST_A, DIGEST_B, Platform("linux", "arm64"), opts),
        derive_tag(
            DIGEST_A, DIGEST_B, amd64, ConfigOptions("/w", "/workspace", {"A": "1"}, {"l": "v"})
        ),
        derive_tag(
            DIGEST_A, DIGEST_B, amd64, ConfigOptions("/workspace", None, {"A": "1"}, {"l": "v"})
        ),
        derive_tag(
            DIGEST_A, DIGEST_B, amd64, ConfigOptions("/workspace", "/workspace", {}, {"l": "v"})
        ),
        derive_tag(
            DIGEST_A, DIGEST_B, amd64, ConfigOptions("/workspace", "/workspace", {"A": "1"}, {})
        ),
    ]
    assert len({tag, *variants}) == len(variants) + 1


INDEX = {
    "manifests": [
        {
            "mediaType": OCI_MANIFEST,
            "digest": DIGEST_A,
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": DIGEST_B,
            "platform": {"os": "linux", "architecture": "amd64"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "c" * 64,
            "platform": {"os": "unknown", "architecture": "unknown"},
        },
    ]
}


def test_select_platform() -> None:
    assert select_platform(INDEX, Platform("linux", "amd64"), "b")["digest"] == DIGEST_B
    assert select_platform(INDEX, Platform("linux", "arm64"), "b")["digest"] == DIGEST_A
    assert select_platform(INDEX, parse_platform("linux/arm64/v8"), "b")["digest"] == DIGEST_A
    with pytest.raises(
        ContextError,
        match=r"no image for platform linux/riscv64 \(it offers linux/arm64/v8, linux/amd64",
    ):
        select_platform(INDEX, Platform("linux", "riscv64"), "b")
    with pytest.raises(ContextError, match="os/arch"):
        parse_platform("amd64")


def test_parse_image() -> None:
    ref = parse_image("127.0.0.1:15000/library/busybox")
    assert (ref.repository.path, ref.tag, ref.digest, ref.reference) == (
        "library/busybox",
        None,
        None,
        "latest",
    )
    ref = parse_image(f"reg.example.org/a/b:1.2@{DIGEST_A}")
    assert (ref.repository.registry, ref.tag, ref.reference) == ("reg.example.org", "1.2", DIGEST_A)
    with pytest.raises(ContextError):
        parse_image("busybox:latest")
    with pytest.raises(ContextError, match="digest"):
        parse_image("reg.example.org/a@sha256:12")


def test_git_state(tmp_path: Path) -> None:
    assert git_state(str(tmp_path)) == (None, None)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    sub = tmp_path / "src"
    sub.mkdir()
    (sub / "a.py").write_text("1\n")
    (tmp_path / "other.txt").write_text("1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], env=env, check=True)
    commit, dirty = git_state(str(sub))
    assert commit and len(commit) == 40 and dirty is False
    (tmp_path / "other.txt").write_text("2\n")  # outside src: still clean for src
    assert git_state(str(sub))[1] is False
    (sub / "a.py").write_text("2\n")
    assert git_state(str(sub)) == (commit, True)


def test_mount_refused_falls_back_to_a_streamed_copy() -> None:
    blob = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    stored: dict[str, bytes] = {}

    def route(req: Request) -> Reply:
        url = urlsplit(req.path)
        query = parse_qs(url.query)
        if url.path == "/v2/":
            return 200, {}, b"{}"
        if req.method == "POST" and url.path == "/v2/team/app/blobs/uploads/":
            # A registry that refuses the mount opens a plain upload instead.
            assert query["mount"] == [digest] and query["from"] == ["library/base"]
            return 202, {"Location": "/v2/team/app/blobs/uploads/u1?_state=s"}, b""
        if req.method == "GET" and url.path == f"/v2/library/base/blobs/{digest}":
            return 200, {"Content-Type": "application/octet-stream"}, blob
        if req.method == "PUT" and url.path == "/v2/team/app/blobs/uploads/u1":
            assert query["_state"] == ["s"] and query["digest"] == [digest]
            assert req.headers["Content-Length"] == str(len(blob))
            stored[digest] = req.body
            return 201, {"Docker-Content-Digest": digest}, b""
        return 404, {}, b""

    with serve(route) as server:
        client = RegistryClient(server.host_port, scheme="http", timeout=5)
        appender = _Appender(
            client,
            parse_image(f"{server.host_port}/library/base:1"),
            parse_image(f"{server.host_port}/team/app").repository,
        )
        appender.transfer_base_layers(
            {"layers": [{"digest": digest, "size": len(blob)}]}, mount=True
        )
    assert stored[digest] == blob
    assert appender.copied == [digest] and appender.mounted == []
    assert appender.uploaded_bytes == len(blob)


def test_ansible_doc_renders_and_documents_every_option() -> None:
    import sys

    from ansible_collections.urm.training.plugins.module_utils._oci_append import ARGUMENT_SPEC

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "urm.training.code_layer"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=120,
        env={"ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    doc = json.loads(out.stdout)["urm.training.code_layer"]["doc"]
    assert set(doc["options"]) == set(ARGUMENT_SPEC)
    for name, spec in ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name
    assert doc["attributes"]["check_mode"]["support"] == "full"
