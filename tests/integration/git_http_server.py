"""A git smart-HTTP server for tests: Debian's `git http-backend` behind Basic auth.

It serves bare repositories under one root, on an address the caller picks (loopback, or the
real node's pod gateway), and records each request's method, path and user, so tests can tell a
fetch by commit id from a fetch of every branch.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


@dataclass
class Request:
    method: str
    path: str
    query: str
    user: str | None
    status: int


@dataclass
class GitHttpServer:
    root: Path
    username: str
    password: str
    host: str = "127.0.0.1"
    # False answers in protocol v0, where a commit that no branch or tag points at cannot be
    # asked for by id: the case of servers that refuse it.
    protocol_v2: bool = True
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if (user, password) == (server.username, server.password) else None

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                url = urlsplit(self.path)
                user = self._user()
                body = self._body() if self.command == "POST" else b""
                if user is None:
                    server.requests.append(Request(self.command, url.path, url.query, None, 401))
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                env = {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": url.path,
                    "QUERY_STRING": url.query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": user,
                    "REMOTE_ADDR": self.client_address[0],
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")
                    if server.protocol_v2
                    else "",
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "PATH": "/usr/bin:/bin",
                }
                result = subprocess.run(
                    [HTTP_BACKEND], input=body, capture_output=True, env=env, timeout=60
                )
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                server.requests.append(Request(self.command, url.path, url.query, user, status))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, repo: str) -> str:
        return f"http://{self.host}:{self.port}/{repo}"

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def make_repo(root: Path, name: str, files: dict[str, str]) -> tuple[Path, list[str]]:
    """A bare repo ``root/name`` with two commits (files, then one change); their ids."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    first = git(work, "rev-parse", "HEAD")
    (work / "CHANGED").write_text("second commit\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "second")
    second = git(work, "rev-parse", "HEAD")
    bare = root / name
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare, [first, second]
