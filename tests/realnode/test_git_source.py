"""training_job's git source on the real node: the init container really clones one commit from
a git server with credentials from a Secret, and the training runs that code.

The git server is git's own http-backend (tests/integration/git_http_server.py) on the real
node's pod gateway, which only pods on this host can reach.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.ansible_runner import run_module, run_playbook
from tests.integration.git_http_server import GitHttpServer, make_repo
from tests.integration.git_ssh_server import GitSshServer, client_key
from tests.realnode.test_realnode import (  # noqa: F401
    cleanup,
    get_json,
    job_args,
    make_secret,
    private_image,
)

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

TOKEN_ENV = "URM_IT_GIT_TOKEN"
TOKEN = "glpat-planted-realnode-git-token-5521"

TRAIN = """
import pathlib, subprocess
head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
print("code at", head, "in", pathlib.Path.cwd(), flush=True)
print("model says", pathlib.Path("models/urm.py").read_text().strip(), flush=True)
print("changed file present:", pathlib.Path("CHANGED").exists(), flush=True)
"""


@pytest.fixture(scope="module")
def git_server(realnode, tmp_path_factory) -> Iterator[tuple[GitHttpServer, list[str]]]:
    root = tmp_path_factory.mktemp("git-srv")
    _, commits = make_repo(
        root, "urm.git", {"train.py": TRAIN, "models/urm.py": "MODEL = 'urm-v1'\n"}
    )
    gateway = realnode.exports["URM_LOCALCLUSTER_POD_GATEWAY"]
    with GitHttpServer(root, "researcher", TOKEN, host=gateway) as server:
        yield server, commits


@pytest.fixture
def git_secret(realnode, cleanup) -> str:  # noqa: F811
    name = f"rn-git-{uuid.uuid4().hex[:6]}"
    cleanup.append(("secret", name))
    result = run_module(
        "urm.training.env_secret",
        {
            "namespace": realnode.namespace,
            "name": name,
            "data": {
                "username": "researcher",
                "password": env_lookup(TOKEN_ENV),
            },
            "kubeconfig": str(realnode.researcher_kubeconfig),
        },
        env={TOKEN_ENV: TOKEN},
    )
    assert result.rc == 0, result.output[-2000:]
    return name


def git_job(realnode, name: str, image: str, repo: str, commit: str, **git: Any) -> dict:
    return job_args(
        realnode,
        name,
        image,
        command=["python3", "train.py"],
        image_pull_secrets=[git.pop("pull_secret")],
        git={"repo": repo, "commit": commit, **git},
    )


def registry_secret(realnode, cleanup) -> str:  # noqa: F811
    return make_secret(realnode, cleanup, realnode.users["researcher"])


def test_the_job_runs_the_requested_commit_fetched_with_the_secret(
    realnode,
    cleanup,  # noqa: F811
    private_image,  # noqa: F811
    git_server,
    git_secret,
) -> None:
    server, (first, second) = git_server
    pull = registry_secret(realnode, cleanup)
    name = f"rn-git-{uuid.uuid4().hex[:6]}"
    cleanup.append(("job", name))
    args = git_job(
        realnode,
        name,
        private_image,
        server.url("urm.git"),
        first,
        credentials_secret=git_secret,
        pull_secret=pull,
    )
    server.requests.clear()
    result = run_module("urm.training.training_job", args, verbosity=3)
    assert result.rc == 0, result.output[-3000:]
    assert result.adhoc["phase"] == "Succeeded", result.adhoc
    assert result.adhoc["nodes"] == [realnode.node]
    fetched = [r for r in server.requests if r.method == "POST"]
    assert fetched and {r.user for r in fetched} == {"researcher"}, server.requests

    job = get_json(realnode, "job", name)
    assert job["metadata"]["labels"]["training.urm.io/git-commit"] == first
    pods = get_json(realnode, "pods", "-l", f"job-name={name}")["items"]
    (pod,) = pods
    init = pod["status"]["initContainerStatuses"][0]
    assert init["name"] == "fetch-code"
    assert init["state"]["terminated"]["exitCode"] == 0
    logs = realnode.kubectl("-n", realnode.namespace, "logs", pod["metadata"]["name"]).stdout
    assert f"code at {first} in /workspace" in logs, logs
    assert "model says MODEL = 'urm-v1'" in logs
    assert "changed file present: False" in logs, "the second commit must not be in the tree"
    init_logs = realnode.kubectl(
        "-n", realnode.namespace, "logs", pod["metadata"]["name"], "-c", "fetch-code"
    ).stdout
    assert f"fetched {first}" in init_logs

    events = realnode.kubectl("-n", realnode.namespace, "get", "events", "-o", "json").stdout
    for text in (result.output, json.dumps(job), json.dumps(pod), logs, init_logs, events):
        assert TOKEN not in text

    info = run_module(
        "urm.training.training_info",
        {
            "namespace": realnode.namespace,
            "name": name,
            "kubeconfig": str(realnode.researcher_kubeconfig),
        },
    )
    assert info.rc == 0, info.output[-2000:]
    (row,) = info.adhoc["runs"]
    assert (row["commit"], row["dirty"], row["phase"]) == (first, False, "Succeeded"), row

    again = run_module("urm.training.training_job", args)
    assert again.rc == 0, again.output[-2000:]
    assert again.adhoc["changed"] is False and again.adhoc["action"] == "unchanged"

    moved = run_module(
        "urm.training.training_job", {**args, "git": {**args["git"], "commit": second}}
    )
    assert moved.rc != 0
    assert f'"commit": "{first}"' in moved.adhoc["msg"], moved.adhoc["msg"]
    assert f'"commit": "{second}"' in moved.adhoc["msg"]
    assert "on_change=fail, so nothing was touched" in moved.adhoc["msg"]


def test_an_unknown_commit_fails_the_run_with_gits_reason(
    realnode,
    cleanup,  # noqa: F811
    private_image,  # noqa: F811
    git_server,
    git_secret,
) -> None:
    server, _ = git_server
    pull = registry_secret(realnode, cleanup)
    name = f"rn-gitbad-{uuid.uuid4().hex[:6]}"
    cleanup.append(("job", name))
    missing = "0123456789abcdef0123456789abcdef01234567"
    result = run_module(
        "urm.training.training_job",
        git_job(
            realnode,
            name,
            private_image,
            server.url("urm.git"),
            missing,
            credentials_secret=git_secret,
            pull_secret=pull,
        ),
    )
    assert result.rc != 0
    msg = result.adhoc["msg"]
    assert "init container 'fetch-code' failed with exit code 1" in msg, msg
    assert f"could not fetch commit {missing}" in msg and "no such commit" in msg, msg
    assert TOKEN not in result.output


def test_a_missing_credential_secret_is_refused_before_anything_is_created(
    realnode,
    cleanup,  # noqa: F811
    git_server,
) -> None:
    server, (first, _) = git_server
    name = f"rn-gitnos-{uuid.uuid4().hex[:6]}"
    cleanup.append(("job", name))
    args = job_args(
        realnode,
        name,
        "registry.invalid/none:1",
        command=["python3", "train.py"],
        git={"repo": server.url("urm.git"), "commit": first, "credentials_secret": "no-such"},
    )
    result = run_module("urm.training.training_job", args)
    assert result.rc != 0
    assert "git.credentials_secret: Secret aic/no-such does not exist" in result.adhoc["msg"]
    found = realnode.kubectl(
        "-n", realnode.namespace, "get", "job", name, "--ignore-not-found", "-o", "name"
    ).stdout
    assert found.strip() == ""


def role_play(realnode, name: str, image: str, pull: str, git_vars: dict[str, Any]) -> list:
    return [
        {
            "name": "launch from git",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/urm.training.k8s": {"kubeconfig": str(realnode.researcher_nodes_kubeconfig)}
            },
            "roles": [{"role": "urm.training.training_launch"}],
            "vars": {
                "training_launch_namespace": realnode.namespace,
                "training_launch_run_name": name,
                "training_launch_image": image,
                "training_launch_command": ["python3", "train.py"],
                "training_launch_gpus": 1,
                "training_launch_gpu_type": realnode.accelerator,
                "training_launch_min_compute_capability": 0,
                "training_launch_cpu_per_gpu": "500m",
                "training_launch_memory_per_gpu": "256Mi",
                "training_launch_shm_size": "16Mi",
                "training_launch_image_pull_secrets": [pull],
                "training_launch_wait": "complete",
                "training_launch_wait_timeout": 180,
                **git_vars,
            },
        }
    ]


def env_lookup(var: str) -> str:
    return "{{ lookup('ansible.builtin.env', '" + var + "') }}"


def test_the_role_stores_the_token_and_runs_the_commit(
    realnode,
    cleanup,  # noqa: F811
    private_image,  # noqa: F811
    git_server,
) -> None:
    server, (first, _) = git_server
    pull = registry_secret(realnode, cleanup)
    name = f"rn-gitrole-{uuid.uuid4().hex[:6]}"
    secret = f"{name}-cred"
    cleanup.append(("secret", secret))
    cleanup.append(("job", name))
    play = role_play(
        realnode,
        name,
        private_image,
        pull,
        {
            "training_launch_code_git_repo": server.url("urm.git"),
            "training_launch_code_git_commit": first,
            "training_launch_code_git_username": "researcher",
            "training_launch_code_git_token": env_lookup(TOKEN_ENV),
            "training_launch_code_git_secret_name": secret,
        },
    )
    result = run_playbook(play, env={TOKEN_ENV: TOKEN}, verbosity=3)
    assert result.rc == 0, result.output[-3000:]
    assert TOKEN not in result.output
    stored = get_json(realnode, "secret", secret)
    assert base64.b64decode(stored["data"]["password"]).decode() == TOKEN
    assert base64.b64decode(stored["data"]["username"]).decode() == "researcher"
    pod = get_json(realnode, "pods", "-l", f"job-name={name}")["items"][0]
    logs = realnode.kubectl("-n", realnode.namespace, "logs", pod["metadata"]["name"]).stdout
    assert f"code at {first} in /workspace" in logs, logs
    again = run_playbook(play, env={TOKEN_ENV: TOKEN})
    assert again.rc == 0, again.output[-2000:]
    assert "changed=0" in again.output, again.output[-1500:]


def test_over_ssh_the_role_stores_the_deploy_key_and_the_pod_clones_with_it(
    realnode,
    cleanup,  # noqa: F811
    private_image,  # noqa: F811
    tmp_path_factory,
) -> None:
    root = tmp_path_factory.mktemp("git-ssh-srv")
    _, (first, _) = make_repo(
        root, "urm.git", {"train.py": TRAIN, "models/urm.py": "MODEL = 'urm-ssh'\n"}
    )
    private, public = client_key()
    gateway = realnode.exports["URM_LOCALCLUSTER_POD_GATEWAY"]
    pull = registry_secret(realnode, cleanup)
    name = f"rn-gitssh-{uuid.uuid4().hex[:6]}"
    secret = f"{name}-key"
    cleanup.append(("secret", secret))
    cleanup.append(("job", name))
    with GitSshServer(root, public, host=gateway) as server:
        play = role_play(
            realnode,
            name,
            private_image,
            pull,
            {
                "training_launch_code_git_repo": server.url("urm.git"),
                "training_launch_code_git_commit": first,
                "training_launch_code_git_ssh_private_key": env_lookup("URM_IT_GIT_SSH_KEY"),
                "training_launch_code_git_known_hosts": server.known_hosts_line,
                "training_launch_code_git_secret_name": secret,
            },
        )
        result = run_playbook(play, env={"URM_IT_GIT_SSH_KEY": private}, verbosity=3)
        assert result.rc == 0, result.output[-3000:]
        assert [(r.user, r.status) for r in server.requests] == [("git", 0)]
    key_body = private.splitlines()[1]
    assert key_body not in result.output
    pod = get_json(realnode, "pods", "-l", f"job-name={name}")["items"][0]
    logs = realnode.kubectl("-n", realnode.namespace, "logs", pod["metadata"]["name"]).stdout
    assert f"code at {first} in /workspace" in logs, logs
    assert "model says MODEL = 'urm-ssh'" in logs
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "git-ssh"]
    assert volume["secret"]["secretName"] == secret and volume["secret"]["defaultMode"] == 0o400
    assert key_body not in json.dumps(pod)
    stored = get_json(realnode, "secret", secret)
    assert base64.b64decode(stored["data"]["ssh-privatekey"]).decode() == private
