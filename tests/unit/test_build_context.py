"""The build context: .dockerignore semantics, the content hash (the tag) and the tar.gz."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import (
    ContextError,
    check_tag,
    credential_for,
    is_excluded,
    parse_dockerignore,
    parse_repository,
    scan,
    tar_gz,
)

# (patterns, path, excluded) -- the cases follow moby/patternmatcher's behaviour.
IGNORE_CASES = [
    ("*.log", "a.log", True),
    ("*.log", "dir/a.log", False),  # '*' does not cross '/'
    ("**/*.log", "dir/sub/a.log", True),
    ("**/*.log", "a.log", True),  # '**/' also matches no directory
    ("data", "data/x/y.bin", True),  # a parent match excludes the children
    ("data/", "data/y.bin", True),
    ("/data", "data/y.bin", True),  # leading '/' is dropped
    ("./data", "data/y.bin", True),
    ("data/**", "data/a/b", True),
    ("data*", "dataset/x", True),
    ("data*", "my-data", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[ab].txt", "b.txt", True),
    ("[^ab].txt", "b.txt", False),
    ("[^ab].txt", "c.txt", True),
    ("*.log\n!keep.log", "keep.log", False),
    ("*.log\n!keep.log", "drop.log", True),
    ("!keep.log\n*.log", "keep.log", True),  # the last match wins
    ("data\n!data/keep.txt", "data/keep.txt", False),
    ("data\n!data/keep.txt", "data/other.txt", True),
    ("# comment\n\n  *.tmp  ", "x.tmp", True),
    ("# *.py", "x.py", False),
    ("**", "anything/at/all", True),
    ("**\n!Dockerfile", "Dockerfile", False),
    ("foo\\*bar", "foo*bar", True),
    ("foo\\*bar", "fooXbar", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), IGNORE_CASES)
def test_dockerignore_semantics(patterns: str, path: str, excluded: bool) -> None:
    assert is_excluded(path, parse_dockerignore(patterns)) is excluded


def test_unclosed_class_is_an_error() -> None:
    with pytest.raises(ContextError, match="unclosed"):
        parse_dockerignore("[abc")


def make_context(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
    (root / "src" / "train.py").write_text("print('hi')\n")
    (root / "src" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "src" / "run.sh", 0o755)
    (root / "data" / "big.bin").write_bytes(b"\0" * 1000)
    (root / "data" / "keep.txt").write_text("keep")
    (root / "notes.log").write_text("log")
    (root / ".dockerignore").write_text("data\n!data/keep.txt\n*.log\n")
    return root


def test_scan_honours_dockerignore(tmp_path: Path) -> None:
    ctx = scan(str(make_context(tmp_path)))
    paths = [e.path for e in ctx.entries]
    assert "data/big.bin" not in paths and "notes.log" not in paths
    assert "data/keep.txt" in paths and "data" in paths  # parent of an exception is kept
    assert {"Dockerfile", ".dockerignore", "src/train.py", "src/run.sh"} <= set(paths)
    assert ctx.tag.startswith("ctx-") and len(ctx.tag) == 4 + 16
    assert ctx.dockerfile == "Dockerfile"


def test_hash_is_stable_and_ignores_excluded_files_and_mtimes(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    first = scan(str(root)).digest
    (root / "data" / "big.bin").write_bytes(b"\1" * 5000)  # excluded
    (root / "other.log").write_text("x")  # excluded
    os.utime(root / "src" / "train.py", (1, 1))  # mtime is not content
    assert scan(str(root)).digest == first


@pytest.mark.parametrize(
    "change",
    ["content", "new_file", "exec_bit", "rename", "dockerfile", "included_exception", "ignore"],
)
def test_hash_changes_with_every_input(tmp_path: Path, change: str) -> None:
    root = make_context(tmp_path)
    before = scan(str(root)).digest
    if change == "content":
        (root / "src" / "train.py").write_text("print('bye')\n")
    elif change == "new_file":
        (root / "src" / "extra.py").write_text("")
    elif change == "exec_bit":
        os.chmod(root / "src" / "train.py", 0o755)
    elif change == "rename":
        (root / "src" / "train.py").rename(root / "src" / "train2.py")
    elif change == "dockerfile":
        (root / "Dockerfile").write_text("FROM scratch\n")
    elif change == "included_exception":
        (root / "data" / "keep.txt").write_text("changed")
    elif change == "ignore":
        (root / ".dockerignore").write_text("data\n*.log\n")
    assert scan(str(root)).digest != before


def test_hash_covers_build_args_and_target(tmp_path: Path) -> None:
    root = str(make_context(tmp_path))
    base = scan(root).digest
    assert scan(root, build_args={"A": "1"}).digest != base
    assert scan(root, build_args={"A": "1"}).digest != scan(root, build_args={"A": "2"}).digest
    assert scan(root, target="dev").digest != base
    assert scan(root, build_args={"A": "1", "B": "2"}).digest == (
        scan(root, build_args={"B": "2", "A": "1"}).digest
    )


def test_dockerfile_is_sent_even_when_ignored(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    (root / ".dockerignore").write_text("**\n")
    ctx = scan(str(root))
    assert [e.path for e in ctx.entries] == ["Dockerfile"]


def test_other_dockerfile_inside_context(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    (root / "docker").mkdir()
    (root / "docker" / "train.Dockerfile").write_text("FROM scratch\n")
    ctx = scan(str(root), "docker/train.Dockerfile")
    assert ctx.dockerfile == "docker/train.Dockerfile"
    assert ctx.digest != scan(str(root)).digest


def test_missing_context_dir(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match=r"context_dir=.*is not a directory"):
        scan(str(tmp_path / "nope"))


@pytest.mark.parametrize("dockerfile", ["../Dockerfile", "/etc/hostname", "sub/../../Dockerfile"])
def test_dockerfile_outside_context(tmp_path: Path, dockerfile: str) -> None:
    root = make_context(tmp_path / "ctx")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ContextError, match="outside the context"):
        scan(str(root), dockerfile)


def test_dockerfile_symlink_out_of_context(tmp_path: Path) -> None:
    root = make_context(tmp_path / "ctx")
    (tmp_path / "Evil").write_text("FROM scratch\n")
    (root / "Linked").symlink_to(tmp_path / "Evil")
    with pytest.raises(ContextError, match="outside the context"):
        scan(str(root), "Linked")


def test_missing_dockerfile(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    with pytest.raises(ContextError, match="does not exist in the context"):
        scan(str(root), "Nope")


def test_tar_is_deterministic_and_complete(tmp_path: Path) -> None:
    root = make_context(tmp_path / "one")
    ctx = scan(str(root))
    archive = tar_gz(ctx)
    assert archive == tar_gz(scan(str(root)))
    os.utime(root / "src" / "train.py", (12345, 12345))
    assert tar_gz(scan(str(root))) == archive
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {e.path for e in ctx.entries}
        assert members["src/run.sh"].mode == 0o755
        assert members["src/train.py"].mode == 0o644
        assert all(m.mtime == 0 and m.uid == 0 for m in members.values())
        handle = tar.extractfile("src/train.py")
        assert handle is not None and handle.read() == b"print('hi')\n"
    assert gzip.decompress(archive)  # a plain gzip stream, mtime 0


def test_symlink_is_kept_as_link(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    (root / "link").symlink_to("src/train.py")
    ctx = scan(str(root))
    entry = next(e for e in ctx.entries if e.path == "link")
    assert entry.kind == "symlink" and entry.target == "src/train.py"


@pytest.mark.parametrize(
    ("value", "registry", "path"),
    [
        ("registry.ice.ri.se/aic-misc/urm-training", "registry.ice.ri.se", "aic-misc/urm-training"),
        ("127.0.0.1:15000/aic-misc/x", "127.0.0.1:15000", "aic-misc/x"),
        ("localhost/a/b_c.d", "localhost", "a/b_c.d"),
    ],
)
def test_parse_repository(value: str, registry: str, path: str) -> None:
    repo = parse_repository(value)
    assert (repo.registry, repo.path) == (registry, path)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("aic-misc/urm", "registry host"),
        ("urm", "registry host"),
        ("https://harbor.example/aic/urm", "scheme"),
        ("harbor.example/aic/urm:latest", "tag"),
        ("harbor.example/aic/urm@sha256:" + "0" * 64, "digest"),
        ("harbor.example/Aic/Urm", "invalid repository path"),
        ("harbor.example/aic//urm", "invalid repository path"),
        ("harbor.example/aic/urm-", "invalid repository path"),
        ("harbor.example/", "registry host"),
    ],
)
def test_invalid_repository(value: str, fragment: str) -> None:
    with pytest.raises(ContextError, match=fragment):
        parse_repository(value)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a b", "a:b"])
def test_invalid_tag(tag: str) -> None:
    with pytest.raises(ContextError):
        check_tag(tag)


def test_credential_for_matches_spellings() -> None:
    auth = base64.b64encode(b"u2:p:w").decode()
    config = {
        "auths": {
            "https://harbor.example/": {"username": "u1", "password": "p1"},
            "127.0.0.1:15000": {"auth": auth},
            "https://index.docker.io/v1/": {"username": "d", "password": "d"},
        }
    }
    assert credential_for(config, "harbor.example") == ("u1", "p1")
    assert credential_for(config, "127.0.0.1:15000") == ("u2", "p:w")
    assert credential_for(config, "index.docker.io") == ("d", "d")
    assert credential_for(config, "other.example") is None
    assert credential_for(json.loads("{}"), "x") is None


# -- docker_build's stream parsing and credential sources ---------------------------------------


def test_stream_lines_split_joined_and_partial_chunks() -> None:
    from ansible_collections.urm.training.plugins.module_utils._docker_build import (
        _error_of,
        _lines,
    )

    chunks = [
        b'{"status":"The push refers to repository [r/x:t]"}\n{"status":"t: digest: sha256:ab',
        b'c size: 891"}\n',
        b'{"errorDetail":{"message":"denied: requested access"},"error":"denied"}\n',
    ]
    parsed = list(_lines(chunks))
    assert [p.get("status", "")[:5] for p in parsed] == ["The p", "t: di", ""]
    assert _error_of(parsed[2]) == "denied: requested access"
    assert _error_of({"error": "plain"}) == "plain" and _error_of(parsed[0]) is None


def test_docker_credential_sources(tmp_path: Path) -> None:
    from ansible_collections.urm.training.plugins.module_utils._docker_build import _credential

    assert _credential({"registry_username": "u", "registry_password": "p"}, "r:1") == ("u", "p")
    with pytest.raises(ContextError, match="go together"):
        _credential({"registry_username": "u"}, "r:1")
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"robot$x:secret").decode()
    config.write_text(json.dumps({"auths": {"https://r:1": {"auth": auth}}}))
    assert _credential({"docker_config": str(config)}, "r:1") == ("robot$x", "secret")
    with pytest.raises(ContextError, match="no credential"):
        _credential({"docker_config": str(config)}, "other:2")
    assert _credential({}, "r:1") == (None, None)
