# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""code_layer: a source tree as one deterministic image layer, appended to a base image inside
the registry (as ``crane append`` does), so the base is never pulled, unpacked or rebuilt.

Everything that names the result is computed locally first: the layer (tar and gzip, both
hashed while written), and the tag ``code-<16 hex>`` over the base manifest digest, the layer
digest and the config options. An unchanged tree on an unchanged base therefore costs the
registry: the ``GET /v2/`` ping (plus one ``GET /v2/`` with Basic auth to check the credential;
Bearer checks it at the token server), one manifest HEAD of the base (none when the base is given
by digest) and one manifest HEAD of the target tag.

A new tag then costs: GET of the base manifest (and of the platform's manifest under an index)
and of its config blob, one mount per base layer when the repositories differ (a streamed copy
GET→PUT only where the registry refuses it), HEAD and upload of the layer and config blobs when
missing, and the manifest PUT. The base layer blobs are never read unless a mount is refused.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ansible_collections.urm.training.plugins.module_utils._build_context import (
    DIGEST_RE,
    ContextError,
    Entry,
    IgnorePattern,
    Repository,
    add_entries,
    load_dockerignore,
    parse_dockerignore,
    parse_repository,
    walk,
)
from ansible_collections.urm.training.plugins.module_utils._docker_build import (
    _credential as registry_credential,
)
from ansible_collections.urm.training.plugins.module_utils._errors import ModuleFailure
from ansible_collections.urm.training.plugins.module_utils._registry import (
    REGISTRY_TLS_ARG_SPEC,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    mask_secrets,
    repository_scope,
)

FORMAT_VERSION = "urm-code-layer-v1"
USER_AGENT = "urm.training.code_layer"
TAG_PREFIX = "code-"
TAG_HEX = 16
DEFAULT_EXCLUDES = ("**/.git", "data", "checkpoints", "**/__pycache__", "wandb")
EPOCH = "1970-01-01T00:00:00Z"
GIT_COMMIT_LABEL = "org.opencontainers.image.revision"
GIT_DIRTY_LABEL = "training.urm.io/git-dirty"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "src": {"type": "path", "required": True},
    "base": {"type": "str", "required": True},
    "repository": {"type": "str", "required": True},
    "dest": {"type": "str", "default": "/workspace"},
    "workdir": {"type": "str"},
    "env": {"type": "dict", "default": {}},
    "labels": {"type": "dict", "default": {}},
    "git_labels": {"type": "bool", "default": True},
    "exclude": {"type": "list", "elements": "str", "default": []},
    "default_excludes": {"type": "bool", "default": True},
    "platform": {"type": "str", "default": "linux/amd64"},
    "max_size_mb": {"type": "int", "default": 512},
    "mount": {"type": "bool", "default": True},
    "registry_username": {"type": "str"},
    "registry_password": {"type": "str", "no_log": True},
    "docker_config": {"type": "path"},
    **REGISTRY_TLS_ARG_SPEC,
    # Blob uploads of a code layer take longer than a manifest HEAD.
    "registry_timeout": {"type": "float", "default": 60.0},
}


class CodeLayerError(ModuleFailure):
    """A code_layer failure."""


# -- image references ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    repository: Repository
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tail = f":{self.tag}" if self.tag else ""
        return f"{self.repository.name}{tail}" + (f"@{self.digest}" if self.digest else "")


def parse_image(value: str, option: str = "base") -> ImageRef:
    """``host[:port]/path[:tag][@sha256:…]``; no tag and no digest means ``latest``."""
    raw = (value or "").strip()
    name, _, digest = raw.partition("@")
    if digest and not DIGEST_RE.fullmatch(digest):
        raise ContextError(f"{option}={value!r} has an invalid digest: use @sha256:<64 hex>")
    host, slash, path = name.partition("/")
    tag = None
    if ":" in path:
        path, _, tag = path.rpartition(":")
    repo = parse_repository(f"{host}{slash}{path}", option)
    return ImageRef(repo, tag or None, digest or None)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(value: str) -> Platform:
    parts = (value or "").strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ContextError(
            f"platform={value!r} is not os/arch[/variant]: use e.g. linux/amd64 or linux/arm64/v8"
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


# -- the layer -------------------------------------------------------------------------------


class _HashingSink:
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass


@dataclass
class Layer:
    entries: list[Entry]
    file_count: int
    tree_size: int  # bytes of file content
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the gzip blob
    size: int  # bytes of the gzip blob
    file: IO[bytes] = field(repr=False)

    def close(self) -> None:
        self.file.close()


def normalise_dest(dest: str) -> str:
    """The layer prefix for an absolute ``dest`` ("/workspace" → "workspace/")."""
    clean = posixpath.normpath(dest or "/")
    if not dest.startswith("/") or clean.startswith("//"):
        raise ContextError(f"dest={dest!r} must be an absolute path in the image, e.g. /workspace")
    return "" if clean == "/" else clean.lstrip("/") + "/"


def layer_patterns(
    root: str, exclude: list[str], default_excludes: bool = True
) -> list[IgnorePattern]:
    """Default excludes, then the tree's .dockerignore, then ``exclude``: the last match wins,
    so a .dockerignore ``!data/small.csv`` re-includes a file the defaults exclude."""
    defaults = parse_dockerignore("\n".join(DEFAULT_EXCLUDES)) if default_excludes else []
    return defaults + load_dockerignore(root) + parse_dockerignore("\n".join(exclude))


def check_symlinks(entries: list[Entry]) -> None:
    """Refuse links whose target lies outside the tree: in the image they would dangle or, worse,
    point at a file of the base image. Links inside the tree stay links."""
    for entry in entries:
        if entry.kind != "symlink":
            continue
        target = entry.target
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise ContextError(
                f"src holds the symlink {entry.path} -> {target}, which points outside the tree: "
                "copy the file into the tree, make the link relative inside it, or exclude "
                f"{entry.path!r}"
            )


def build_layer(
    src: str,
    dest: str = "/workspace",
    exclude: list[str] | None = None,
    default_excludes: bool = True,
    max_size: int | None = None,
) -> Layer:
    """Walk ``src``, check it, and write the gzip layer to a temp file, hashing on the way."""
    if not src or not os.path.isdir(src):
        raise ContextError(
            f"src={src!r} is not a directory: give the source tree to put into the image"
        )
    root = os.path.realpath(src)
    prefix = normalise_dest(dest)
    entries = walk(root, layer_patterns(root, list(exclude or []), default_excludes), None, False)
    check_symlinks(entries)
    tree_size = sum(e.size for e in entries)
    if max_size is not None and tree_size > max_size:
        raise ContextError(
            f"src={src!r} holds {tree_size / 2**20:.1f} MiB after excludes, over max_size_mb="
            f"{max_size // 2**20}: exclude data, checkpoints or outputs (exclude or "
            ".dockerignore), or raise max_size_mb"
        )
    parents: list[Entry] = []
    if prefix:
        parts = prefix.rstrip("/").split("/")
        parents = [Entry("/".join(parts[: i + 1]), "dir") for i in range(len(parts))]
    out = tempfile.TemporaryFile(prefix="urm-code-layer-")  # noqa: SIM115 - returned open
    compressed = _HashingSink(out)
    try:
        # mtime 0 and no file name in the gzip header: the same tree gives the same bytes.
        with gzip.GzipFile(
            fileobj=compressed,  # type: ignore[arg-type]
            mode="wb",
            mtime=0,
            compresslevel=6,
            filename="",
        ) as gz:
            raw = _HashingSink(gz)
            with tarfile.TarFile(
                fileobj=raw,  # type: ignore[arg-type]
                mode="w",
                format=tarfile.PAX_FORMAT,
            ) as tar:
                add_entries(tar, root, parents)
                add_entries(tar, root, entries, prefix)
    except OSError as exc:
        out.close()
        raise ContextError(f"cannot read the source tree {src!r}: {exc}") from None
    out.seek(0)
    return Layer(
        entries=entries,
        file_count=sum(1 for e in entries if e.kind != "dir"),
        tree_size=tree_size,
        diff_id=f"sha256:{raw.hash.hexdigest()}",
        digest=f"sha256:{compressed.hash.hexdigest()}",
        size=compressed.size,
        file=out,
    )


def git_state(src: str) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding ``src``; (None, None) when there is none.

    Dirty means ``git status`` lists a change under ``src``. GIT_OPTIONAL_LOCKS=0 keeps git from
    writing the index while others work in the same checkout.
    """
    git = shutil.which("git")
    if not git or not os.path.isdir(src):
        return None, None
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}

    def _git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git, "-C", src, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    try:
        commit = _git("rev-parse", "--verify", "-q", "HEAD")
        if commit.returncode != 0:
            return None, None
        status = _git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None, None
    if status.returncode != 0:
        return commit.stdout.strip() or None, None
    return commit.stdout.strip() or None, bool(status.stdout.strip())


# -- manifests and config --------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _describe(platform: Mapping[str, Any]) -> str:
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(p) for p in parts if p) or "unknown"


def select_platform(index: Mapping[str, Any], platform: Platform, base: str) -> dict[str, Any]:
    """The index entry for ``platform`` (a variant is matched only when one is asked for)."""
    offered: list[str] = []
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform") or {}
        offered.append(_describe(plat))
        if (
            plat.get("os") == platform.os
            and plat.get("architecture") == platform.architecture
            and (platform.variant is None or plat.get("variant") == platform.variant)
            and entry.get("mediaType", OCI_MANIFEST) in MANIFEST_TYPES
        ):
            return dict(entry)
    raise ContextError(
        f"base={base} has no image for platform {platform} (it offers "
        f"{', '.join(offered) or 'none'}): pick a base built for {platform}, or set platform"
    )


@dataclass(frozen=True)
class ConfigOptions:
    dest: str
    workdir: str | None  # None: keep the base's
    env: dict[str, str]
    labels: dict[str, str]

    def canonical(self) -> dict[str, Any]:
        return {"dest": self.dest, "workdir": self.workdir, "env": self.env, "labels": self.labels}


def derive_tag(base_digest: str, layer_digest: str, platform: Platform, opts: ConfigOptions) -> str:
    """``code-`` + 16 hex over everything that decides the new manifest, so the tag can be
    looked up before anything is read from the registry beyond the base digest."""
    material = {
        "v": FORMAT_VERSION,
        "base": base_digest,
        "layer": layer_digest,
        "platform": str(platform),
        "config": opts.canonical(),
    }
    return TAG_PREFIX + hashlib.sha256(canonical_json(material)).hexdigest()[:TAG_HEX]


def new_config(
    base_config: Mapping[str, Any], diff_id: str, opts: ConfigOptions, created_by: str
) -> dict[str, Any]:
    """The base config plus our diff_id, a history entry, WORKDIR, env and labels."""
    config = copy.deepcopy(dict(base_config))
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs.setdefault("type", "layers")
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), diff_id]
    if isinstance(config.get("history"), list) and config["history"]:
        # Without a base history none is started: entries must match the layers one to one.
        config["history"].append({"created": EPOCH, "created_by": created_by})
    inner = config.get("config")
    if not isinstance(inner, dict):
        inner = config["config"] = {}
    if opts.workdir is not None:
        inner["WorkingDir"] = opts.workdir
    if opts.env:
        env = [str(e) for e in inner.get("Env") or []]
        for key in sorted(opts.env):
            line = f"{key}={opts.env[key]}"
            idx = next((i for i, e in enumerate(env) if e.split("=", 1)[0] == key), None)
            if idx is None:
                env.append(line)
            else:
                env[idx] = line
        inner["Env"] = env
    if opts.labels:
        labels = dict(inner.get("Labels") or {})
        labels.update(opts.labels)
        inner["Labels"] = labels
    return config


def new_manifest(
    base_manifest: Mapping[str, Any],
    media_type: str,
    config_blob: bytes,
    layer: Layer,
    base_ref: str,
    base_digest: str,
) -> dict[str, Any]:
    """The base manifest with the new config and our layer appended, of the base's own type."""
    manifest = copy.deepcopy(dict(base_manifest))
    manifest["schemaVersion"] = 2
    manifest["mediaType"] = media_type
    config_desc = dict(manifest.get("config") or {})
    config_desc.update(digest=sha256_digest(config_blob), size=len(config_blob))
    manifest["config"] = config_desc
    layer_type = DOCKER_LAYER if media_type == DOCKER_MANIFEST else OCI_LAYER
    manifest["layers"] = [
        *(manifest.get("layers") or []),
        {"mediaType": layer_type, "digest": layer.digest, "size": layer.size},
    ]
    if media_type == OCI_MANIFEST:
        annotations = dict(manifest.get("annotations") or {})
        annotations["org.opencontainers.image.base.digest"] = base_digest
        annotations["org.opencontainers.image.base.name"] = base_ref
        manifest["annotations"] = annotations
    return manifest


# -- the runner ------------------------------------------------------------------------------


def run(params: Mapping[str, Any], check_mode: bool) -> tuple[bool, dict[str, Any]]:
    secrets: list[str] = [str(params.get("registry_password") or "")]
    try:
        return _run(params, check_mode, secrets)
    except CodeLayerError as exc:
        raise CodeLayerError(mask_secrets(exc.message, secrets), exc.result) from None
    except (ContextError, RegistryError) as exc:
        raise CodeLayerError(mask_secrets(str(exc), secrets)) from None


def _options(params: Mapping[str, Any], git: tuple[str | None, bool | None]) -> ConfigOptions:
    dest = posixpath.normpath(params.get("dest") or "/workspace")
    normalise_dest(params.get("dest") or "/workspace")
    workdir = params.get("workdir")
    if workdir is None:
        workdir = dest
    elif workdir == "":
        workdir = None
    elif not str(workdir).startswith("/"):
        raise ContextError(f"workdir={workdir!r} must be an absolute path (or '' for the base's)")
    labels = {str(k): str(v) for k, v in (params.get("labels") or {}).items()}
    commit, dirty = git
    if params.get("git_labels", True) and commit:
        labels.setdefault(GIT_COMMIT_LABEL, commit)
        labels.setdefault(GIT_DIRTY_LABEL, "true" if dirty else "false")
    env = {str(k): str(v) for k, v in (params.get("env") or {}).items()}
    return ConfigOptions(dest, workdir, env, labels)


class _Appender:
    """The registry side of one append."""

    def __init__(self, client: RegistryClient, base: ImageRef, target: Repository) -> None:
        self.client = client
        self.base = base
        self.target = target
        self.uploaded_bytes = 0
        self.mounted: list[str] = []
        self.copied: list[str] = []
        self.present: list[str] = []

    def base_digest(self) -> str:
        if self.base.digest:
            return self.base.digest
        try:
            info = self.client.manifest_head(self.base.repository.path, self.base.reference)
        except RegistryAuthError:
            # The credential itself was accepted before; a 401 here is a missing pull right.
            raise ContextError(
                f"base={self.base}: the registry refuses to let {self.client._who()} read it "
                "(401 on its manifest; Harbor answers so for a project that does not exist, too): "
                f"check the name, or ask for pull access to {self.base.repository.path}"
            ) from None
        if not info.exists:
            raise ContextError(
                f"base={self.base} does not exist in registry {self.target.registry}: check the "
                "repository and tag (or build the deps image first)"
            )
        if not info.digest:
            raise ContextError(f"registry answered the HEAD of base={self.base} without a digest")
        return info.digest

    def _manifest(self, reference: str) -> tuple[dict[str, Any], str, str]:
        raw, media_type, _ = self.client.get_manifest(self.base.repository.path, reference)
        digest = sha256_digest(raw)
        if DIGEST_RE.fullmatch(reference) and digest != reference:
            raise ContextError(
                f"the manifest of base={self.base} has digest {digest}, not {reference}"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise ContextError(f"the manifest of base={self.base} is not JSON") from None
        if not isinstance(body, dict):
            raise ContextError(f"the manifest of base={self.base} is not a JSON object")
        media_type = str(body.get("mediaType") or media_type)
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            raise ContextError(
                f"base={self.base} has a {media_type or 'schema 1'} manifest: only OCI and Docker "
                "v2 (schema 2) images and indexes can take a layer; re-push the base with a "
                "current tool"
            )
        return body, media_type, digest

    def resolve(
        self, base_digest: str, platform: Platform
    ) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
        """(manifest, media type, digest, config) of the single-platform base image."""
        body, media_type, digest = self._manifest(base_digest)
        if media_type in INDEX_TYPES:
            entry = select_platform(body, platform, str(self.base))
            body, media_type, digest = self._manifest(str(entry["digest"]))
            if media_type not in MANIFEST_TYPES:
                raise ContextError(f"base={self.base}: the {platform} entry is not an image")
        # The config is the truth, also under an index that declares a platform it does not hold.
        config = self.config(body)
        found = Platform(str(config.get("os")), str(config.get("architecture")))
        if (found.os, found.architecture) != (platform.os, platform.architecture):
            raise ContextError(
                f"base={self.base} is a {found} image, not {platform}: pick a base built for "
                f"{platform}, or set platform: {found}"
            )
        return body, media_type, digest, config

    def config(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        desc = manifest.get("config") or {}
        digest = str(desc.get("digest") or "")
        resp = self.client.get_blob(self.base.repository.path, digest)
        raw = resp.content
        if sha256_digest(raw) != digest:
            raise ContextError(f"the config blob of base={self.base} does not match {digest}")
        config = json.loads(raw)
        if not isinstance(config, dict):
            raise ContextError(f"the config blob of base={self.base} is not a JSON object")
        return config

    def transfer_base_layers(self, manifest: Mapping[str, Any], mount: bool) -> None:
        if self.base.repository.path == self.target.path:
            return
        for desc in manifest.get("layers") or []:
            digest = str(desc.get("digest"))
            location = None
            if mount:
                location = self.client.mount_blob(
                    self.target.path, digest, self.base.repository.path
                )
                if location is None:
                    self.mounted.append(digest)
                    continue
            elif self.client.blob_exists(self.target.path, digest):
                self.present.append(digest)
                continue
            self._copy(digest, int(desc.get("size") or 0), location)

    def _copy(self, digest: str, size: int, location: str | None) -> None:
        """The fallback: stream the blob from the base repository into the target."""
        source = self.client.get_blob(self.base.repository.path, digest, stream=True)
        length = int(source.headers.get("Content-Length") or size)
        scope = (
            f"{repository_scope(self.target.path, 'pull,push')} "
            f"{repository_scope(self.base.repository.path, 'pull')}"
        )
        try:
            self.client.upload_blob(
                self.target.path,
                digest,
                _Stream(source.raw, length),
                location=location,
                scope=scope,
            )
        finally:
            source.close()
        self.copied.append(digest)
        self.uploaded_bytes += length

    def put_blob(self, digest: str, data: Any, size: int) -> None:
        if self.client.blob_exists(self.target.path, digest):
            self.present.append(digest)
            return
        self.client.upload_blob(self.target.path, digest, data)
        self.uploaded_bytes += size


class _Stream:
    """A file-like view of a streamed response with a known length (no chunked upload)."""

    def __init__(self, raw: Any, length: int) -> None:
        self.raw = raw
        self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size and size > 0 else None, decode_content=False)
        return bytes(data or b"")


def _run(
    params: Mapping[str, Any], check_mode: bool, secrets: list[str]
) -> tuple[bool, dict[str, Any]]:
    base = parse_image(params["base"], "base")
    target = parse_repository(params["repository"])
    if base.repository.registry != target.registry:
        raise ContextError(
            f"base={params['base']!r} and repository={params['repository']!r} are on different "
            "registries: a layer is appended inside one registry; push the base there first"
        )
    platform = parse_platform(params.get("platform") or "linux/amd64")
    max_mb = params.get("max_size_mb")
    src = str(params["src"])
    git = git_state(src) if os.path.isdir(src) else (None, None)
    opts = _options(params, git)
    layer = build_layer(
        src,
        opts.dest,
        list(params.get("exclude") or []),
        bool(params.get("default_excludes", True)),
        int(max_mb) * 2**20 if max_mb else None,
    )
    try:
        return _append(params, check_mode, secrets, base, target, platform, opts, layer, git)
    finally:
        layer.close()


def _append(
    params: Mapping[str, Any],
    check_mode: bool,
    secrets: list[str],
    base: ImageRef,
    target: Repository,
    platform: Platform,
    opts: ConfigOptions,
    layer: Layer,
    git: tuple[str | None, bool | None],
) -> tuple[bool, dict[str, Any]]:
    user, password = registry_credential(params, target.registry)
    if password:
        secrets.append(password)
    client = RegistryClient(
        target.registry,
        user,
        password,
        ca_cert=params.get("registry_ca_cert"),
        validate_certs=bool(params.get("registry_validate_certs", True)),
        timeout=float(params.get("registry_timeout") or 60.0),
        user_agent=USER_AGENT,
    )
    if user:
        try:
            client.check_credentials()
        except RegistryAuthError as exc:
            raise CodeLayerError(f"authentication failed: {exc}") from None
    appender = _Appender(client, base, target)
    base_digest = appender.base_digest()
    tag = derive_tag(base_digest, layer.digest, platform, opts)
    result: dict[str, Any] = {
        "repository": target.name,
        "tag": tag,
        "image": f"{target.name}:{tag}",
        "digest": None,
        "image_ref": None,
        "base_image": str(base),
        "base_digest": base_digest,
        "layer_digest": layer.digest,
        "layer_diff_id": layer.diff_id,
        "layer_size": layer.size,
        "file_count": layer.file_count,
        "tree_size": layer.tree_size,
        "dest": opts.dest,
        "workdir": opts.workdir,
        "git_commit": git[0],
        "git_dirty": git[1],
        "uploaded_bytes": 0,
        "mounted_layers": 0,
        "copied_layers": 0,
    }
    existing = client.manifest_head(target.path, tag)
    if existing.exists and existing.digest:
        result.update(
            digest=existing.digest,
            image_ref=f"{target.name}@{existing.digest}",
            action="would_skip" if check_mode else "skipped",
            msg=f"{target.name}:{tag} already holds this tree on this base ({existing.digest})",
        )
        return False, result

    manifest, media_type, platform_digest, base_config = appender.resolve(base_digest, platform)
    created_by = f"urm.training.code_layer: {layer.file_count} files in {opts.dest}"
    config_blob = canonical_json(new_config(base_config, layer.diff_id, opts, created_by))
    body = new_manifest(manifest, media_type, config_blob, layer, str(base), platform_digest)
    manifest_blob = canonical_json(body)
    digest = sha256_digest(manifest_blob)
    result.update(
        digest=digest,
        image_ref=f"{target.name}@{digest}",
        platform_digest=platform_digest,
        media_type=media_type,
    )
    if check_mode:
        result.update(action="would_append", msg=f"would append the layer as {target.name}:{tag}")
        return True, result

    if client.auth_scheme == "bearer":
        grant = client.push_access(target.path)
        if not grant.allowed:
            raise CodeLayerError(
                f"user {user!r} may not push to {target.name} (the token grants "
                f"{grant.granted_scope}): use a robot account of the project, or another "
                "repository",
                result,
            )
    appender.transfer_base_layers(manifest, bool(params.get("mount", True)))
    appender.put_blob(layer.digest, layer.file, layer.size)
    appender.put_blob(sha256_digest(config_blob), config_blob, len(config_blob))
    pushed = client.put_manifest(target.path, tag, manifest_blob, media_type)
    if pushed and pushed != digest:
        raise CodeLayerError(
            f"the registry stored the manifest as {pushed}, not {digest}: it rewrote it", result
        )
    result.update(
        action="appended",
        uploaded_bytes=appender.uploaded_bytes,
        mounted_layers=len(appender.mounted),
        copied_layers=len(appender.copied),
        msg=(
            f"appended {layer.file_count} files ({layer.size} bytes gzip) to {base}: "
            f"{target.name}@{digest}"
        ),
    )
    return True, result
