# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The build context both builders share: .dockerignore matching, the content hash (the tag) and a
deterministic tar.gz.

The hash covers the Dockerfile, every file the context sends (after .dockerignore), each file's
path and executable bit, symlink targets, the build args and the target, so the same inputs give
the same tag on every machine and for both builders, and any change gives a new one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

HASH_VERSION = b"urm-build-context-v1\n"
TAG_PREFIX = "ctx-"
TAG_HEX = 16


class ContextError(ValueError):
    """The context directory, the Dockerfile or a .dockerignore pattern is unusable."""


@dataclass(frozen=True)
class IgnorePattern:
    pattern: str
    negate: bool
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate one cleaned pattern the way moby/patternmatcher does (Go filepath.Match plus
    ``**``, which matches any number of directories)."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                # "**/" also matches no directory at all
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise ContextError(f".dockerignore pattern {pattern!r} has an unclosed '['")
            # Go's classes negate with '^' and escape with '\\', as Python's do.
            out.append("[" + pattern[i + 1 : end] + "]")
            i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ContextError(f".dockerignore pattern {pattern!r} is invalid: {exc}") from None


def _clean(path: str) -> str:
    """Like Go's filepath.Clean for relative slash paths, without a leading '/'."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts) or "."


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    """Parse .dockerignore text: '#' comments, blank lines, '!' exceptions, '**'."""
    patterns: list[IgnorePattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        cleaned = _clean(line)
        if cleaned == ".":
            continue
        patterns.append(IgnorePattern(cleaned, negate, _pattern_regex(cleaned)))
    return patterns


def is_excluded(relpath: str, patterns: Iterable[IgnorePattern]) -> bool:
    """Whether ``relpath`` is excluded: the last pattern that matches it, or one of its parent
    directories, decides (patternmatcher's MatchesOrParentMatches)."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pat in patterns:
        if any(pat.regex.match(c) for c in candidates):
            excluded = not pat.negate
    return excluded


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    kind: str  # "file", "dir" or "symlink"
    executable: bool = False
    size: int = 0
    sha256: str = ""
    target: str = ""


@dataclass
class BuildContext:
    root: str
    dockerfile: str  # relative to root
    entries: list[Entry] = field(default_factory=list)
    digest: str = ""  # sha256 hex of the canonical stream

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.digest[:TAG_HEX]

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries if e.kind != "dir")

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_dockerfile(root: str, dockerfile: str) -> str:
    """The Dockerfile's path relative to the context root; it must lie inside the context."""
    candidate = dockerfile if os.path.isabs(dockerfile) else os.path.join(root, dockerfile)
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ContextError(
            f"dockerfile={dockerfile!r} resolves to {real}, outside the context {real_root}: put "
            "the Dockerfile inside the context directory (both builders only see the context)"
        )
    if not os.path.isfile(real):
        raise ContextError(
            f"dockerfile={dockerfile!r} does not exist in the context {real_root}: give its path "
            "relative to the context"
        )
    return os.path.relpath(real, real_root).replace(os.sep, "/")


def load_dockerignore(root: str) -> list[IgnorePattern]:
    """The patterns of ``root``/.dockerignore, or [] when there is none."""
    ignore_path = os.path.join(root, ".dockerignore")
    if not os.path.isfile(ignore_path):
        return []
    with open(ignore_path, encoding="utf-8") as handle:
        return parse_dockerignore(handle.read())


def walk(
    root: str,
    patterns: list[IgnorePattern],
    keep: str | None = None,
    hash_files: bool = True,
) -> list[Entry]:
    """The sorted entries of ``root`` that ``patterns`` keep (``keep`` is never excluded).

    Sockets, FIFOs and devices are skipped. Without '!' exceptions an excluded directory is not
    descended into, so a large excluded data directory costs nothing.
    """
    prune = not any(p.negate for p in patterns)
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        names = sorted(dirnames + filenames)
        pruned: set[str] = set()
        for name in names:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel != keep and is_excluded(rel, patterns):
                if not (keep and keep.startswith(f"{rel}/")):
                    pruned.add(name)
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir"))
            elif stat.S_ISREG(st.st_mode):
                entries.append(
                    Entry(
                        rel,
                        "file",
                        executable=bool(st.st_mode & 0o111),
                        size=st.st_size,
                        sha256=_file_sha256(full) if hash_files else "",
                    )
                )
        if prune:
            dirnames[:] = [d for d in dirnames if d not in pruned]
    entries.sort(key=lambda e: e.path)
    # A file re-included by a '!' exception under an excluded directory still needs its parents.
    present = {e.path for e in entries}
    for entry in list(entries):
        parts = entry.path.split("/")[:-1]
        for i in range(len(parts)):
            parent = "/".join(parts[: i + 1])
            if parent not in present:
                present.add(parent)
                entries.append(Entry(parent, "dir"))
    entries.sort(key=lambda e: e.path)
    return entries


def scan(
    context: str,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> BuildContext:
    """Walk the context, apply .dockerignore and compute the content hash."""
    if not os.path.isdir(context):
        raise ContextError(
            f"context_dir={context!r} is not a directory: give the directory that holds the "
            "Dockerfile and the files it copies"
        )
    root = os.path.realpath(context)
    rel_dockerfile = resolve_dockerfile(root, dockerfile)
    # The Dockerfile always goes with the context, as with docker build.
    entries = walk(root, load_dockerignore(root), keep=rel_dockerfile)

    digest = hashlib.sha256(HASH_VERSION)
    digest.update(f"dockerfile\0{rel_dockerfile}\n".encode())
    for entry in entries:
        line = (
            f"{entry.kind}\0{entry.path}\0{int(entry.executable)}\0{entry.size}\0"
            f"{entry.sha256}\0{entry.target}\n"
        )
        digest.update(line.encode("utf-8", "surrogateescape"))
    for key in sorted(build_args or {}):
        digest.update(f"arg\0{key}\0{(build_args or {})[key]}\n".encode())
    digest.update(f"target\0{target or ''}\n".encode())
    return BuildContext(root, rel_dockerfile, entries, digest.hexdigest())


def add_entries(
    tar: tarfile.TarFile, root: str, entries: Iterable[Entry], prefix: str = ""
) -> None:
    """Add ``entries`` (read from ``root``) under ``prefix`` with fixed mtime, owner and modes:
    0755 for directories and executables, 0644 for other files; symlinks stay links."""
    for entry in entries:
        info = tarfile.TarInfo(f"{prefix}{entry.path}")
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        elif entry.kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = entry.target
            info.mode = 0o777
            tar.addfile(info)
        else:
            info.mode = 0o755 if entry.executable else 0o644
            info.size = entry.size
            with open(os.path.join(root, entry.path), "rb") as handle:
                tar.addfile(info, handle)


def tar_gz(ctx: BuildContext) -> bytes:
    """A byte-for-byte reproducible tar.gz of the context (fixed mtime, owner and modes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_entries(tar, ctx.root, ctx.entries)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


# -- image names and credentials (shared by both builders) ----------------------------------

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9-]+)*(?::\d+)?$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Repository:
    registry: str  # host[:port], the key in a dockerconfigjson's auths
    path: str  # e.g. aic-misc/urm-training

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.path}"


def parse_repository(value: str, option: str = "repository") -> Repository:
    """``host[:port]/path`` without tag or digest; the registry host is required, because it
    names both where to push and which credential to use."""
    raw = (value or "").strip()
    hint = "give it as host[:port]/project/name, e.g. registry.ice.ri.se/aic-misc/urm-training"
    if "://" in raw:
        raise ContextError(f"{option}={value!r} must not have a scheme: {hint}")
    if "@" in raw:
        raise ContextError(f"{option}={value!r} must not hold a digest: {hint}")
    host, _, path = raw.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise ContextError(f"{option}={value!r} does not start with a registry host: {hint}")
    if not _HOST_RE.match(host):
        raise ContextError(f"{option}={value!r} has an invalid registry host {host!r}: {hint}")
    if ":" in path:
        raise ContextError(
            f"{option}={value!r} holds a tag: give the tag in the tag option instead; {hint}"
        )
    if not _REPO_PATH_RE.match(path) or len(raw) > 255:
        raise ContextError(
            f"{option}={value!r} has an invalid repository path {path!r}: use lower-case "
            f"letters, digits and single '.', '_' or '-' between them, separated by '/'; {hint}"
        )
    return Repository(host.lower(), path)


def check_tag(tag: str, option: str = "tag") -> str:
    if not _TAG_RE.match(tag or ""):
        raise ContextError(
            f"{option}={tag!r} is not a valid image tag: use up to 128 letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-'"
        )
    return tag


def credential_for(config: Mapping[str, object] | None, registry: str) -> tuple[str, str] | None:
    """The (username, password) for ``registry`` in a docker config, matching ``host[:port]``
    and the ``https://host[:port]`` spellings kubectl and docker write."""
    import base64
    import binascii

    auths = (config or {}).get("auths")
    if not isinstance(auths, Mapping):
        return None
    for key, entry in auths.items():
        bare = str(key).split("://", 1)[-1].rstrip("/")
        if bare.endswith("/v1") or bare.endswith("/v2"):
            bare = bare.rsplit("/", 1)[0]
        if bare.lower() != registry.lower() or not isinstance(entry, Mapping):
            continue
        user, password = entry.get("username"), entry.get("password")
        if isinstance(user, str) and isinstance(password, str) and user:
            return user, password
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                decoded = base64.b64decode(auth, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            if sep and user:
                return user, password
    return None
