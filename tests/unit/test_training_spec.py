"""Validation and the pure builders of a training run: tables of inputs and what they become."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._quantity import (
    QuantityError,
    format_bytes,
    parse_quantity,
)
from ansible_collections.urm.training.plugins.module_utils._training import (
    ANNOTATION_HASH,
    SpecError,
    build_spec,
    claims,
    headless_service,
    spec_hash,
    wandb_run_id,
    workload,
)
from ansible_collections.urm.training.plugins.module_utils._training_run import (
    _diff,
    expand_runs,
    summary,
)


def params(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "urm-01",
        "namespace": "aic",
        "image": "registry.ice.ri.se/aic-misc/urm-training@sha256:" + "a" * 64,
        "command": ["torchrun", "pretrain.py"],
        "gpus": 8,
        "gpu_type": "nvidia-h100",
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Gi", 16 * 2**30),
        ("500Mi", 500 * 2**20),
        ("4", 4),
        ("500m", Decimal("0.5")),
        ("1.5G", 1500 * 10**6),
    ],
)
def test_quantities_parse(text: str, value: Any) -> None:
    assert parse_quantity(text, "f") == Decimal(value)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("16GB", "did you mean 16Gi (binary) or 16G (decimal)?"),
        ("lots", "not a Kubernetes quantity"),
        ("", ""),
    ],
)
def test_bad_quantities_explain(text: str, hint: str) -> None:
    with pytest.raises(QuantityError) as error:
        parse_quantity(text, "memory_per_gpu")
    assert f"memory_per_gpu={text!r} is not a Kubernetes quantity" in str(error.value)
    assert hint in str(error.value)


def test_format_bytes_picks_the_exact_binary_unit() -> None:
    assert format_bytes(Decimal(64 * 2**30)) == "64Gi"
    assert format_bytes(Decimal(1536 * 2**20)) == "1536Mi"
    assert format_bytes(Decimal(1000)) == "1000"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"gpus": 0}, "gpus=0 must be >= 1"),
        ({"gpus": True}, "gpus=True must be a whole number"),
        ({"gpus": "2.5"}, "gpus='2.5' must be a whole number"),
        ({"nodes": 0}, "nodes=0 must be >= 1"),
        ({"name": "Urm_01"}, "name='Urm_01' is not a valid run name"),
        ({"name": "a" * 64}, "is not a valid run name"),
        ({"namespace": "AIC"}, "namespace='AIC' is not a valid namespace name"),
        ({"image": "Registry/Repo:tag"}, "is not a valid image reference"),
        ({"image": "repo:tag with space"}, "is not a valid image reference"),
        ({"memory_per_gpu": "16GB"}, "memory_per_gpu='16GB' is not a Kubernetes quantity"),
        ({"cpu_per_gpu": "-1"}, "cpu_per_gpu='-1' must be positive"),
        (
            {"shm_size": "128Gi", "memory_per_gpu": "16Gi"},
            "shm_size=128Gi does not fit in the memory limit of 128Gi",
        ),
        ({"mode": "devpod", "nodes": 2}, "nodes=2 with mode=devpod"),
        ({"command": [], "args": []}, "command or args is required"),
        (
            {"secret_env": {"WANDB_API_KEY": {"secret": "w"}}},
            "secret_env.WANDB_API_KEY must name both",
        ),
        ({"volumes": [{"mount_path": "ckpt", "claim": "c"}]}, "must be an absolute path"),
        (
            {"volumes": [{"mount_path": "/c"}]},
            "needs claim (an existing PVC) or storage_class and size",
        ),
        (
            {"volumes": [{"mount_path": "/c", "storage_class": "rook-ceph-fs"}]},
            "it needs a size too",
        ),
    ],
)
def test_bad_options_are_named_with_the_fix(override: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        build_spec(params(**override))
    assert message in str(error.value)


def test_absent_needs_only_the_name() -> None:
    spec = build_spec({"name": "urm-01", "namespace": "aic", "gpus": 1}, launching=False)
    assert spec.name == "urm-01"


def test_job_has_gpu_limits_shm_inside_memory_and_no_secret_values() -> None:
    spec = build_spec(
        params(
            shm_size="64Gi",
            memory_per_gpu="16Gi",
            secret_env={"WANDB_API_KEY": {"secret": "urm-wandb", "key": "api-key"}},
            wandb={"project": "urm"},
            env={"HYDRA_FULL_ERROR": "1"},
            image_pull_secrets=["urm-registry-cred"],
            volumes=[
                {
                    "name": "checkpoints",
                    "mount_path": "/checkpoints",
                    "storage_class": "rook-ceph-fs",
                    "size": "500Gi",
                }
            ],
            queue="gpu-queue",
            priority_class="high",
            active_deadline=3600,
            ttl_after_finished=600,
        )
    )
    job = workload(spec)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "8"},
        "limits": {"memory": "128Gi", "nvidia.com/gpu": "8"},
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in pod["volumes"]
    assert {
        "name": "checkpoints",
        "persistentVolumeClaim": {"claimName": "urm-01-checkpoints"},
    } in pod["volumes"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WANDB_API_KEY"] == {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "urm-wandb", "key": "api-key"}},
    }
    assert env["WANDB_RUN_ID"]["value"] == wandb_run_id(spec)
    assert env["WANDB_RESUME"]["value"] == "allow"
    assert env["NPROC_PER_NODE"]["value"] == "8"
    assert "MASTER_ADDR" not in env
    assert pod["nodeSelector"] == {"accelerator": "nvidia-h100"}
    assert pod["imagePullSecrets"] == [{"name": "urm-registry-cred"}]
    assert pod["priorityClassName"] == "high"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert (
        job["spec"]["activeDeadlineSeconds"] == 3600
        and job["spec"]["ttlSecondsAfterFinished"] == 600
    )
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert claims(spec)[0]["spec"] == {
        "storageClassName": "rook-ceph-fs",
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "500Gi"}},
    }


def test_multi_node_is_indexed_with_rendezvous_env_and_anti_affinity() -> None:
    spec = build_spec(params(nodes=2))
    job = workload(spec)
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (2, 2)
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "urm-01"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == "urm-01-0.urm-01"
    assert env["NNODES"]["value"] == "2"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert headless_service(spec)["spec"]["clusterIP"] == "None"


def test_devpod_has_a_deadline_and_sleeps() -> None:
    spec = build_spec(params(mode="devpod", command=[]))
    pod = workload(spec)
    assert pod["kind"] == "Pod"
    assert pod["spec"]["activeDeadlineSeconds"] == 8 * 3600
    assert pod["spec"]["containers"][0]["command"] == ["sleep", str(8 * 3600)]


def test_spec_hash_is_stable_and_follows_every_option() -> None:
    first = spec_hash(workload(build_spec(params())))
    assert first == spec_hash(workload(build_spec(params())))
    assert first == workload(build_spec(params()))["metadata"]["annotations"][ANNOTATION_HASH]
    for change in (
        {"gpus": 4},
        {"image": "repo:other"},
        {"args": ["lr=1"]},
        {"shm_size": "2Gi"},
        {"env": {"A": "1"}},
        {"nodes": 2},
    ):
        assert spec_hash(workload(build_spec(params(**change)))) != first, change


def test_wandb_run_id_is_stable_per_run_name() -> None:
    assert wandb_run_id(build_spec(params())) == wandb_run_id(build_spec(params(gpus=1)))
    assert wandb_run_id(build_spec(params())) != wandb_run_id(build_spec(params(name="urm-02")))


def test_diff_names_only_what_changed() -> None:
    before = summary(build_spec(params()))
    after = summary(build_spec(params(gpus=4)))
    diff = _diff(before, after)
    assert diff["before"] == {"gpus": 8, "cpu": "32", "memory": "128Gi"}
    assert diff["after"] == {"gpus": 4, "cpu": "16", "memory": "64Gi"}


def test_summary_shows_secret_references_not_values() -> None:
    spec = build_spec(
        params(secret_env={"WANDB_API_KEY": {"secret": "urm-wandb", "key": "api-key"}})
    )
    assert summary(spec)["secret_env"] == {"WANDB_API_KEY": "urm-wandb/api-key"}


def test_expand_runs_overrides_per_run_and_rejects_duplicates() -> None:
    base = {k: None for k in ("image", "command", "args", "gpus")}
    base.update(namespace="aic", runs=[{"name": "a", "gpus": 1}, {"name": "b"}], gpus=2, image="x")
    runs = expand_runs(base)
    assert [(r["name"], r["gpus"]) for r in runs] == [("a", 1), ("b", 2)]
    base["runs"] = [{"name": "a"}, {"name": "a"}]
    with pytest.raises(Exception, match="repeated: a"):
        expand_runs(base)
    base["runs"] = [{"name": "a", "gpu": 1}]
    with pytest.raises(Exception, match="unknown option"):
        expand_runs(base)
