"""The first task of train.yml: a missing or inconsistent inventory value is named with the way
to set it, before anything touches a cluster or a registry. Runs the real ICE inventory."""

from __future__ import annotations

import pytest

from tests.integration.ansible_runner import REPO, run_playbook

pytestmark = pytest.mark.integration

ICE = REPO / "inventories" / "ice"
CREDENTIALS = {
    "HARBOR_USERNAME": "alice",
    "HARBOR_CLI_SECRET": "planted-harbor-cli-secret-3301",
    "WANDB_API_KEY": "planted-wandb-key-3301",
    "KUBECONFIG": "/nonexistent/kubeconfig",
}


def train(**env: str) -> tuple[int, str]:
    full = {**CREDENTIALS, "URM_CODE_DIR": "", "URM_CODE_FROM": "", "GIT_TOKEN": ""}
    full.update(env)
    result = run_playbook(REPO / "train.yml", inventory=ICE, env=full, check=True, timeout=120)
    return result.rc, result.output


def test_missing_credentials_are_named_with_where_to_set_them() -> None:
    rc, out = train(HARBOR_CLI_SECRET="")
    assert rc != 0
    assert "urm_registry_password is empty or not set" in out
    assert "export HARBOR_CLI_SECRET" in out


def test_the_layer_default_needs_the_code_dir() -> None:
    rc, out = train()
    assert rc != 0
    assert "urm_code_from=layer" in out and "set urm_code_dir (URM_CODE_DIR on ICE)" in out


@pytest.mark.parametrize("commit", ["", "main", "3f1c9a6"])
def test_git_needs_a_full_commit_id(commit: str) -> None:
    rc, out = train(
        URM_CODE_FROM="git", URM_GIT_REPO="https://git.example.org/urm.git", URM_GIT_COMMIT=commit
    )
    assert rc != 0
    assert "urm_code_from=git" in out and "URM_GIT_COMMIT=$(git rev-parse HEAD)" in out


def test_an_unknown_code_source_is_refused() -> None:
    rc, out = train(URM_CODE_FROM="rsync")
    assert rc != 0 and "urm_code_from=rsync: it is layer, git or image" in out


def test_planted_secrets_stay_out_of_the_failure_output() -> None:
    rc, out = train(URM_CODE_FROM="git", GIT_TOKEN="planted-git-token-3301")
    assert rc != 0
    for secret in ("planted-harbor-cli-secret-3301", "planted-wandb-key-3301", "planted-git"):
        assert secret not in out
