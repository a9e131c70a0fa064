"""The real node's generated configuration, and that the default world does not change (no
cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcluster"))

from urm_localcluster import kube, realnode, world
from urm_localcluster.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("URM_LOCALCLUSTER_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("URM_LOCALCLUSTER_REAL_NODE", raising=False)
    return Settings.load()


def test_the_real_node_is_off_by_default(settings: Settings) -> None:
    assert settings.real_node is False
    assert not realnode.is_configured(settings)


def test_the_default_world_keeps_its_kwokctl_command_and_volumes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_run(argv, **kwargs):
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(kube, "_stage_config", lambda: "stages")
    monkeypatch.setattr(kube.subprocess, "run", fake_run)
    monkeypatch.setattr(kube.os, "chmod", lambda *a: None)
    kube.create(settings)
    argv = seen[0]
    assert argv[argv.index("--extra-args") + 1] == "kube-apiserver=advertise-address=127.0.0.1"
    assert argv.count("--extra-args") == 1
    assert (settings.state_dir / "kwok-stages.yaml").read_text() == "stages"
    paths = [
        o["spec"]["hostPath"]["path"] for o in world.storage() if o["kind"] == "PersistentVolume"
    ]
    assert all(p.startswith("/var/lib/urm-localcluster/") for p in paths)


def test_with_a_real_node_kwok_manages_only_fake_nodes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    real = dataclasses.replace(settings, real_node=True)
    seen: list[list[str]] = []
    monkeypatch.setattr(kube, "_stage_config", lambda: "stages")
    monkeypatch.setattr(
        kube.subprocess,
        "run",
        lambda argv, **kw: seen.append(list(argv)) or subprocess.CompletedProcess(argv, 0, "", ""),
    )
    monkeypatch.setattr(kube.os, "chmod", lambda *a: None)
    kube.create(real)
    assert "--extra-args" not in seen[0]
    patches = json.loads((real.state_dir / "kwok-stages.yaml").read_text().split("---\n")[-1])
    by_name = {
        p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]}
        for p in patches["componentsPatches"]
    }
    assert by_name["kwok-controller"] == {
        "manage-all-nodes": "false",
        "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake",
    }
    assert by_name["kube-apiserver"]["advertise-address"] == "127.0.0.1"
    assert by_name["kube-apiserver"]["kubelet-client-certificate"].endswith("pki/admin.crt")
    assert all(
        n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"} for n in world.all_nodes()
    )


def test_containerd_and_kubelet_configs_fit_this_vm(settings: Settings) -> None:
    lay = realnode.Layout(settings)
    containerd = realnode._containerd_config(settings, lay)
    assert "restrict_oom_score_adj = true" in containerd
    assert f'config_path = "{lay.certs_d}"' in containerd
    assert f'sandbox_image = "{realnode.PAUSE_IMAGE}"' in containerd
    assert "SystemdCgroup = false" in containerd
    assert str(lay.socket) in containerd and str(settings.state_dir) in containerd
    kubelet = json.loads(realnode._kubelet_config(settings, lay, "192.0.2.2"))
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failCgroupV1"] is False and kubelet["failSwapOn"] is False
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet["port"] == settings.kubelet_port
    cni = json.loads(realnode._cni_config(settings, lay))
    assert [p["type"] for p in cni["plugins"]] == ["bridge"]
    assert cni["plugins"][0]["ipam"]["dataDir"].startswith(str(settings.state_dir))
