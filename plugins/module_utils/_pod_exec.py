# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Run a command in a pod's container through the exec API, with stdin, and its exit status.

The transport is the kubernetes library's websocket client (channel protocol v5, or v4 on older
servers) on the configuration of our one K8sClient. Channel 0 is stdin, 1 stdout, 2 stderr and 3
the status: a ``Status`` object that says Success, or the exit code, or why the command could not
start. v4 cannot close stdin, so a command that reads stdin to its end must be told how many bytes
to read (``head -c``); with v5 stdin is closed after the last byte as well.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    api_error,
    import_kubernetes,
)

STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
CHUNK = 256 * 1024


class PodExecError(K8sError):
    """The command could not be run (no exec right, pod gone, no such executable, timeout)."""


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    message: str  # the status message, "" on success

    def stderr_text(self, limit: int = 2000) -> str:
        text = self.stderr.decode("utf-8", "replace").strip()
        return text if len(text) <= limit else "…" + text[-limit:]


def parse_status(raw: bytes | str | None) -> tuple[int | None, str]:
    """(exit code, message) from the status channel; exit code None when the command did not
    run at all (the message then says why, e.g. the executable is not in the image)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    if not text.strip():
        return None, "the API server closed the exec stream without an exit status"
    try:
        status = json.loads(text)
    except ValueError:
        return None, f"the API server sent an unreadable exec status: {text[:300]}"
    if not isinstance(status, dict):
        return None, f"the API server sent an unreadable exec status: {text[:300]}"
    if status.get("status") == "Success":
        return 0, ""
    message = str(status.get("message") or status.get("reason") or "exec failed")
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return int(str(cause.get("message"))), message
                except ValueError:
                    break
    return None, message


def exec_url(
    host: str, namespace: str, pod: str, command: Sequence[str], container: str | None, stdin: bool
) -> str:
    from kubernetes.stream.ws_client import get_websocket_url

    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/exec"
    query: list[tuple[str, Any]] = [("command", list(command))]
    if container:
        query.append(("container", container))
    query += [
        ("stdin", "true" if stdin else "false"),
        ("stdout", "true"),
        ("stderr", "true"),
        ("tty", "false"),
    ]
    return str(get_websocket_url(host.rstrip("/") + path, query))


def _connect(client: K8sClient, url: str, what: str, timeout: float) -> Any:
    import_kubernetes()
    import websocket
    from kubernetes.stream.ws_client import WSClient

    # The library passes only these two headers on; the configuration carries the TLS files.
    headers = {k.lower(): v for k, v in client.auth_headers().items()}
    previous = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(timeout)
    try:
        return WSClient(client.api_client.configuration, url, headers, False, binary=True)
    except websocket.WebSocketBadStatusException as exc:
        raise api_error(
            exc.status_code, exc.status_message or "", exc.resp_body, "exec into", what
        ) from None
    except (websocket.WebSocketException, OSError) as exc:
        raise PodExecError(
            f"Cannot reach the Kubernetes API server at {client.host} to exec into {what}: {exc}"
        ) from None
    finally:
        websocket.setdefaulttimeout(previous)


def _send(ws: Any, stdin: IO[bytes] | bytes, deadline: float) -> None:
    """Write stdin in chunks. A command that ends early (say, a missing tar) closes the stream:
    stop writing then, and let the caller read the exit status that came before the close."""
    import websocket

    view = memoryview(stdin) if isinstance(stdin, bytes) else None
    offset = 0
    while ws.is_open() and time.monotonic() < deadline:
        if view is not None:
            chunk = bytes(view[offset : offset + CHUNK])
            offset += CHUNK
        else:
            chunk = stdin.read(CHUNK)  # type: ignore[union-attr]
        if not chunk:
            return
        try:
            ws.write_channel(STDIN, chunk)
        except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionError):
            return
        # Drain what came back, so a chatty command never blocks on a full pipe.
        ws.update(timeout=0)


def exec_in_pod(
    client: K8sClient,
    namespace: str,
    pod: str,
    command: Sequence[str],
    *,
    container: str | None = None,
    stdin: IO[bytes] | bytes | None = None,
    timeout: float = 300.0,
) -> ExecResult:
    """Run ``command`` (no shell unless it names one) and wait for it to end.

    Returns the exit code with stdout and stderr. Raises PodExecError when it cannot run: the exec
    is refused (403), the pod is gone (404), the executable is missing, or ``timeout`` passes.
    """
    import websocket
    from kubernetes.stream.ws_client import V5_CHANNEL_PROTOCOL

    what = f"pod {namespace}/{pod}" + (f" (container {container})" if container else "")
    url = exec_url(client.host, namespace, pod, command, container, stdin is not None)
    deadline = time.monotonic() + timeout
    ws = _connect(client, url, what, timeout)
    try:
        if stdin is not None:
            _send(ws, stdin, deadline)
            if ws.subprotocol == V5_CHANNEL_PROTOCOL and ws.is_open():
                ws.close_channel(STDIN)
        while ws.is_open() and time.monotonic() < deadline:
            ws.update(timeout=min(1.0, max(deadline - time.monotonic(), 0.0)))
        if ws.is_open():
            raise PodExecError(
                f"{command[0]} in {what} did not finish within {timeout:.0f}s: raise the timeout, "
                "or check the container (kubectl exec into it)"
            )
        out = ws.read_channel(STDOUT) or b""
        err = ws.read_channel(STDERR) or b""
        code, message = parse_status(ws.read_channel(STATUS))
    except (websocket.WebSocketException, OSError) as exc:
        raise PodExecError(f"the exec stream of {what} broke off: {exc}") from None
    finally:
        ws.close()
    if code is None:
        raise PodExecError(f"cannot run {command[0]!r} in {what}: {message}")
    return ExecResult(code, bytes(out), bytes(err), message)
