"""The module and role through real ansible/ansible-playbook runs that fail before any API call."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.integration.ansible_runner import BIN, REPO, run_module, run_playbook

PLANTED = "Pl4nted-unit-Secret-9f3e"
ENV = {"URM_T_PASSWORD": PLANTED}
PASSWORD_LOOKUP = "{{ lookup('ansible.builtin.env', 'URM_T_PASSWORD') }}"


def base_args(**kw: Any) -> dict[str, Any]:
    args = {
        "namespace": "aic",
        "registry": "127.0.0.1:1",
        "username": "researcher",
        "password": PASSWORD_LOOKUP,
        "kubeconfig": "/nonexistent/unit-kc",
    }
    args.update(kw)
    return {k: v for k, v in args.items() if v is not None}


def test_ansible_doc_renders() -> None:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "urm.training.registry_secret"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for text in (
        "require_push",
        "K8S_AUTH_KUBECONFIG",
        "registry_ca_cert",
        "check_mode",
        "push_allowed",
    ):
        assert text in proc.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"password": ""}, "password is empty for user 'researcher'"),
        ({"registry": "https://127.0.0.1:15000/aic-misc"}, "has a path ('/aic-misc')"),
        ({"name": "Not_DNS"}, "name='Not_DNS' is not a valid Kubernetes name"),
        ({"no_such_option": "x"}, "Unsupported parameters"),
        ({"state": "sideways"}, "value of state must be one of: present, absent"),
    ],
)
def test_bad_input_fails_clearly(override: dict[str, Any], message: str) -> None:
    result = run_module("urm.training.registry_secret", base_args(**override), env=ENV, verbosity=3)
    assert result.rc != 0
    assert message in result.adhoc["msg"], result.output[-2000:]
    assert PLANTED not in result.output and PLANTED not in result.recorder_text


def test_module_defaults_group_sets_the_auth_options() -> None:
    play = [
        {
            "name": "Group defaults",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/urm.training.k8s": {"kubeconfig": "/nonexistent/from-group"}
            },
            "tasks": [
                {
                    "name": "Call the module without auth options",
                    "urm.training.registry_secret": {
                        "namespace": "aic",
                        "registry": "127.0.0.1:1",
                        "username": "u",
                        "password": PASSWORD_LOOKUP,
                    },
                }
            ],
        }
    ]
    result = run_playbook(play, env=ENV)
    assert result.rc != 0
    msg = result.task("Call the module without auth options")["msg"]
    assert "kubeconfig='/nonexistent/from-group' does not exist" in msg


def test_env_fallback_sets_the_auth_options() -> None:
    args = base_args(kubeconfig=None)
    result = run_module(
        "urm.training.registry_secret",
        args,
        env={**ENV, "K8S_AUTH_KUBECONFIG": "/nonexistent/from-env"},
    )
    assert "kubeconfig='/nonexistent/from-env' does not exist" in result.adhoc["msg"]


def role_play(**role_vars: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "Registry auth",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/urm.training.k8s": {"kubeconfig": "/nonexistent/unit-kc"}},
            "roles": [{"role": "registry_auth", "vars": role_vars}],
        }
    ]


def test_role_argument_spec_rejects_missing_inputs() -> None:
    result = run_playbook(role_play(registry_auth_registry="r"), env=ENV)
    assert result.rc != 0
    assert "registry_auth_namespace" in result.output


def test_role_hides_the_call_but_reports_the_reason() -> None:
    result = run_playbook(
        role_play(
            registry_auth_namespace="aic",
            registry_auth_registry="127.0.0.1:1/path",
            registry_auth_username="researcher",
            registry_auth_password=PASSWORD_LOOKUP,
        ),
        env=ENV,
        verbosity=3,
    )
    assert result.rc != 0
    assert "has a path ('/path')" in result.task("Fail with the registry check's reason")["msg"]
    assert "output has been hidden" in result.output
    assert PLANTED not in result.output and PLANTED not in result.recorder_text
