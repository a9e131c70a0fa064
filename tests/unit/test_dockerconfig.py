from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.urm.training.plugins.module_utils._dockerconfig import (
    REDACTED,
    REDACTED_CHANGED,
    DockerConfigError,
    RegistryAddressError,
    auth_entry,
    configs_equal,
    decode_config,
    encode_config,
    merge_config,
    other_entries,
    parse_registry,
    redacted_diff,
    remove_entry,
)

ACCEPTED = [
    ("harbor.example.org", "harbor.example.org", "https"),
    ("Harbor.Example.ORG", "harbor.example.org", "https"),
    ("127.0.0.1:15000", "127.0.0.1:15000", "https"),
    ("https://harbor.example.org/", "harbor.example.org", "https"),
    ("https://harbor.example.org", "harbor.example.org", "https"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000", "http"),
    ("HTTPS://registry:443/", "registry:443", "https"),
    ("  registry.local:5000  ", "registry.local:5000", "https"),
    ("[::1]:5000", "[::1]:5000", "https"),
]


@pytest.mark.parametrize(("value", "key", "scheme"), ACCEPTED)
def test_parse_registry_accepts(value: str, key: str, scheme: str) -> None:
    address = parse_registry(value)
    assert address.key == key
    assert address.scheme == scheme


REJECTED = [
    ("", "is empty"),
    ("   ", "is empty"),
    ("harbor.example.org/library", "has a path ('/library')"),
    ("https://harbor.example.org/v2/", "has a path ('/v2/')"),
    ("harbor.example.org/aic-misc/urm", "has a path"),
    ("https://user:pw@harbor.example.org", "user info"),
    ("user@harbor.example.org", "user info"),
    ("harbor.example.org?x=1", "query or fragment"),
    ("harbor.example.org#frag", "query or fragment"),
    ("https://", "no host name"),
    ("https:///path", "has a path"),
    (":5000", "no host name"),
    ("harbor:notaport", "invalid port"),
    ("harbor:70000", "invalid port"),
    ("ftp://harbor", "scheme 'ftp'"),
]


@pytest.mark.parametrize(("value", "message"), REJECTED)
def test_parse_registry_rejects(value: str, message: str) -> None:
    with pytest.raises(RegistryAddressError) as err:
        parse_registry(value)
    assert message in str(err.value)


def test_auth_entry_matches_kubectl() -> None:
    entry = auth_entry("robot$aic+ci", "s3cr:et", "ci@example.org")
    assert entry["username"] == "robot$aic+ci"
    assert entry["password"] == "s3cr:et"
    assert base64.b64decode(entry["auth"]) == b"robot$aic+ci:s3cr:et"
    assert entry["email"] == "ci@example.org"
    assert "email" not in auth_entry("u", "p")


def test_merge_keeps_other_registries_and_keys() -> None:
    other = {"username": "x", "password": "y", "auth": "eDp5"}
    existing = {"auths": {"other.example:5000": other, "reg": {"auth": "old"}}, "credsStore": "z"}
    merged = merge_config(existing, "reg", auth_entry("u", "p"))
    assert merged["auths"]["other.example:5000"] == other
    assert merged["auths"]["reg"] == auth_entry("u", "p")
    assert merged["credsStore"] == "z"
    assert existing["auths"]["reg"] == {"auth": "old"}, "input must not be mutated"


def test_merge_into_nothing_and_into_garbage() -> None:
    assert merge_config(None, "reg", {"auth": "a"}) == {"auths": {"reg": {"auth": "a"}}}
    assert merge_config({"auths": "bad"}, "reg", {"auth": "a"}) == {"auths": {"reg": {"auth": "a"}}}


def test_remove_entry_and_other_entries() -> None:
    config = {"auths": {"a": {"auth": "1"}, "b": {"auth": "2"}}}
    assert remove_entry(config, "a") == {"auths": {"b": {"auth": "2"}}}
    assert other_entries(config, "a") == ["b"]
    assert other_entries({"auths": {"a": {}}}, "a") == []
    assert other_entries(None, "a") == []


def test_encode_decode_roundtrip_and_decoded_comparison() -> None:
    config = merge_config(None, "reg", auth_entry("u", "p"))
    assert decode_config(encode_config(config)) == config
    assert encode_config(config) == encode_config(json.loads(json.dumps(config)))
    # Same content, other formatting and key order: equal once decoded.
    pretty = json.dumps(
        {"auths": {"reg": dict(reversed(list(config["auths"]["reg"].items())))}}, indent=4
    )
    live = decode_config(base64.b64encode(pretty.encode()).decode())
    assert configs_equal(live, config)
    assert not configs_equal(live, merge_config(None, "reg", auth_entry("u", "p2")))
    assert configs_equal(None, {})
    assert decode_config(None) is None


@pytest.mark.parametrize(
    "data",
    ["not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{no json").decode()],
)
def test_decode_rejects_garbage(data: str) -> None:
    with pytest.raises(DockerConfigError):
        decode_config(data)


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


def test_redacted_diff_marks_changes_and_hides_values() -> None:
    before = {
        "auths": {
            "reg": auth_entry("u", "old-password"),
            "keep": auth_entry("k", "kp"),
            "gone": auth_entry("g", "gp"),
        }
    }
    after = {
        "auths": {
            "reg": auth_entry("u", "new-password"),
            "keep": auth_entry("k", "kp"),
            "new": auth_entry("n", "np"),
        }
    }
    b, a = redacted_diff(before, after)
    assert b["auths"]["reg"]["password"] == REDACTED
    assert a["auths"]["reg"]["password"] == REDACTED_CHANGED
    assert a["auths"]["reg"]["auth"] == REDACTED_CHANGED
    assert a["auths"]["reg"]["username"] == REDACTED
    assert b["auths"]["keep"] == a["auths"]["keep"]
    assert "gone" in b["auths"] and "gone" not in a["auths"]
    assert "new" in a["auths"] and "new" not in b["auths"]
    assert set(_leaves(b)) | set(_leaves(a)) <= {REDACTED, REDACTED_CHANGED}
    text = json.dumps([b, a])
    for secret in ("old-password", "new-password", "kp", "gp", "np", "dTpvbGQtcGFzc3dvcmQ="):
        assert secret not in text


def test_redacted_diff_of_absent_objects() -> None:
    b, a = redacted_diff(None, {"x": {"y": "secret"}})
    assert b is None and a == {"x": {"y": REDACTED}}
    b, a = redacted_diff({"x": "secret"}, None)
    assert b == {"x": REDACTED} and a is None
    assert redacted_diff(None, None) == (None, None)
    b, a = redacted_diff({"x": "plain"}, {"x": {"nested": "v"}})
    assert b == {"x": REDACTED} and a == {"x": {"nested": REDACTED_CHANGED}}
