# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The docker_build runner: the same context and tag as kaniko_build, built and pushed through the
Docker Engine API (Docker, or podman's compatible socket via DOCKER_HOST).

The digest is the one the registry reports for the pushed tag (a manifest HEAD), not what the
daemon says: podman's push stream carries no digest, and a local image ID is not a registry digest.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.urm.training.plugins.module_utils._build_context import (
    BuildContext,
    ContextError,
    Repository,
    check_tag,
    credential_for,
    parse_repository,
    scan,
    tar_gz,
)
from ansible_collections.urm.training.plugins.module_utils._errors import ModuleFailure
from ansible_collections.urm.training.plugins.module_utils._registry import (
    REGISTRY_TLS_ARG_SPEC,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    mask_secrets,
)

LOG_LINES = 50

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "repository": {"type": "str", "required": True},
    "tag": {"type": "str"},
    "extra_tags": {"type": "list", "elements": "str", "default": []},
    "context_dir": {"type": "path", "required": True},
    "dockerfile": {"type": "str", "default": "Dockerfile"},
    "build_args": {"type": "dict", "default": {}},
    "target": {"type": "str"},
    "registry_username": {"type": "str"},
    "registry_password": {"type": "str", "no_log": True},
    "docker_config": {"type": "path"},
    "docker_host": {"type": "str", "fallback": (env_fallback, ["DOCKER_HOST"])},
    "pull": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 3600},
    **REGISTRY_TLS_ARG_SPEC,
}


class DockerBuildError(ModuleFailure):
    """A docker_build failure."""


@dataclass
class DockerRequest:
    repository: Repository
    tags: list[str]
    ctx: BuildContext
    build_args: dict[str, str]
    target: str | None
    username: str | None
    password: str | None

    @property
    def image(self) -> str:
        return f"{self.repository.name}:{self.tags[0]}"


def _credential(params: Mapping[str, Any], registry: str) -> tuple[str | None, str | None]:
    user, password = params.get("registry_username"), params.get("registry_password")
    if user or password:
        if not (user and password):
            raise ContextError("registry_username and registry_password go together: give both")
        return str(user), str(password)
    path = params.get("docker_config")
    if not path:
        return None, None
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ContextError(f"docker_config={path!r} is not a readable JSON file: {exc}") from None
    found = credential_for(config if isinstance(config, dict) else None, registry)
    if found is None:
        raise ContextError(
            f"docker_config={path!r} has no credential (username/password or auth) for the "
            f"registry {registry}"
        )
    return found


def parse_request(params: Mapping[str, Any]) -> DockerRequest:
    repository = parse_repository(params["repository"])
    build_args = {str(k): str(v) for k, v in (params.get("build_args") or {}).items()}
    target = params.get("target") or None
    ctx = scan(params["context_dir"], params.get("dockerfile") or "Dockerfile", build_args, target)
    tags = [check_tag(params["tag"])] if params.get("tag") else [ctx.tag]
    for extra in params.get("extra_tags") or []:
        if check_tag(extra, "extra_tags") not in tags:
            tags.append(extra)
    user, password = _credential(params, repository.registry)
    return DockerRequest(repository, tags, ctx, build_args, target, user, password)


def import_docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ContextError(
            "The Python library 'docker' (docker-py >= 7.0) is required by docker_build on the "
            f"host that runs it: pip install docker ({exc})"
        ) from None
    return docker


def _lines(stream: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """Decoded JSON chunks; podman sometimes sends several objects (or a partial one) per chunk."""
    buffer = ""
    for chunk in stream:
        if isinstance(chunk, dict):
            yield chunk
            continue
        buffer += chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)
        decoder = json.JSONDecoder()
        while buffer.strip():
            buffer = buffer.lstrip()
            try:
                obj, end = decoder.raw_decode(buffer)
            except ValueError:
                break
            buffer = buffer[end:]
            if isinstance(obj, dict):
                yield obj


def _error_of(chunk: Mapping[str, Any]) -> str | None:
    detail = chunk.get("errorDetail")
    if isinstance(detail, Mapping) and detail.get("message"):
        return str(detail["message"])
    if chunk.get("error"):
        return str(chunk["error"])
    return None


def build(api: Any, req: DockerRequest, archive: bytes, pull: bool) -> tuple[str | None, list[str]]:
    """Build through the Engine API; return (image id, log lines) or raise with the log tail."""
    log: list[str] = []
    image_id: str | None = None
    docker = import_docker()
    try:
        stream = api.build(
            fileobj=io.BytesIO(archive),
            custom_context=True,
            encoding="gzip",
            dockerfile=req.ctx.dockerfile,
            tag=req.image,
            buildargs=req.build_args or None,
            target=req.target,
            rm=True,
            forcerm=True,
            pull=pull,
            decode=False,
        )
        for chunk in _lines(stream):
            if "stream" in chunk:
                log.extend(str(chunk["stream"]).splitlines())
            error = _error_of(chunk)
            if error:
                raise DockerBuildError(_build_failed(req, error, log))
            aux = chunk.get("aux")
            if isinstance(aux, Mapping) and aux.get("ID"):
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise DockerBuildError(_build_failed(req, str(exc.explanation or exc), log)) from None
    except docker.errors.DockerException as exc:
        raise DockerBuildError(f"cannot talk to the Docker API: {exc}") from None
    return image_id, log


def _build_failed(req: DockerRequest, error: str, log: list[str]) -> str:
    tail = "\n".join(log[-LOG_LINES:]) or "(no build output)"
    return (
        f"building {req.image} failed: {error.strip()}\n"
        f"last {LOG_LINES} lines of the build log:\n{tail}"
    )


def push(api: Any, req: DockerRequest, tag: str) -> None:
    """Push one tag. Errors come as stream lines with HTTP 200 (podman and Docker alike)."""
    auth = {"username": req.username, "password": req.password} if req.username else None
    docker = import_docker()
    try:
        stream = api.push(req.repository.name, tag=tag, auth_config=auth, stream=True, decode=False)
        for chunk in _lines(stream):
            error = _error_of(chunk)
            if error:
                raise DockerBuildError(f"pushing {req.repository.name}:{tag} failed: {error}")
    except docker.errors.APIError as exc:
        raise DockerBuildError(
            f"pushing {req.repository.name}:{tag} failed: {exc.explanation or exc}"
        ) from None


def _client(params: Mapping[str, Any]) -> Any:
    docker = import_docker()
    host = params.get("docker_host") or os.environ.get("DOCKER_HOST") or None
    try:
        return docker.APIClient(base_url=host, timeout=int(params.get("timeout") or 3600))
    except docker.errors.DockerException as exc:
        raise ContextError(
            f"cannot connect to the Docker API at {host or 'the default socket'}: {exc}"
        ) from None


def run(params: Mapping[str, Any], check_mode: bool) -> tuple[bool, dict[str, Any]]:
    secrets: list[str] = [str(params.get("registry_password") or "")]
    try:
        return _run(params, check_mode, secrets)
    except DockerBuildError as exc:
        raise DockerBuildError(mask_secrets(exc.message, secrets), exc.result) from None
    except (ContextError, RegistryError) as exc:
        raise DockerBuildError(mask_secrets(str(exc), secrets)) from None


def _run(
    params: Mapping[str, Any], check_mode: bool, secrets: list[str]
) -> tuple[bool, dict[str, Any]]:
    started = time.monotonic()
    req = parse_request(params)
    if req.password:
        secrets.append(req.password)
    registry = RegistryClient(
        req.repository.registry,
        req.username,
        req.password,
        ca_cert=params.get("registry_ca_cert"),
        validate_certs=bool(params.get("registry_validate_certs", True)),
        timeout=float(params.get("registry_timeout") or 15.0),
    )
    if req.username:
        try:
            registry.check_credentials()
        except RegistryAuthError as exc:
            raise DockerBuildError(f"authentication failed: {exc}") from None
    result: dict[str, Any] = {
        "image": req.image,
        "repository": req.repository.name,
        "tag": req.tags[0],
        "tags": list(req.tags),
        "context_hash": f"sha256:{req.ctx.digest}",
        "context_files": req.ctx.file_count,
        "digest": None,
        "image_ref": None,
        "image_id": None,
        "duration": None,
    }
    if not params.get("force"):
        info = registry.manifest_head(req.repository.path, req.tags[0])
        if info.exists and info.digest:
            result.update(
                digest=info.digest,
                image_ref=f"{req.repository.name}@{info.digest}",
                action="would_skip" if check_mode else "skipped",
                msg=f"{req.image} already exists ({info.digest}): nothing to build",
            )
            return False, result
    if check_mode:
        result.update(action="would_build", msg=f"{req.image} would be built and pushed")
        return True, result
    archive = tar_gz(req.ctx)
    api = _client(params)
    image_id, _log = build(api, req, archive, bool(params.get("pull")))
    for extra in req.tags[1:]:
        api.tag(req.image, req.repository.name, extra)
    for tag in req.tags:
        push(api, req, tag)
    info = registry.manifest_head(req.repository.path, req.tags[0])
    if not (info.exists and info.digest):
        raise DockerBuildError(
            f"the push of {req.image} reported no error, but the registry has no manifest for it",
            result,
        )
    result.update(
        digest=info.digest,
        image_ref=f"{req.repository.name}@{info.digest}",
        image_id=image_id,
        duration=round(time.monotonic() - started, 1),
        action="built",
        msg=f"built and pushed {req.repository.name}@{info.digest}",
    )
    return True, result
