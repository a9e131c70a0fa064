# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one Kubernetes client of the collection: auth options, client factory and REST helpers.

The generated ``kubernetes`` API classes change shape between releases (v37 validates bodies with
pydantic models); we only take the configuration loaders and the authenticated transport from the
library and speak plain JSON dicts to the API server, which every later module can reuse.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import env_fallback

AUTH_ENV: dict[str, str] = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "client_cert": "K8S_AUTH_CERT_FILE",
    "client_key": "K8S_AUTH_KEY_FILE",
    "proxy": "K8S_AUTH_PROXY",
}


def _fallback(option: str) -> tuple[Any, list[str]]:
    return (env_fallback, [AUTH_ENV[option]])


AUTH_ARG_SPEC: dict[str, dict[str, Any]] = {
    "kubeconfig": {"type": "raw", "fallback": _fallback("kubeconfig")},
    "context": {"type": "str", "fallback": _fallback("context")},
    "host": {"type": "str", "fallback": _fallback("host")},
    "api_key": {"type": "str", "no_log": True, "fallback": _fallback("api_key")},
    "validate_certs": {
        "type": "bool",
        "aliases": ["verify_ssl"],
        "fallback": _fallback("validate_certs"),
    },
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"], "fallback": _fallback("ca_cert")},
    "client_cert": {
        "type": "path",
        "aliases": ["cert_file"],
        "fallback": _fallback("client_cert"),
    },
    "client_key": {
        "type": "path",
        "aliases": ["key_file"],
        "no_log": False,
        "fallback": _fallback("client_key"),
    },
    "proxy": {"type": "str", "fallback": _fallback("proxy")},
}


def with_auth_options(*option_specs: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A module's argument spec: the shared auth options plus its own (copies, never shared)."""
    spec = {k: dict(v) for k, v in AUTH_ARG_SPEC.items()}
    for options in option_specs:
        spec.update({k: dict(v) for k, v in options.items()})
    return spec


NO_CONFIG_MESSAGE = (
    "No Kubernetes configuration found. Set kubeconfig (env K8S_AUTH_KUBECONFIG) to a kubeconfig "
    "path or dict, optionally with context (K8S_AUTH_CONTEXT); or set host (K8S_AUTH_HOST) with "
    "api_key (K8S_AUTH_API_KEY) or client_cert/client_key (K8S_AUTH_CERT_FILE/K8S_AUTH_KEY_FILE), "
    "plus ca_cert (K8S_AUTH_SSL_CA_CERT), validate_certs (K8S_AUTH_VERIFY_SSL) and proxy "
    "(K8S_AUTH_PROXY) as needed; or run inside a pod; or provide KUBECONFIG or ~/.kube/config."
)

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")

USER_AGENT = "urm.training/0.1.0"

# kind -> (apiVersion, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("v1", "namespaces", False),
    "Secret": ("v1", "secrets", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Service": ("v1", "services", True),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims", True),
    "Pod": ("v1", "pods", True),
    "Event": ("v1", "events", True),
    "ResourceQuota": ("v1", "resourcequotas", True),
    "Node": ("v1", "nodes", False),
    "Job": ("batch/v1", "jobs", True),
}

PATCH_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


class K8sError(Exception):
    """A Kubernetes failure with a message fit for fail_json."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class K8sApiError(K8sError):
    """The API server answered with an error status."""

    def __init__(self, message: str, status: int, reason: str = "", details: Any = None) -> None:
        super().__init__(message, status)
        self.reason = reason
        self.details = details


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN_RE.match(value))


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL_RE.match(value))


def dns1123_subdomain_error(field: str, value: str) -> str | None:
    if is_dns1123_subdomain(value):
        return None
    return (
        f"{field}={value!r} is not a valid Kubernetes name (DNS-1123 subdomain): use at most 253 "
        "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, "
        "for example 'urm-registry-cred'"
    )


def dns1123_label_error(field: str, value: str) -> str | None:
    if is_dns1123_label(value):
        return None
    return (
        f"{field}={value!r} is not a valid Kubernetes namespace name (DNS-1123 label): use at "
        "most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )


def import_kubernetes() -> Any:
    """Import the kubernetes library late, so that a missing library gives a clear message."""
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError as exc:
        raise K8sError(
            "The Python library 'kubernetes' (>= 31.0) is required on the host that runs this "
            "module (usually the controller): pip install -r requirements.txt, and make sure "
            f"ansible_python_interpreter points at that environment ({exc})"
        ) from exc
    return kubernetes


def _default_kubeconfig() -> str | None:
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [p for p in env.split(os.pathsep) if p]
        if any(os.path.exists(os.path.expanduser(p)) for p in paths):
            return env
        return None
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None


def build_configuration(auth: Mapping[str, Any]) -> Any:
    """Return a ``kubernetes.client.Configuration`` for the auth options.

    Order: kubeconfig (dict or path), explicit host, in-cluster service account, KUBECONFIG /
    ~/.kube/config. Explicit host/api_key/TLS/proxy options override what the kubeconfig says.
    """
    k8s = import_kubernetes()
    from kubernetes.config.config_exception import ConfigException

    cfg = k8s.client.Configuration()
    kubeconfig = auth.get("kubeconfig")
    context = auth.get("context") or None
    source = "kubeconfig"
    try:
        if isinstance(kubeconfig, Mapping):
            source = "the kubeconfig dict"
            k8s.config.load_kube_config_from_dict(
                dict(kubeconfig), context=context, client_configuration=cfg, persist_config=False
            )
        elif kubeconfig:
            path = os.path.expanduser(str(kubeconfig))
            source = f"kubeconfig={path}"
            if not os.path.exists(path):
                raise K8sError(
                    f"kubeconfig={path!r} does not exist: fix the kubeconfig option or "
                    "K8S_AUTH_KUBECONFIG"
                )
            k8s.config.load_kube_config(
                config_file=path, context=context, client_configuration=cfg, persist_config=False
            )
        elif auth.get("host"):
            source = "host"
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            source = "the in-cluster service account"
            k8s.config.load_incluster_config(client_configuration=cfg)
        else:
            default = _default_kubeconfig()
            if default is None:
                raise K8sError(NO_CONFIG_MESSAGE)
            source = f"the default kubeconfig ({default})"
            k8s.config.load_kube_config(
                config_file=default, context=context, client_configuration=cfg, persist_config=False
            )
    except ConfigException as exc:
        raise K8sError(f"Cannot load the Kubernetes configuration from {source}: {exc}") from exc

    if auth.get("host"):
        cfg.host = str(auth["host"]).rstrip("/")
    if auth.get("api_key"):
        # Older clients read "authorization", newer ones "BearerToken"; set both, and drop a
        # kubeconfig refresh hook that would put its own token back.
        bearer = f"Bearer {auth['api_key']}"
        cfg.api_key = {"BearerToken": bearer, "authorization": bearer}
        cfg.refresh_api_key_hook = None
    if auth.get("validate_certs") is not None:
        cfg.verify_ssl = bool(auth["validate_certs"])
    if auth.get("ca_cert"):
        cfg.ssl_ca_cert = auth["ca_cert"]
    if auth.get("client_cert"):
        cfg.cert_file = auth["client_cert"]
    if auth.get("client_key"):
        cfg.key_file = auth["client_key"]
    if auth.get("proxy"):
        cfg.proxy = auth["proxy"]
    if not cfg.host:
        raise K8sError(NO_CONFIG_MESSAGE)
    return cfg


def build_api_client(auth: Mapping[str, Any]) -> Any:
    """Return a ``kubernetes.client.ApiClient`` for the auth options."""
    k8s = import_kubernetes()
    return k8s.client.ApiClient(configuration=build_configuration(auth))


def resource_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    try:
        api_version, plural, namespaced = KINDS[kind]
    except KeyError:
        raise K8sError(
            f"kind={kind!r} is not known to the client; known: {sorted(KINDS)}"
        ) from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = prefix
    if namespaced:
        if not namespace:
            raise K8sError(f"{kind} is namespaced: a namespace is required")
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path


def describe(kind: str, namespace: str | None, name: str | None) -> str:
    if name and namespace:
        return f"{kind} {namespace}/{name}"
    if name:
        return f"{kind} {name}"
    if namespace:
        return f"{kind} objects in namespace {namespace}"
    return f"{kind} objects"


def api_error(
    status: int, reason: str, body: bytes | str | None, verb: str, what: str
) -> K8sApiError:
    """Translate an API error status into a sentence that names the object and the fix."""
    server_msg = ""
    details: Any = None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        status_obj = json.loads(text) if text else {}
        if isinstance(status_obj, dict):
            server_msg = str(status_obj.get("message") or "")
            details = status_obj.get("details")
    except ValueError:
        server_msg = text[:300]
    suffix = f": {server_msg}" if server_msg else ""
    if status == 401:
        msg = (
            f"The Kubernetes API server rejected the credentials (401 Unauthorized) when trying "
            f"to {verb} {what}; check kubeconfig/context/api_key (K8S_AUTH_*){suffix}"
        )
    elif status == 403:
        msg = (
            f"Forbidden (403): not allowed to {verb} {what}{suffix}. Ask the cluster admin for "
            "that permission or use a kubeconfig that has it"
        )
    elif status == 404:
        msg = f"Not found (404) when trying to {verb} {what}{suffix}"
    elif status == 409:
        msg = (
            f"Conflict (409) when trying to {verb} {what}{suffix}. The object changed on the "
            "server meanwhile or already exists; run again"
        )
    elif status == 422:
        causes = []
        if isinstance(details, dict):
            for cause in details.get("causes") or []:
                causes.append(f"{cause.get('field', '?')}: {cause.get('message', '')}")
        because = "; ".join(causes) if causes else server_msg
        msg = f"The API server rejected {what} as invalid (422) on {verb}: {because}"
    elif status >= 500:
        msg = f"The API server failed ({status} {reason}) to {verb} {what}{suffix}; try again later"
    else:
        msg = f"Cannot {verb} {what}: HTTP {status} {reason}{suffix}"
    return K8sApiError(msg, status, reason, details)


class K8sClient:
    """JSON-in, JSON-out access to the API server on top of a kubernetes ``ApiClient``."""

    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout

    @classmethod
    def from_params(cls, auth: Mapping[str, Any], timeout: float = 30.0) -> K8sClient:
        return cls(build_api_client(auth), timeout=timeout)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def auth_headers(self) -> dict[str, str]:
        """Headers every request carries: the credential, and a User-Agent that audit logs show."""
        headers: dict[str, str] = {"User-Agent": USER_AGENT}
        for setting in self.api_client.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the decoded JSON body or raise K8sError/K8sApiError."""
        k8s = import_kubernetes()
        import urllib3

        url = self.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "Content-Type": content_type}
        headers.update(self.auth_headers())
        verb = verb or method.lower()
        what = what or path
        try:
            resp = self.api_client.rest_client.request(
                method, url, headers=headers, body=body, _request_timeout=self.timeout
            )
        except k8s.client.exceptions.ApiException as exc:
            if not exc.status:
                raise K8sError(
                    f"Cannot reach the Kubernetes API server at {self.host} to {verb} {what}: "
                    f"{exc.reason}"
                ) from None
            raise api_error(exc.status, exc.reason or "", exc.body, verb, what) from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise K8sError(
                f"Cannot reach the Kubernetes API server at {self.host} to {verb} {what}: {reason}"
            ) from None
        raw = resp.data if getattr(resp, "data", None) is not None else resp.read()
        if not 200 <= resp.status < 300:
            raise api_error(resp.status, resp.reason or "", raw, verb, what)
        if not raw:
            return {}
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise K8sError(f"The API server sent a non-JSON answer to {verb} {what}") from None
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """Return the object, or None when it does not exist."""
        try:
            return self.request(
                "GET",
                resource_path(kind, namespace, name),
                verb="get",
                what=describe(kind, namespace, name),
            )
        except K8sApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit}
        result = self.request(
            "GET",
            resource_path(kind, namespace),
            query=query,
            verb="list",
            what=describe(kind, namespace, None),
        )
        items = result.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def create(
        self,
        kind: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name")
        api_version = KINDS.get(kind, ("v1",))[0]
        full = {"apiVersion": api_version, "kind": kind, **dict(body)}
        return self.request(
            "POST",
            resource_path(kind, namespace),
            query={"dryRun": "All"} if dry_run else None,
            body=full,
            verb="create",
            what=describe(kind, namespace, name),
        )

    def patch(
        self,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        patch_type: str = "merge",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            resource_path(kind, namespace, name),
            query={"dryRun": "All"} if dry_run else None,
            body=patch,
            content_type=PATCH_TYPES[patch_type],
            verb="patch",
            what=describe(kind, namespace, name),
        )

    def delete(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """Delete the object; return False when it was already gone."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            self.request(
                "DELETE",
                resource_path(kind, namespace, name),
                body=body,
                verb="delete",
                what=describe(kind, namespace, name),
            )
        except K8sApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def open_raw(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        timeout: float | tuple[float, float] | None = None,
        what: str | None = None,
    ) -> Any:
        """GET ``path`` and return the unread urllib3 response, for watches and logs.

        The caller reads (or streams) it and must release it. Error statuses raise like
        ``request`` does.
        """
        k8s = import_kubernetes()
        import urllib3

        url = self.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json, */*"}
        headers.update(self.auth_headers())
        what = what or path
        try:
            resp = self.api_client.rest_client.request(
                "GET", url, headers=headers, _request_timeout=timeout or self.timeout
            )
        except k8s.client.exceptions.ApiException as exc:
            if not exc.status:
                raise K8sError(
                    f"Cannot reach the Kubernetes API server at {self.host} to read {what}: "
                    f"{exc.reason}"
                ) from None
            raise api_error(exc.status, exc.reason or "", exc.body, "read", what) from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise K8sError(
                f"Cannot reach the Kubernetes API server at {self.host} to read {what}: {reason}"
            ) from None
        if not 200 <= resp.status < 300:
            raise api_error(resp.status, resp.reason or "", resp.read(), "read", what)
        return resp.response

    def namespace_exists(self, namespace: str) -> bool:
        """Whether the namespace exists, also for users who may not read Namespace objects.

        A namespace-only user gets 403 on the Namespace object; a namespaced list then answers 200
        where the user has rights, and RBAC gives 403 for a namespace that does not exist.
        """
        try:
            return self.get("Namespace", namespace) is not None
        except K8sApiError as exc:
            if exc.status != 403:
                raise
        for kind in ("Secret", "ServiceAccount", "ConfigMap", "Pod"):
            try:
                self.list(kind, namespace, limit=1)
                return True
            except K8sApiError as exc:
                if exc.status == 404:
                    return False
                if exc.status != 403:
                    raise
        raise K8sError(
            f"namespace={namespace!r} does not exist, or these credentials have no rights in it "
            "(403 on the namespace and on listing secrets, serviceaccounts, configmaps and pods "
            "in it): check the namespace name and the kubeconfig/context"
        )
