"""The registry_secret runner with fake Kubernetes and registry clients: cases as data."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._dockerconfig import (
    auth_entry,
    encode_config,
)
from ansible_collections.urm.training.plugins.module_utils._registry import (
    PushCheck,
    RegistryAuthError,
    RegistryUnreachableError,
)
from ansible_collections.urm.training.plugins.module_utils._registry_secret import (
    InputError,
    argument_spec,
    parse_request,
    run,
    scrub,
)

PASSWORD = "pl4nted-runner-secret"
REG = "127.0.0.1:15000"


class FakeK8s:
    host = "https://fake:6443"

    def __init__(
        self,
        secret: dict[str, Any] | None = None,
        sa_refs: list[str] | None = None,
        namespaces: tuple[str, ...] = ("aic",),
    ) -> None:
        self.secret = copy.deepcopy(secret)
        self.sa: dict[str, Any] | None = None
        if sa_refs is not None:
            self.sa = {
                "metadata": {"name": "default", "resourceVersion": "7"},
                "imagePullSecrets": [{"name": n} for n in sa_refs],
            }
        self.namespaces = namespaces
        self.writes: list[tuple[str, str, Any]] = []

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        if kind == "Secret":
            return copy.deepcopy(self.secret)
        if kind == "ServiceAccount":
            return copy.deepcopy(self.sa)
        raise AssertionError(kind)

    def create(self, kind: str, body: dict[str, Any], namespace: str | None = None) -> dict:
        self.writes.append(("create", kind, body))
        self.secret = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return self.secret

    def patch(self, kind: str, name: str, patch: Any, namespace: str | None = None) -> dict:
        self.writes.append(("patch", kind, patch))
        if kind == "Secret":
            assert self.secret is not None
            self.secret["data"] = patch["data"]
        else:
            assert self.sa is not None
            self.sa["imagePullSecrets"] = patch["imagePullSecrets"]
        return {}

    def delete(self, kind: str, name: str, namespace: str | None = None, **kw: Any) -> bool:
        self.writes.append(("delete", kind, name))
        self.secret = None
        return True


class FakeRegistry:
    def __init__(
        self,
        ok: bool = True,
        push: tuple[str, ...] = ("pull", "push"),
        error: Exception | None = None,
    ) -> None:
        self.ok, self.push, self.error = ok, push, error
        self.calls: list[str] = []

    def check_credentials(self) -> str:
        self.calls.append("check")
        if self.error:
            raise self.error
        if not self.ok:
            raise RegistryAuthError(
                f"Authentication failed for user 'researcher' at registry {REG}"
            )
        return "bearer"

    def push_access(self, repository: str) -> PushCheck:
        self.calls.append(f"push:{repository}")
        return PushCheck(repository, "push" in self.push, self.push, "token-claim")


def params(**kw: Any) -> dict[str, Any]:
    base = {k: spec.get("default") for k, spec in argument_spec().items()}
    base.update(
        name="urm-registry-cred",
        namespace="aic",
        registry=REG,
        username="researcher",
        password=PASSWORD,
    )
    base.update(kw)
    return base


def live_secret(config: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "urm-registry-cred", "resourceVersion": "3", **meta},
        "data": {".dockerconfigjson": encode_config(config)},
    }


def decoded(k8s: FakeK8s) -> dict[str, Any]:
    assert k8s.secret is not None
    return json.loads(base64.b64decode(k8s.secret["data"][".dockerconfigjson"]))


def go(
    k8s: FakeK8s,
    reg: FakeRegistry | None = None,
    check: bool = False,
    diff: bool = False,
    **kw: Any,
) -> Any:
    reg = reg or FakeRegistry()
    return run(
        params(**kw),
        check,
        diff,
        k8s_factory=lambda auth: k8s,  # type: ignore[arg-type,return-value]
        registry_factory=lambda req: reg,
    )  # type: ignore[arg-type,return-value]


BAD_INPUT = [
    ({"password": ""}, "password is empty for user 'researcher'"),
    ({"password": None}, "password is empty"),
    ({"username": ""}, "username is empty"),
    ({"registry": "127.0.0.1:15000/aic-misc"}, "has a path ('/aic-misc')"),
    ({"registry": None}, "registry is required with state=present"),
    ({"name": "Bad_Name"}, "name='Bad_Name' is not a valid Kubernetes name (DNS-1123"),
    ({"name": ""}, "is not a valid Kubernetes name"),
    ({"namespace": "Not.A.Label"}, "not a valid Kubernetes namespace name"),
    ({"service_account": "x_y"}, "service_account='x_y'"),
    ({"require_push": "aic-misc/urm:latest"}, "must be a repository such as project/name"),
    ({"labels": {"a": None}}, "labels.a has no value"),
]


@pytest.mark.parametrize(("override", "message"), BAD_INPUT)
def test_bad_input_is_rejected_before_any_call(override: dict[str, Any], message: str) -> None:
    k8s, reg = FakeK8s(), FakeRegistry()
    with pytest.raises(InputError) as err:
        go(k8s, reg, **override)
    assert message in str(err.value)
    assert k8s.writes == [] and reg.calls == []


def test_parse_request_normalises_and_hides_password() -> None:
    req = parse_request(params(registry="https://127.0.0.1:15000/", require_push="/aic-misc/urm/"))
    assert req.registry is not None and req.registry.key == REG
    assert req.require_push == "aic-misc/urm"
    assert PASSWORD not in repr(req)
    assert parse_request(params(state="absent", password="", username="")).password == ""


def test_missing_namespace_fails_for_present_and_is_a_noop_for_absent() -> None:
    k8s = FakeK8s(namespaces=())
    with pytest.raises(InputError, match="namespace='aic' does not exist on the server"):
        go(k8s)
    assert go(k8s, state="absent").changed is False
    assert k8s.writes == []


def test_create_then_rerun_is_unchanged() -> None:
    k8s, reg = FakeK8s(), FakeRegistry()
    first = go(k8s, reg, require_push="aic-misc/urm")
    assert first.changed and first.result["secret_action"] == "created"
    assert first.result["validated"] is True and first.result["push_allowed"] is True
    assert decoded(k8s) == {"auths": {REG: auth_entry("researcher", PASSWORD)}}
    assert reg.calls == ["check", "push:aic-misc/urm"]
    second = go(k8s, reg)
    assert not second.changed and second.result["secret_action"] == "unchanged"
    assert len(k8s.writes) == 1


def test_update_keeps_other_registries_and_reports_redacted_diff() -> None:
    other = auth_entry("someone", "other-registry-password")
    k8s = FakeK8s(
        live_secret(
            {"auths": {REG: auth_entry("researcher", "old-password"), "other.example": other}}
        )
    )
    out = go(k8s, diff=True)
    assert out.changed and out.result["secret_action"] == "updated"
    assert decoded(k8s)["auths"]["other.example"] == other
    assert decoded(k8s)["auths"][REG]["password"] == PASSWORD
    patch = k8s.writes[0][2]
    assert patch["metadata"]["resourceVersion"] == "3"
    after = out.diff["after"]["data"][".dockerconfigjson"]["auths"]
    assert after[REG]["password"] == "<redacted:changed>"
    assert after["other.example"]["password"] == "<redacted>"
    text = json.dumps([out.result, out.diff])
    for secret in (
        PASSWORD,
        "old-password",
        "other-registry-password",
        auth_entry("researcher", PASSWORD)["auth"],
    ):
        assert secret not in text


def test_decoded_comparison_ignores_formatting() -> None:
    config = {"auths": {REG: auth_entry("researcher", PASSWORD)}}
    pretty = base64.b64encode(json.dumps(config, indent=2).encode()).decode()
    secret = live_secret(config)
    secret["data"][".dockerconfigjson"] = pretty
    k8s = FakeK8s(secret)
    assert go(k8s).changed is False and k8s.writes == []


def test_bad_credential_writes_nothing() -> None:
    k8s = FakeK8s(live_secret({"auths": {REG: auth_entry("researcher", "old")}}))
    with pytest.raises(RegistryAuthError, match="Authentication failed for user 'researcher'"):
        go(k8s, FakeRegistry(ok=False))
    with pytest.raises(RegistryUnreachableError):
        go(k8s, FakeRegistry(error=RegistryUnreachableError("Cannot connect")))
    assert k8s.writes == []


def test_push_not_granted_names_repository_and_scope() -> None:
    k8s = FakeK8s()
    with pytest.raises(InputError) as err:
        go(k8s, FakeRegistry(push=("pull",)), require_push="library/busybox")
    assert "may not push to repository 'library/busybox'" in str(err.value)
    assert "granted 'repository:library/busybox:pull'" in str(err.value)
    assert k8s.writes == []


def test_validate_false_skips_the_credential_check() -> None:
    reg = FakeRegistry(ok=False)
    out = go(FakeK8s(), reg, validate=False)
    assert out.result["validated"] is False and out.result["push_allowed"] is None
    assert reg.calls == []


def test_check_mode_writes_nothing_and_reports() -> None:
    k8s = FakeK8s(sa_refs=[])
    out = go(k8s, check=True, diff=True, service_account="default")
    assert out.changed and k8s.writes == []
    assert "would be created" in out.result["msg"]
    assert out.diff["after"]["serviceaccount/default"]["imagePullSecrets"] == "<redacted:changed>"


def test_service_account_is_idempotent_and_cleaned_up() -> None:
    k8s = FakeK8s(sa_refs=["other"])
    assert go(k8s, service_account="default").result["service_account_updated"] is True
    assert k8s.sa is not None
    assert [r["name"] for r in k8s.sa["imagePullSecrets"]] == ["other", "urm-registry-cred"]
    again = go(k8s, service_account="default")
    assert not again.changed and again.result["service_account_updated"] is False
    gone = go(k8s, service_account="default", state="absent")
    assert gone.result["secret_action"] == "deleted"
    assert [r["name"] for r in k8s.sa["imagePullSecrets"]] == ["other"]


def test_missing_service_account_fails_before_writing() -> None:
    k8s = FakeK8s()
    with pytest.raises(InputError, match="service_account='default' does not exist"):
        go(k8s, service_account="default")
    assert k8s.writes == []


def test_absent_removes_only_our_entry_when_others_remain() -> None:
    other = auth_entry("someone", "x")
    k8s = FakeK8s(live_secret({"auths": {REG: auth_entry("r", "p"), "other.example": other}}))
    out = go(k8s, state="absent")
    assert out.result["secret_action"] == "updated"
    assert decoded(k8s) == {"auths": {"other.example": other}}
    k8s2 = FakeK8s(live_secret({"auths": {REG: auth_entry("r", "p")}}))
    assert go(k8s2, state="absent").result["secret_action"] == "deleted"
    assert k8s2.secret is None
    assert go(k8s2, state="absent").changed is False


def test_foreign_secret_type_is_refused() -> None:
    k8s = FakeK8s({"type": "Opaque", "metadata": {"name": "urm-registry-cred"}, "data": {}})
    with pytest.raises(InputError, match="exists with type 'Opaque'"):
        go(k8s)
    assert k8s.writes == []


def test_labels_are_merged() -> None:
    k8s = FakeK8s(
        live_secret({"auths": {REG: auth_entry("researcher", PASSWORD)}}, labels={"keep": "me"})
    )
    out = go(k8s, labels={"team": "aic"})
    assert out.changed and k8s.writes[0][2]["metadata"]["labels"] == {"team": "aic"}


def test_scrub_removes_password_and_auth() -> None:
    encoded = auth_entry("researcher", PASSWORD)["auth"]
    text = scrub(f"x {PASSWORD} y {encoded}", params())
    assert PASSWORD not in text and encoded not in text and "********" in text
