"""The git init container's script, run for real against git's own smart-HTTP server.

The script and its environment are taken from the Job that training_job renders; only the
Secret's values are filled in (the kubelet's part) and the termination message goes to a file.
The full path through a real pod is in tests/realnode/test_git_source.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.urm.training.plugins.module_utils._training import (
    build_spec,
    workload,
)
from tests.integration.git_http_server import GitHttpServer, git, make_repo
from tests.integration.git_ssh_server import GitSshServer, client_key

pytestmark = pytest.mark.integration

TOKEN = "glpat-planted-git-token-7741"


def run_init_container(
    tmp: Path, url: str, commit: str, secret: dict[str, str] | None, path: str = "/usr/bin:/bin"
) -> tuple[subprocess.CompletedProcess[str], Path, str]:
    spec = build_spec(
        {
            "name": "fetch-test",
            "namespace": "aic",
            "image": "registry.example/aic-misc/urm:1",
            "command": ["true"],
            "gpus": 1,
            "git": {
                "repo": url,
                "commit": commit,
                "path": str(tmp / "workspace"),
                "credentials_secret": "urm-git-cred" if secret else None,
            },
        }
    )
    pod = workload(spec)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    env: dict[str, str] = {"PATH": path}
    for item in init["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert secret is not None
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
    # The kubelet's part for an ssh remote: the Secret's items as 0400 files at the mount path.
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert secret is not None
            (mount,) = [m for m in init["volumeMounts"] if m["name"] == volume["name"]]
            keys = tmp / "ssh-secret"
            keys.mkdir()
            for item in volume["secret"]["items"]:
                (keys / item["path"]).write_text(secret[item["key"]])
                (keys / item["path"]).chmod(volume["secret"]["defaultMode"])
            env["GIT_SSH_COMMAND"] = env["GIT_SSH_COMMAND"].replace(mount["mountPath"], str(keys))
    env["HOME"] = str(tmp / "home")
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "workspace").mkdir()
    termination = tmp / "termination-log"
    script = init["command"][2].replace("/dev/termination-log", str(termination))
    result = subprocess.run(
        [*init["command"][:2], script], env=env, capture_output=True, text=True, timeout=120
    )
    message = termination.read_text() if termination.exists() else ""
    return result, tmp / "workspace", message


def all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    return make_repo(
        tmp_path / "srv", "urm.git", {"pretrain.py": "print('urm')\n", "models/urm.py": "X = 1\n"}
    )


def test_an_older_commit_is_fetched_by_id_with_credentials_kept_out_of_the_checkout(
    tmp_path: Path, repo: tuple[Path, list[str]]
) -> None:
    _, (first, second) = repo
    with GitHttpServer(tmp_path / "srv", "researcher", TOKEN) as server:
        result, code, message = run_init_container(
            tmp_path, server.url("urm.git"), first, {"username": "researcher", "password": TOKEN}
        )
        assert result.returncode == 0, result.stderr
        assert git(code, "rev-parse", "HEAD") == first
        assert (code / "models/urm.py").read_text() == "X = 1\n"
        assert not (code / "CHANGED").exists(), "the second commit's file must not be there"
        assert git(code, "remote", "get-url", "origin") == server.url("urm.git")
        assert TOKEN not in all_text(code) + result.stdout + result.stderr + message
        posts = [r for r in server.requests if r.method == "POST"]
        assert posts and all(r.user == "researcher" for r in posts)
        assert git(code, "rev-list", "--count", "HEAD") == "1", "depth 1: one commit of history"
    assert second != first


def test_a_server_that_refuses_fetch_by_id_gets_a_full_fetch(
    tmp_path: Path, repo: tuple[Path, list[str]]
) -> None:
    _, (first, _) = repo
    with GitHttpServer(tmp_path / "srv", "researcher", TOKEN, protocol_v2=False) as server:
        result, code, _ = run_init_container(
            tmp_path, server.url("urm.git"), first, {"username": "researcher", "password": TOKEN}
        )
        assert result.returncode == 0, result.stderr
        assert git(code, "rev-parse", "HEAD") == first
        assert int(git(code, "rev-list", "--count", "--all")) == 2, "the fallback took all"


@pytest.mark.parametrize(
    ("secret", "commit", "words"),
    [
        (
            {"username": "researcher", "password": "wrong-token"},
            None,
            "the server refused the credentials in the Secret",
        ),
        (None, None, "the server asks for credentials; name a Secret"),
        (
            {"username": "researcher", "password": TOKEN},
            "0" * 40,
            "the repository has no such commit",
        ),
    ],
)
def test_failures_end_in_one_plain_sentence(
    tmp_path: Path,
    repo: tuple[Path, list[str]],
    secret: dict[str, str] | None,
    commit: str | None,
    words: str,
) -> None:
    _, (first, _) = repo
    with GitHttpServer(tmp_path / "srv", "researcher", TOKEN) as server:
        result, _, message = run_init_container(
            tmp_path, server.url("urm.git"), commit or first, secret
        )
    assert result.returncode == 1
    assert message.startswith(f"could not fetch commit {commit or first} from ")
    assert words in message
    assert TOKEN not in message + result.stderr and "wrong-token" not in message + result.stderr


def test_an_image_without_git_is_named(tmp_path: Path, repo: tuple[Path, list[str]]) -> None:
    _, (first, _) = repo
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "printf", "tee", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    with GitHttpServer(tmp_path / "srv", "researcher", TOKEN) as server:
        result, _, message = run_init_container(
            tmp_path,
            server.url("urm.git"),
            first,
            {"username": "researcher", "password": TOKEN},
            path=str(bin_dir),
        )
    assert result.returncode == 1
    assert "the image has no git; set git.image to one that has" in message
    assert not server.requests, "nothing was fetched"


@pytest.fixture
def ssh_server(
    tmp_path: Path, repo: tuple[Path, list[str]]
) -> Iterator[tuple[GitSshServer, str, list[str]]]:
    private, public = client_key()
    with GitSshServer(tmp_path / "srv", public) as server:
        yield server, private, repo[1]


def test_over_ssh_the_deploy_key_fetches_the_commit(
    tmp_path: Path, ssh_server: tuple[GitSshServer, str, list[str]]
) -> None:
    server, private, (first, _) = ssh_server
    secret = {"ssh-privatekey": private, "known_hosts": server.known_hosts_line + "\n"}
    result, code, message = run_init_container(tmp_path, server.url("urm.git"), first, secret)
    assert result.returncode == 0, result.stderr + message
    assert git(code, "rev-parse", "HEAD") == first
    assert not (code / "CHANGED").exists()
    assert [(r.user, r.command, r.status) for r in server.requests] == [
        ("git", "git-upload-pack '/urm.git'", 0)
    ]
    assert "PRIVATE KEY" not in all_text(code) + result.stdout + result.stderr


def test_over_ssh_a_key_the_server_does_not_know_is_named(
    tmp_path: Path, ssh_server: tuple[GitSshServer, str, list[str]]
) -> None:
    server, _, (first, _) = ssh_server
    stranger, _ = client_key()
    secret = {"ssh-privatekey": stranger, "known_hosts": server.known_hosts_line + "\n"}
    result, _, message = run_init_container(tmp_path, server.url("urm.git"), first, secret)
    assert result.returncode == 1
    assert "the server refused the ssh key in the Secret: " in message, message
    assert "Permission denied (publickey" in message
    assert not server.requests


def test_over_ssh_an_unknown_host_key_is_not_trusted(
    tmp_path: Path, ssh_server: tuple[GitSshServer, str, list[str]]
) -> None:
    server, private, (first, _) = ssh_server
    other_host = GitSshServer(tmp_path, "ssh-ed25519 AAAA unused", host=server.host)
    other_host.port = server.port  # same address, another host key: a man in the middle
    secret = {"ssh-privatekey": private, "known_hosts": other_host.known_hosts_line + "\n"}
    result, _, message = run_init_container(tmp_path, server.url("urm.git"), first, secret)
    assert result.returncode == 1
    assert "the server's host key is not in known_hosts of the Secret" in message, message
    assert not server.requests, "nothing was asked of a server that was not trusted"
