# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The registry_secret runner: validate everything, then converge one dockerconfigjson Secret."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.urm.training.plugins.module_utils._dockerconfig import (
    DOCKERCONFIG_KEY,
    SECRET_TYPE,
    DockerConfigError,
    RegistryAddress,
    RegistryAddressError,
    auth_entry,
    configs_equal,
    encode_config,
    merge_config,
    other_entries,
    parse_registry,
    redacted_diff,
    remove_entry,
    secret_config,
)
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    AUTH_ARG_SPEC,
    K8sClient,
    K8sError,
    dns1123_label_error,
    dns1123_subdomain_error,
    with_auth_options,
)
from ansible_collections.urm.training.plugins.module_utils._options import string_map
from ansible_collections.urm.training.plugins.module_utils._registry import (
    MASK,
    REGISTRY_TLS_ARG_SPEC,
    RegistryClient,
    RegistryError,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "default": "urm-registry-cred"},
    "namespace": {"type": "str", "required": True},
    "registry": {"type": "str"},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "email": {"type": "str"},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "validate": {"type": "bool", "default": True},
    "require_push": {"type": "str"},
    "service_account": {"type": "str"},
    "labels": {"type": "dict", "default": {}},
    "annotations": {"type": "dict", "default": {}},
    **REGISTRY_TLS_ARG_SPEC,
}


def argument_spec() -> dict[str, dict[str, Any]]:
    return with_auth_options(ARGUMENT_SPEC)


class InputError(ValueError):
    """Bad input, found before anything is written."""


@dataclass
class SecretRequest:
    name: str
    namespace: str
    state: str
    registry: RegistryAddress | None
    username: str | None
    password: str | None
    email: str | None
    validate: bool
    require_push: str | None
    service_account: str | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    registry_ca_cert: str | None = None
    registry_validate_certs: bool = True
    registry_timeout: float = 15.0

    def __repr__(self) -> str:
        return (
            f"SecretRequest(name={self.name!r}, namespace={self.namespace!r}, "
            f"registry={self.registry!r}, username={self.username!r}, state={self.state!r})"
        )


def parse_request(params: Mapping[str, Any]) -> SecretRequest:
    """Check every option that can be checked without a server."""
    name = params.get("name") or ""
    namespace = params.get("namespace") or ""
    for err in (dns1123_subdomain_error("name", name), dns1123_label_error("namespace", namespace)):
        if err:
            raise InputError(err)
    state = params.get("state") or "present"
    registry: RegistryAddress | None = None
    if params.get("registry") is not None:
        try:
            registry = parse_registry(params["registry"])
        except RegistryAddressError as exc:
            raise InputError(str(exc)) from None
    username = params.get("username")
    password = params.get("password")
    if state == "present":
        if registry is None:
            raise InputError("registry is required with state=present, as host[:port]")
        if not username:
            raise InputError("username is empty: give the registry user (e.g. robot$project+ci)")
        if ":" in username:
            raise InputError("username must not contain ':' (it separates user and password)")
        if not password:
            raise InputError(
                f"password is empty for user {username!r}: give the registry password or robot "
                "secret (e.g. from Vault or an environment variable)"
            )
    service_account = params.get("service_account") or None
    if service_account:
        err = dns1123_subdomain_error("service_account", service_account)
        if err:
            raise InputError(err)
    require_push = (params.get("require_push") or "").strip().strip("/") or None
    if require_push and (":" in require_push or "@" in require_push or "//" in require_push):
        raise InputError(
            f"require_push={require_push!r} must be a repository such as project/name, without "
            "registry, tag or digest"
        )
    return SecretRequest(
        name=name,
        namespace=namespace,
        state=state,
        registry=registry,
        username=username,
        password=password,
        email=params.get("email") or None,
        validate=bool(params.get("validate", True)),
        require_push=require_push,
        service_account=service_account,
        labels=string_map("labels", params.get("labels"), InputError),
        annotations=string_map("annotations", params.get("annotations"), InputError),
        registry_ca_cert=params.get("registry_ca_cert"),
        registry_validate_certs=bool(params.get("registry_validate_certs", True)),
        registry_timeout=float(params.get("registry_timeout") or 15.0),
    )


@dataclass
class Outcome:
    changed: bool
    result: dict[str, Any]
    diff: dict[str, Any] | None = None


def _secret_view(secret: Mapping[str, Any] | None, config: Any) -> dict[str, Any] | None:
    if not secret:
        return None
    meta = secret.get("metadata") or {}
    return {
        "type": secret.get("type"),
        "metadata": {
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        },
        "data": {DOCKERCONFIG_KEY: config},
    }


def _registry_client(req: SecretRequest) -> RegistryClient:
    assert req.registry is not None
    return RegistryClient(
        req.registry.key,
        req.username,
        req.password,
        scheme=req.registry.scheme,
        ca_cert=req.registry_ca_cert,
        validate_certs=req.registry_validate_certs,
        timeout=req.registry_timeout,
    )


def _check_registry(
    req: SecretRequest, factory: Callable[[SecretRequest], RegistryClient]
) -> tuple[bool, bool | None]:
    """Validate the credential (and the push right) against the registry; raise on failure."""
    if not req.validate and not req.require_push:
        return False, None
    client = factory(req)
    validated = False
    if req.validate:
        client.check_credentials()
        validated = True
    push_allowed: bool | None = None
    if req.require_push:
        check = client.push_access(req.require_push)
        if not check.allowed:
            assert req.registry is not None
            raise InputError(
                f"require_push: user {req.username!r} may not push to repository "
                f"{req.require_push!r} at registry {req.registry.key}; the registry granted "
                f"'{check.granted_scope}'. Use a robot account with push rights on that project, "
                "or fix require_push"
            )
        push_allowed = True
    return validated, push_allowed


def _sa_patch(sa: Mapping[str, Any], secret: str, present: bool) -> dict[str, Any] | None:
    refs = [r for r in (sa.get("imagePullSecrets") or []) if isinstance(r, dict)]
    names = [r.get("name") for r in refs]
    if present and secret in names:
        return None
    if not present and secret not in names:
        return None
    new_refs = (
        [*refs, {"name": secret}] if present else [r for r in refs if r.get("name") != secret]
    )
    rv = (sa.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": rv}, "imagePullSecrets": new_refs}


def run(
    params: Mapping[str, Any],
    check_mode: bool,
    diff_mode: bool,
    k8s_factory: Callable[[Mapping[str, Any]], K8sClient] | None = None,
    registry_factory: Callable[[SecretRequest], RegistryClient] | None = None,
) -> Outcome:
    """Converge the Secret. Raises InputError, K8sError or RegistryError with a clear message."""
    req = parse_request(params)
    auth = {k: params.get(k) for k in AUTH_ARG_SPEC}
    k8s = (k8s_factory or K8sClient.from_params)(auth)
    result: dict[str, Any] = {
        "name": req.name,
        "namespace": req.namespace,
        "registry": req.registry.key if req.registry else None,
        "validated": False,
        "push_allowed": None,
        "secret_action": "unchanged",
        "service_account_updated": False,
    }

    if not k8s.namespace_exists(req.namespace):
        if req.state == "absent":
            result["msg"] = f"namespace {req.namespace} does not exist; nothing to remove"
            return Outcome(False, result)
        raise InputError(
            f"namespace={req.namespace!r} does not exist on the server {k8s.host}: create it "
            "first or fix the namespace"
        )
    sa = None
    if req.service_account:
        sa = k8s.get("ServiceAccount", req.service_account, req.namespace)
        if sa is None and req.state == "present":
            raise InputError(
                f"service_account={req.service_account!r} does not exist in namespace "
                f"{req.namespace}: create it first or leave service_account unset"
            )

    live = k8s.get("Secret", req.name, req.namespace)
    if live is not None and live.get("type") != SECRET_TYPE:
        raise InputError(
            f"Secret {req.namespace}/{req.name} exists with type {live.get('type')!r}, not "
            f"{SECRET_TYPE}; it is not a registry Secret: choose another name or delete it"
        )
    try:
        live_config = secret_config(live)
    except DockerConfigError:
        live_config = None  # unreadable: replaced by a valid config below
    live_meta = (live or {}).get("metadata") or {}

    desired: dict[str, Any] | None
    if req.state == "present":
        assert req.registry is not None and req.username and req.password
        result["validated"], result["push_allowed"] = _check_registry(
            req, registry_factory or _registry_client
        )
        entry = auth_entry(req.username, req.password, req.email)
        config = merge_config(live_config, req.registry.key, entry)
        labels = {**(live_meta.get("labels") or {}), **req.labels}
        annotations = {**(live_meta.get("annotations") or {}), **req.annotations}
        desired = {
            "type": SECRET_TYPE,
            "metadata": {"labels": labels, "annotations": annotations},
            "data": {DOCKERCONFIG_KEY: config},
        }
        if live is None:
            action = "created"
        elif (
            configs_equal(live_config, config)
            and labels == (live_meta.get("labels") or {})
            and annotations == (live_meta.get("annotations") or {})
        ):
            action = "unchanged"
        else:
            action = "updated"
    else:
        config = None
        if live is None:
            action = "unchanged"
        elif req.registry is not None and other_entries(live_config, req.registry.key):
            config = remove_entry(live_config, req.registry.key)
            action = "unchanged" if configs_equal(config, live_config) else "updated"
        else:
            action = "deleted"
        desired = None if action == "deleted" else _secret_view(live, config or live_config)

    sa_patch = None
    if sa is not None:
        sa_patch = _sa_patch(sa, req.name, req.state == "present")

    if not check_mode:
        if action == "created":
            k8s.create(
                "Secret",
                {
                    "metadata": {
                        "name": req.name,
                        "namespace": req.namespace,
                        "labels": req.labels,
                        "annotations": req.annotations,
                    },
                    "type": SECRET_TYPE,
                    "data": {DOCKERCONFIG_KEY: encode_config(config or {})},
                },
                req.namespace,
            )
        elif action == "updated":
            patch: dict[str, Any] = {
                "metadata": {"resourceVersion": live_meta.get("resourceVersion")},
                "data": {DOCKERCONFIG_KEY: encode_config(config or {})},
            }
            if req.state == "present":
                patch["metadata"]["labels"] = req.labels or None
                patch["metadata"]["annotations"] = req.annotations or None
                patch["metadata"] = {k: v for k, v in patch["metadata"].items() if v}
            k8s.patch("Secret", req.name, patch, req.namespace)
        elif action == "deleted":
            k8s.delete(
                "Secret",
                req.name,
                req.namespace,
                resource_version=live_meta.get("resourceVersion"),
            )
        if sa_patch is not None and req.service_account:
            k8s.patch("ServiceAccount", req.service_account, sa_patch, req.namespace)

    changed = action != "unchanged" or sa_patch is not None
    result["secret_action"] = action
    result["service_account_updated"] = sa_patch is not None
    verb = "would be" if check_mode else "was"
    what = f"Secret {req.namespace}/{req.name}"
    result["msg"] = f"{what} {verb} {action}" if action != "unchanged" else f"{what} is up to date"
    if sa_patch is not None:
        result["msg"] += (
            f"; ServiceAccount {req.service_account} {verb} "
            f"{'given' if req.state == 'present' else 'stripped of'} the imagePullSecret"
        )

    diff = None
    if diff_mode:
        before_view = _secret_view(live, live_config)
        before, after = redacted_diff(before_view, desired)
        if sa is not None:
            old_refs = [r.get("name") for r in sa.get("imagePullSecrets") or []]
            new_refs = (
                [r.get("name") for r in sa_patch["imagePullSecrets"]] if sa_patch else old_refs
            )
            sa_before, sa_after = redacted_diff(
                {"imagePullSecrets": old_refs}, {"imagePullSecrets": new_refs}
            )
            before = {**(before or {}), f"serviceaccount/{req.service_account}": sa_before}
            after = {**(after or {}), f"serviceaccount/{req.service_account}": sa_after}
        diff = {
            "before": before or {},
            "after": after or {},
            "before_header": f"{what} (values redacted)",
            "after_header": f"{what} (values redacted)",
        }
    return Outcome(changed, result, diff)


def scrub(message: str, params: Mapping[str, Any]) -> str:
    """Remove the password and its base64 ``auth`` form from a message, whatever produced it."""
    password = params.get("password")
    if not password:
        return message
    secrets = [password]
    if params.get("username"):
        secrets.append(auth_entry(str(params["username"]), str(password))["auth"])
    for secret in secrets:
        message = message.replace(str(secret), MASK)
    return message


__all__ = [
    "InputError",
    "K8sError",
    "Outcome",
    "RegistryError",
    "argument_spec",
    "parse_request",
    "run",
    "scrub",
]
