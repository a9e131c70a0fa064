"""Two Debian docker-registry endpoints over one storage: Harbor-like token auth, and Basic."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .pki import write_private
from .processes import Process
from .settings import TOKEN_ISSUER, TOKEN_SERVICE, Settings

REGISTRY_BINARY = "/usr/bin/docker-registry"
USERS = ("researcher", "lcadmin")


def ensure_credentials(settings: Settings) -> dict[str, str]:
    """Per-cluster random passwords, kept in a 0600 file."""
    path = settings.credentials_file
    if path.exists():
        return json.loads(path.read_text())["registry_users"]
    users = {user: secrets.token_urlsafe(18) for user in USERS}
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps({"registry_users": users}, indent=2) + "\n")
    return users


def _htpasswd(settings: Settings, users: dict[str, str]) -> Path:
    path = settings.state_dir / "registry" / "htpasswd"
    lines = []
    for user, password in users.items():
        # -i reads the password from stdin, so it never shows in the process table.
        out = subprocess.run(
            ["htpasswd", "-n", "-i", "-B", "-C", "6", user],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines.append(out)
    write_private(path, "\n".join(lines) + "\n")
    return path


def _registry_config(settings: Settings, port: int, auth: dict[str, object]) -> str:
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.state_dir / "registry" / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(16),
            "tls": {
                "certificate": str(settings.pki_dir / "registry.crt"),
                "key": str(settings.pki_dir / "registry.key"),
            },
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": auth,
    }
    # JSON is valid YAML, and the registry reads YAML.
    return json.dumps(config, indent=2)


def processes(settings: Settings) -> dict[str, Process]:
    return {
        name: Process(name, settings.run_dir, settings.logs_dir)
        for name in ("token-server", "registry-token", "registry-basic")
    }


def _https_ok(url: str, ca: Path, accept: tuple[int, ...] = (200, 401)) -> bool:
    if not ca.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as reply:
            return reply.status in accept
    except urllib.error.HTTPError as error:
        return error.code in accept
    except (OSError, ssl.SSLError):
        return False


def _checks(settings: Settings) -> dict[str, Callable[[], bool]]:
    ca = settings.ca_cert
    return {
        "token-server": lambda: _https_ok(
            f"https://127.0.0.1:{settings.token_server_port}/healthz", ca, (200,)
        ),
        # An unauthenticated /v2/ must be challenged: 401 proves auth is on.
        "registry-token": lambda: _https_ok(f"https://{settings.registry_token}/v2/", ca, (401,)),
        "registry-basic": lambda: _https_ok(f"https://{settings.registry_basic}/v2/", ca, (401,)),
    }


def health(settings: Settings) -> dict[str, bool]:
    return {name: check() for name, check in _checks(settings).items()}


def start(settings: Settings) -> None:
    if not os.access(REGISTRY_BINARY, os.X_OK):
        raise SystemExit(
            f"localcluster: {REGISTRY_BINARY} is missing; "
            "install the Debian package docker-registry"
        )
    if shutil.which("htpasswd") is None:
        raise SystemExit(
            "localcluster: htpasswd is missing; install the Debian package apache2-utils"
        )
    users = ensure_credentials(settings)
    regdir = settings.state_dir / "registry"
    regdir.mkdir(parents=True, exist_ok=True)
    htpasswd = _htpasswd(settings, users)

    token_config = regdir / "token-server.json"
    token_config.write_text(
        json.dumps(
            {
                "port": settings.token_server_port,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "signing_cert": str(settings.pki_dir / "token-signing.crt"),
                "signing_key": str(settings.pki_dir / "token-signing.key"),
                "tls_cert": str(settings.pki_dir / "registry.crt"),
                "tls_key": str(settings.pki_dir / "registry.key"),
                "credentials_file": str(settings.credentials_file),
            },
            indent=2,
        )
    )
    configs = {
        "registry-token": _registry_config(
            settings,
            settings.registry_token_port,
            {
                "token": {
                    "realm": settings.token_realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(settings.pki_dir / "token-signing.crt"),
                }
            },
        ),
        "registry-basic": _registry_config(
            settings,
            settings.registry_basic_port,
            {
                "htpasswd": {
                    "realm": "urm-localcluster-basic",
                    "path": str(htpasswd),
                }
            },
        ),
    }
    procs = processes(settings)
    package_root = str(Path(__file__).resolve().parent.parent)
    procs["token-server"].start(
        [sys.executable, "-m", "urm_localcluster.tokenserver", str(token_config)],
        env=dict(os.environ, PYTHONPATH=package_root),
    )
    for name, text in configs.items():
        path = regdir / f"{name}.yml"
        write_private(path, text)
        procs[name].start([REGISTRY_BINARY, "serve", str(path)])
    checks = _checks(settings)
    for name, proc in procs.items():
        proc.wait_healthy(checks[name], timeout=20)


def stop(settings: Settings) -> None:
    for proc in processes(settings).values():
        proc.stop()
