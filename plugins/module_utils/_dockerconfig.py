# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Pure helpers for ``kubernetes.io/dockerconfigjson`` Secrets: address, build, merge, diff."""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DOCKERCONFIG_KEY = ".dockerconfigjson"
SECRET_TYPE = "kubernetes.io/dockerconfigjson"
REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted:changed>"


class RegistryAddressError(ValueError):
    """The registry option is not ``host[:port]``."""


class DockerConfigError(ValueError):
    """The live ``.dockerconfigjson`` cannot be decoded."""


@dataclass(frozen=True)
class RegistryAddress:
    host: str
    port: int | None
    scheme: str = "https"

    @property
    def key(self) -> str:
        """The bare ``host[:port]``, used verbatim as the ``auths`` key and in image names."""
        return f"{self.host}:{self.port}" if self.port is not None else self.host


def parse_registry(value: str) -> RegistryAddress:
    """Normalise ``host``, ``host:port``, ``https://host/`` or ``http://host:port``.

    Anything with a path, query, fragment or user info is rejected: those belong in image names
    or in the username/password options.
    """
    raw = (value or "").strip()
    if not raw:
        raise RegistryAddressError(
            "registry is empty: give the registry as host[:port], e.g. harbor.example.org"
        )
    scheme = "https"
    if "://" in raw:
        scheme = raw.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise RegistryAddressError(
                f"registry={value!r} has the scheme {scheme!r}: use host[:port], "
                "optionally prefixed by https:// or http://"
            )
        parts = urlsplit(raw)
    else:
        parts = urlsplit("//" + raw)
    if "@" in parts.netloc:
        raise RegistryAddressError(
            f"registry={value!r} contains user info: give the registry as host[:port] and the "
            "credential in username and password"
        )
    if parts.path not in ("", "/"):
        raise RegistryAddressError(
            f"registry={value!r} has a path ({parts.path!r}): give only host[:port]; the "
            "project and repository belong in the image name or require_push"
        )
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise RegistryAddressError(
            f"registry={value!r} has a query or fragment: give only host[:port]"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise RegistryAddressError(f"registry={value!r} has no host name: give host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise RegistryAddressError(
            f"registry={value!r} has an invalid port: use a number from 1 to 65535"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise RegistryAddressError(
            f"registry={value!r} has an invalid port: use a number from 1 to 65535"
        )
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return RegistryAddress(host=host, port=port, scheme=scheme)


def auth_entry(username: str, password: str, email: str | None = None) -> dict[str, str]:
    """One ``auths`` entry as kubectl writes it (``auth`` = base64(user:pass))."""
    entry = {
        "username": username,
        "password": password,
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode("ascii"),
    }
    if email:
        entry["email"] = email
    return entry


def merge_config(
    existing: Mapping[str, Any] | None, key: str, entry: Mapping[str, Any]
) -> dict[str, Any]:
    """Set our registry's entry; keep every other key and registry entry as it is."""
    config: dict[str, Any] = copy.deepcopy(dict(existing)) if existing else {}
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    auths[key] = dict(entry)
    config["auths"] = auths
    return config


def remove_entry(existing: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """Drop our registry's entry, keeping the rest."""
    config: dict[str, Any] = copy.deepcopy(dict(existing)) if existing else {}
    auths = config.get("auths")
    if isinstance(auths, dict):
        auths.pop(key, None)
    return config


def other_entries(config: Mapping[str, Any] | None, key: str) -> list[str]:
    auths = (config or {}).get("auths")
    if not isinstance(auths, dict):
        return []
    return sorted(k for k in auths if k != key)


def encode_config(config: Mapping[str, Any]) -> str:
    """The Secret ``data`` value: base64 of compact, key-sorted JSON (stable across runs)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode("ascii")


def decode_config(data_b64: str | None) -> dict[str, Any] | None:
    """Decode a Secret's ``.dockerconfigjson``; None when absent."""
    if data_b64 is None:
        return None
    try:
        config = json.loads(base64.b64decode(data_b64, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise DockerConfigError(f"the live {DOCKERCONFIG_KEY} is not base64 JSON") from exc
    if not isinstance(config, dict):
        raise DockerConfigError(f"the live {DOCKERCONFIG_KEY} is not a JSON object")
    return config


def secret_config(secret: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not secret:
        return None
    data = secret.get("data") or {}
    return decode_config(data.get(DOCKERCONFIG_KEY))


def configs_equal(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Compare decoded configs (key order and JSON formatting do not matter)."""
    return (a or None) == (b or None)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _redact(v) for k, v in value.items()}
    return REDACTED


def redacted_diff(before: Any, after: Any) -> tuple[Any, Any]:
    """Before/after structures with the same keys, where every leaf value is a placeholder.

    Unchanged leaves are ``<redacted>`` on both sides; a changed leaf is ``<redacted>`` before and
    ``<redacted:changed>`` after; added or removed keys appear on one side only. So a diff shows
    which keys and entries changed, and no value.
    """
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out_before: dict[str, Any] = {}
        out_after: dict[str, Any] = {}
        for key in sorted(set(before) | set(after), key=str):
            if key in before and key in after:
                out_before[key], out_after[key] = redacted_diff(before[key], after[key])
            elif key in before:
                out_before[key] = _redact(before[key])
            else:
                out_after[key] = _redact(after[key])
        return out_before, out_after
    if before is None and after is None:
        return None, None
    if before is None:
        return None, _redact(after)
    if after is None:
        return _redact(before), None
    if before == after:
        return _redact(before), _redact(after)
    if isinstance(before, Mapping) or isinstance(after, Mapping):
        return _redact(before), _redact_changed(after)
    return REDACTED, REDACTED_CHANGED


def _redact_changed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _redact_changed(v) for k, v in value.items()}
    return REDACTED_CHANGED
