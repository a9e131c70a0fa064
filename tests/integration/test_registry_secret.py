"""registry_secret and the registry_auth role against the local cluster and both registries.

Passwords reach the plays only through environment variables (``lookup('ansible.builtin.env')``),
never through files or the command line.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._registry import (
    RegistryClient,
    RegistryTLSError,
)
from tests.integration.ansible_runner import RunResult, run_module, run_playbook

pytestmark = pytest.mark.integration

MODULE = "urm.training.registry_secret"
USER = "researcher"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
USER_AGENT = "urm.training/"
PW_ENV = "URM_IT_REGISTRY_PASSWORD"
PW = "{{ lookup('ansible.builtin.env', '" + PW_ENV + "') }}"


@pytest.fixture(params=["bearer", "basic"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def registry_of(lc: Any, mode: str) -> str:
    return str(lc.registry_token if mode == "bearer" else lc.registry_basic)


def env_for(lc: Any, password: str | None = None) -> dict[str, str]:
    return {PW_ENV: lc.users[USER] if password is None else password}


def args_for(lc: Any, mode: str, name: str, *, as_researcher: bool = True, **kw: Any) -> dict:
    args: dict[str, Any] = {
        "name": name,
        "namespace": lc.namespace,
        "registry": registry_of(lc, mode),
        "username": USER,
        "password": PW,
        "registry_ca_cert": str(lc.ca_cert),
        "kubeconfig": str(lc.researcher_kubeconfig if as_researcher else lc.admin_kubeconfig),
    }
    args.update(kw)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture
def secret_name(localcluster: Any) -> Iterator[str]:
    name = f"it-cred-{uuid.uuid4().hex[:8]}"
    yield name
    localcluster.kubectl(
        "-n", localcluster.namespace, "delete", "secret", name, "--ignore-not-found", check=False
    )
    sa = get_sa(localcluster)
    refs = [r for r in sa.get("imagePullSecrets") or [] if r.get("name") != name]
    if refs != (sa.get("imagePullSecrets") or []):
        patch = json.dumps({"imagePullSecrets": refs})
        localcluster.kubectl(
            "-n",
            localcluster.namespace,
            "patch",
            "sa",
            "default",
            "--type=merge",
            "-p",
            patch,
            check=False,
        )


def get_secret(lc: Any, name: str) -> dict[str, Any] | None:
    proc = lc.kubectl("-n", lc.namespace, "get", "secret", name, "-o", "json", check=False)
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return dict(json.loads(proc.stdout))


def get_sa(lc: Any) -> dict[str, Any]:
    proc = lc.kubectl("-n", lc.namespace, "get", "sa", "default", "-o", "json")
    return dict(json.loads(proc.stdout))


def decoded(secret: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])))


def plant_secret(lc: Any, name: str, auths: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Create the Secret through kubectl (stdin), as another tool would have."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": lc.namespace},
        "data": {
            ".dockerconfigjson": base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
        },
    }
    lc.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    secret = get_secret(lc, name)
    assert secret is not None
    return secret


def entry(user: str, password: str) -> dict[str, str]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"username": user, "password": password, "auth": auth}


class AuditWindow:
    """The apiserver audit events written after this point."""

    def __init__(self, lc: Any) -> None:
        self.lc = lc
        self.start = lc.audit_line_count()

    def _about(self, events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        """Events on the objects the module may write: the Secret ``name`` and ServiceAccounts.

        Other sessions share the cluster (and this client's User-Agent), so the filter is by
        object; the Secret names are unique per test.
        """
        found = []
        for event in events:
            ref = event.get("objectRef") or {}
            if ref.get("namespace") != self.lc.namespace:
                continue
            if (ref.get("resource") == "secrets" and ref.get("name") == name) or ref.get(
                "resource"
            ) == "serviceaccounts":
                found.append(event)
        return found

    def writes(self, name: str, require_reads: bool = True) -> list[dict[str, Any]]:
        """Create/update/patch/delete requests on the Secret or a ServiceAccount in the window."""
        deadline = time.monotonic() + 10
        time.sleep(1.0)  # the log backend writes asynchronously
        events = self._about(self.lc.audit_events(self.start), name)
        reads = [e for e in events if str(e.get("userAgent", "")).startswith(USER_AGENT)]
        while require_reads and not reads and time.monotonic() < deadline:
            time.sleep(0.5)
            events = self._about(self.lc.audit_events(self.start), name)
            reads = [e for e in events if str(e.get("userAgent", "")).startswith(USER_AGENT)]
        if require_reads:
            # Not vacuous: the module's own read of the Secret is in the window.
            assert any(e.get("verb") == "get" for e in reads), "the module's GET is not audited"
        return [e for e in events if e.get("verb") in WRITE_VERBS]

    def all_events(self) -> list[dict[str, Any]]:
        time.sleep(1.0)
        return list(self.lc.audit_events(self.start))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(
    lc: Any,
    mode: str,
    name: str,
    *,
    password: str | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    **kw: Any,
) -> tuple[RunResult, dict[str, Any]]:
    result = run_module(
        MODULE,
        args_for(lc, mode, name, **kw),
        env=env_for(lc, password),
        check=check,
        diff=diff,
        verbosity=verbosity,
    )
    return result, result.adhoc


# -- the whole flow -------------------------------------------------------------------------


@pytest.mark.parametrize("as_researcher", [True, False], ids=["researcher", "admin"])
def test_flow(localcluster: Any, mode: str, secret_name: str, as_researcher: bool) -> None:
    lc = localcluster
    kw = {
        "as_researcher": as_researcher,
        "service_account": "default",
        "require_push": "aic-misc/it-flow",
        "labels": {"app.kubernetes.io/part-of": "it"},
    }

    run, res = call(lc, mode, secret_name, **kw)
    assert run.rc == 0, run.output[-3000:]
    assert res["changed"] is True and res["secret_action"] == "created"
    assert res["validated"] is True and res["push_allowed"] is True
    assert res["registry"] == registry_of(lc, mode) and res["name"] == secret_name
    assert res["namespace"] == lc.namespace and res["service_account_updated"] is True
    secret = get_secret(lc, secret_name)
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    assert decoded(secret) == {"auths": {registry_of(lc, mode): entry(USER, lc.users[USER])}}
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/part-of": "it"}
    assert {"name": secret_name} in get_sa(lc)["imagePullSecrets"]

    run, res = call(lc, mode, secret_name, **kw)
    assert run.rc == 0 and res["changed"] is False and res["secret_action"] == "unchanged"
    live = get_secret(lc, secret_name)
    assert live is not None
    assert live["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    refs = [r["name"] for r in get_sa(lc)["imagePullSecrets"]]
    assert refs.count(secret_name) == 1

    run, res = call(lc, mode, secret_name, state="absent", **kw)
    assert run.rc == 0 and res["changed"] is True and res["secret_action"] == "deleted"
    assert get_secret(lc, secret_name) is None
    assert secret_name not in [r["name"] for r in get_sa(lc).get("imagePullSecrets") or []]

    run, res = call(lc, mode, secret_name, state="absent", **kw)
    assert run.rc == 0 and res["changed"] is False


def test_registry_url_forms_are_normalised(localcluster: Any, secret_name: str) -> None:
    lc = localcluster
    run, res = call(lc, "bearer", secret_name, registry=f"https://{lc.registry_token}/")
    assert run.rc == 0, run.output[-2000:]
    assert res["registry"] == lc.registry_token
    secret = get_secret(lc, secret_name)
    assert secret is not None and list(decoded(secret)["auths"]) == [lc.registry_token]


# -- changes, failures and check mode ---------------------------------------------------------


def test_rotated_password_reports_redacted_diff(
    localcluster: Any, mode: str, secret_name: str
) -> None:
    lc = localcluster
    registry = registry_of(lc, mode)
    other = entry("someone", "other-registry-password")
    old = "old-rotated-away-password"
    plant_secret(lc, secret_name, {registry: entry(USER, old), "other.example:5000": other})

    run, res = call(lc, mode, secret_name, diff=True)
    assert run.rc == 0, run.output[-3000:]
    assert res["changed"] is True and res["secret_action"] == "updated"
    ours_after = res["diff"]["after"]["data"][".dockerconfigjson"]["auths"][registry]
    ours_before = res["diff"]["before"]["data"][".dockerconfigjson"]["auths"][registry]
    assert ours_after == {
        "username": "<redacted>",
        "password": "<redacted:changed>",
        "auth": "<redacted:changed>",
    }
    assert set(ours_before.values()) == {"<redacted>"}
    kept = res["diff"]["after"]["data"][".dockerconfigjson"]["auths"]["other.example:5000"]
    assert set(kept.values()) == {"<redacted>"}
    text = run.output + run.recorder_text
    for secret in (
        lc.users[USER],
        old,
        "other-registry-password",
        entry(USER, old)["auth"],
        entry(USER, lc.users[USER])["auth"],
    ):
        assert secret not in text

    live = get_secret(lc, secret_name)
    assert live is not None
    auths = decoded(live)["auths"]
    assert auths[registry] == entry(USER, lc.users[USER])
    assert auths["other.example:5000"] == other

    run, res = call(lc, mode, secret_name, diff=True)
    assert run.rc == 0 and res["changed"] is False


def test_bad_password_fails_and_leaves_secret_untouched(
    localcluster: Any, mode: str, secret_name: str
) -> None:
    lc = localcluster
    registry = registry_of(lc, mode)
    before = plant_secret(lc, secret_name, {registry: entry(USER, "whatever-was-there")})
    window = AuditWindow(lc)
    wrong = "Wr0ng-" + lc.users[USER]
    run, res = call(lc, mode, secret_name, password=wrong, verbosity=3)
    assert run.rc != 0
    assert res.get("failed") is True
    assert f"Authentication failed for user '{USER}' at registry {registry}" in res["msg"]
    assert wrong not in run.output and wrong not in run.recorder_text
    assert window.writes(secret_name) == []
    after = get_secret(lc, secret_name)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]


def test_bad_password_on_new_secret_writes_nothing(
    localcluster: Any, mode: str, secret_name: str
) -> None:
    lc = localcluster
    window = AuditWindow(lc)
    run, res = call(lc, mode, secret_name, password="not-the-password")
    assert run.rc != 0 and "Authentication failed" in res["msg"]
    assert window.writes(secret_name) == []
    assert get_secret(lc, secret_name) is None


def test_registry_down_gives_clear_error_and_writes_nothing(
    localcluster: Any, secret_name: str
) -> None:
    lc = localcluster
    port = free_port()
    window = AuditWindow(lc)
    run, res = call(lc, "bearer", secret_name, registry=f"127.0.0.1:{port}")
    assert run.rc != 0
    assert f"Cannot connect to registry 127.0.0.1:{port}" in res["msg"]
    assert "Connection refused" in res["msg"]
    assert window.writes(secret_name) == []
    assert get_secret(lc, secret_name) is None


def test_untrusted_registry_certificate_is_a_tls_error(localcluster: Any, secret_name: str) -> None:
    lc = localcluster
    run, res = call(lc, "basic", secret_name, registry_ca_cert=None)
    assert run.rc != 0
    assert "TLS verification failed for registry" in res["msg"]
    assert "registry_ca_cert" in res["msg"]
    assert get_secret(lc, secret_name) is None


def test_check_mode_makes_zero_writes(localcluster: Any, mode: str, secret_name: str) -> None:
    lc = localcluster
    registry = registry_of(lc, mode)
    window = AuditWindow(lc)
    run, res = call(lc, mode, secret_name, check=True, diff=True, service_account="default")
    assert run.rc == 0, run.output[-3000:]
    assert res["changed"] is True and "would be created" in res["msg"]
    assert res["secret_action"] == "created"
    assert window.writes(secret_name) == []
    assert get_secret(lc, secret_name) is None

    plant_secret(lc, secret_name, {registry: entry(USER, "stale")})
    window = AuditWindow(lc)
    run, res = call(lc, mode, secret_name, check=True, diff=True, service_account="default")
    assert run.rc == 0 and res["changed"] is True and res["secret_action"] == "updated"
    assert res["diff"]["after"]["serviceaccount/default"]["imagePullSecrets"] == (
        "<redacted:changed>"
    )
    run, res = call(lc, mode, secret_name, check=True, state="absent")
    assert run.rc == 0 and res["changed"] is True and res["secret_action"] == "deleted"
    assert window.writes(secret_name) == []
    live = get_secret(lc, secret_name)
    assert live is not None and decoded(live)["auths"][registry]["password"] == "stale"
    assert secret_name not in [r["name"] for r in get_sa(lc).get("imagePullSecrets") or []]

    # Positive control: the same call without check mode shows up as writes in the window.
    window = AuditWindow(lc)
    run, res = call(lc, mode, secret_name, service_account="default")
    assert run.rc == 0 and res["changed"] is True
    verbs = sorted((e["verb"], e["objectRef"]["resource"]) for e in window.writes(secret_name))
    assert ("patch", "secrets") in verbs and ("patch", "serviceaccounts") in verbs


def test_require_push_denied_names_repository_and_granted_scope(
    localcluster: Any, secret_name: str
) -> None:
    lc = localcluster
    window = AuditWindow(lc)
    run, res = call(lc, "bearer", secret_name, require_push="library/busybox")
    assert run.rc != 0
    assert "may not push to repository 'library/busybox'" in res["msg"]
    assert "granted 'repository:library/busybox:pull'" in res["msg"]
    assert window.writes(secret_name) == []
    assert get_secret(lc, secret_name) is None


BAD_INPUT = [
    ({"password": ""}, "password is empty for user 'researcher'"),
    ({"registry": "127.0.0.1:15000/aic-misc"}, "has a path ('/aic-misc')"),
    ({"name": "Not_A_DNS_Name"}, "is not a valid Kubernetes name (DNS-1123"),
    ({"unknown_option": "x"}, "Unsupported parameters"),
    ({"namespace": "no-such-namespace-it"}, "no-such-namespace-it"),
]


@pytest.mark.parametrize("as_researcher", [True, False], ids=["researcher", "admin"])
@pytest.mark.parametrize(("override", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_fails_before_any_write(
    localcluster: Any,
    mode: str,
    secret_name: str,
    override: dict[str, Any],
    message: str,
    as_researcher: bool,
) -> None:
    lc = localcluster
    window = AuditWindow(lc)
    override = dict(override)
    name = override.pop("name", secret_name)
    run, res = call(lc, mode, name, as_researcher=as_researcher, **override)
    assert run.rc != 0
    assert message in res["msg"], res["msg"]
    if "namespace" in override:
        assert "does not exist" in res["msg"]
    assert window.writes(secret_name, require_reads=False) == []
    assert get_secret(lc, secret_name) is None


# -- the role, module_defaults and the planted password ---------------------------------------


def role_play(lc: Any, mode: str, name: str, state: str = "present") -> list[dict[str, Any]]:
    return [
        {
            "name": "Registry auth as the researcher",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/urm.training.k8s": {"kubeconfig": str(lc.researcher_kubeconfig)}
            },
            "roles": [
                {
                    "role": "registry_auth",
                    "vars": {
                        "registry_auth_secret_name": name,
                        "registry_auth_namespace": lc.namespace,
                        "registry_auth_registry": registry_of(lc, mode),
                        "registry_auth_username": USER,
                        "registry_auth_password": PW,
                        "registry_auth_require_push": "aic-misc/it-role",
                        "registry_auth_service_account": "default",
                        "registry_auth_registry_ca_cert": str(lc.ca_cert),
                        "registry_auth_state": state,
                    },
                }
            ],
        }
    ]


def test_role_with_module_defaults(localcluster: Any, mode: str, secret_name: str) -> None:
    lc = localcluster
    run = run_playbook(role_play(lc, mode, secret_name), env=env_for(lc))
    assert run.rc == 0, run.output[-3000:]
    assert run.task("Check the registry credential and store it as a Secret")["changed"] is True
    secret = get_secret(lc, secret_name)
    assert secret is not None
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "urm.training"}
    rerun = run_playbook(role_play(lc, mode, secret_name), env=env_for(lc))
    assert rerun.rc == 0
    assert rerun.task("Check the registry credential and store it as a Secret")["changed"] is False
    bad = run_playbook(role_play(lc, mode, secret_name), env=env_for(lc, "wrong-password"))
    assert bad.rc != 0
    assert (
        "Authentication failed for user 'researcher'"
        in bad.task("Fail with the registry check's reason")["msg"]
    )
    gone = run_playbook(role_play(lc, mode, secret_name, state="absent"), env=env_for(lc, ""))
    assert gone.rc == 0, gone.output[-3000:]
    assert get_secret(lc, secret_name) is None


def test_planted_password_appears_nowhere(localcluster: Any, mode: str, secret_name: str) -> None:
    lc = localcluster
    password = lc.users[USER]
    registry = registry_of(lc, mode)
    wrong = "Planted-Wrong-" + uuid.uuid4().hex
    window = AuditWindow(lc)
    task_args = args_for(
        lc, mode, secret_name, service_account="default", require_push="aic-misc/it-leak"
    )
    play = [
        {
            "name": "Leak check",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"name": "Create", MODULE: task_args, "diff": True},
                {"name": "Rerun", MODULE: task_args, "diff": True},
                {
                    "name": "Wrong password",
                    MODULE: {**task_args, "password": wrong},
                    "ignore_errors": True,
                },
                {
                    "name": "Unknown option",
                    MODULE: {**task_args, "bogus": 1},
                    "ignore_errors": True,
                },
                {
                    "name": "Check mode absent",
                    MODULE: {**task_args, "state": "absent"},
                    "check_mode": True,
                    "diff": True,
                },
            ],
        }
    ]
    run = run_playbook(
        play, env={**env_for(lc), "URM_IT_WRONG": wrong}, verbosity=3, extra_vars={"unused": "x"}
    )
    assert run.rc == 0, run.output[-3000:]
    assert run.task("Create")["changed"] is True
    assert run.task("Rerun")["changed"] is False
    assert run.task("Wrong password")["failed"] is True
    assert "Authentication failed" in run.task("Wrong password")["msg"]

    events_proc = lc.kubectl("-n", lc.namespace, "get", "events", "-o", "json")
    audit_text = json.dumps(window.all_events())
    planted = [
        password,
        wrong,
        entry(USER, password)["auth"],
        entry(USER, wrong)["auth"],
        base64.b64encode(password.encode()).decode(),
    ]
    for text, where in (
        (run.stdout, "stdout"),
        (run.stderr, "stderr"),
        (run.recorder_text, "returned values"),
        (events_proc.stdout, "Events"),
        (audit_text, "audit log"),
    ):
        for secret in planted:
            assert secret not in text, f"a planted credential leaked into {where}"
    # Not vacuous: -vvv printed the task results, diffs and failure messages we searched.
    assert "Using module file" in run.stdout and "AnsiballZ_registry_secret" in run.stdout
    assert '"secret_action": "created"' in run.stdout and registry in run.stdout
    assert "<redacted:changed>" in run.stdout or "<redacted>" in run.stdout
    assert "Authentication failed for user 'researcher'" in run.stdout + run.stderr


# -- the shared registry client against the real registries -----------------------------------


def test_registry_client_against_real_registries(localcluster: Any, mode: str) -> None:
    lc = localcluster
    client = RegistryClient(registry_of(lc, mode), USER, lc.users[USER], ca_cert=str(lc.ca_cert))
    assert client.check_credentials() == mode
    info = client.manifest_head("library/busybox", "latest")
    assert info.exists and info.digest and info.digest.startswith("sha256:")
    assert not client.manifest_head("library/busybox", "no-such-tag").exists
    assert client.push_access("aic-misc/it-client").allowed
    if mode == "bearer":
        denied = client.push_access("library/busybox")
        assert not denied.allowed and denied.granted == ("pull",)
    with pytest.raises(RegistryTLSError):
        RegistryClient(registry_of(lc, mode), USER, lc.users[USER]).check_credentials()
