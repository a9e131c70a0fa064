"""A git-over-ssh server for tests: asyncssh in a thread, running git's own upload-pack.

It accepts one client public key, answers only `git-upload-pack '<repo>'` under its root (with
GIT_PROTOCOL passed through, so protocol v2 works), and records who asked for what. It listens
on an address the caller picks (loopback, or the real node's pod gateway) on a free port.
"""

from __future__ import annotations

import asyncio
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh


@dataclass
class SshRequest:
    user: str
    command: str
    status: int


@dataclass
class GitSshServer:
    root: Path
    authorized_key: str  # one OpenSSH public key line
    host: str = "127.0.0.1"
    requests: list[SshRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None
        self.port = 0

    @property
    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key().decode().strip()
        return f"[{self.host}]:{self.port} {public}"

    def url(self, repo: str) -> str:
        return f"ssh://git@{self.host}:{self.port}/{repo}"

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        user = process.get_extra_info("username")
        command = process.command or ""
        args = shlex.split(command)
        repo = self.root / args[1].lstrip("/") if len(args) == 2 else None
        if args[:1] != ["git-upload-pack"] or repo is None or not repo.is_dir():
            process.stderr.write(f"fatal: not a repository this server serves: {command}\n")
            self.requests.append(SshRequest(user, command, 128))
            process.exit(128)
            return
        env = {"PATH": "/usr/bin:/bin"}
        if process.env.get("GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = str(process.env["GIT_PROTOCOL"])
        proc = await asyncio.create_subprocess_exec(
            "git-upload-pack",
            str(repo),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
        status = await proc.wait()
        self.requests.append(SshRequest(user, command, status))
        process.exit(status)

    async def _start(self) -> None:
        self._server = await asyncssh.listen(
            self.host,
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(self.authorized_key),
            process_factory=self._handle,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def __enter__(self) -> GitSshServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def client_key() -> tuple[str, str]:
    """A fresh ed25519 key pair: (OpenSSH private key text, public key line)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = key.export_private_key("openssh").decode()
    public = key.export_public_key("openssh").decode().strip()
    return private, public
