#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: training_job
short_description: Launch GPU training Jobs that are checked first and explained when they fail
version_added: 0.1.0
description:
  - Renders one training run (or a sweep of runs) as a C(batch/v1) Job with C(restartPolicy=Never),
    GPU requests equal to limits, a memory-backed C(/dev/shm) sized inside the memory limit,
    Secrets passed by reference, checkpoints on PersistentVolumeClaims, and a podFailurePolicy
    that does not count node disruptions as failures.
  - Before anything is created it checks that the pull secret and every O(secret_env) key exist,
    that existing claims exist, that the GPUs fit on one node of the requested type (where nodes
    can be listed), that the namespace ResourceQuota has room, and that the accelerator can run
    the image (O(min_compute_capability)).
  - With O(nodes) above 1, it creates an Indexed Job and a headless Service, and sets
    C(MASTER_ADDR), C(MASTER_PORT), C(NNODES) and C(NODE_RANK) for torchrun.
  - While waiting it watches the run's pods and fails with a plain-English reason for
    Unschedulable, image pull errors, container config errors (a missing Secret key), crashes
    with their exit code and last log lines, OOMKilled, Evicted, DeadlineExceeded and
    BackoffLimitExceeded.
  - The run name is its identity. A hash of everything rendered is stored on the Job; a rerun
    with the same options is unchanged, whatever phase the run is in. A finished run is never
    started again unless O(rerun=true).
  - O(state=absent) deletes the run (its Job and pods, or its dev pod), which ends its billing.
    Claims are kept, so checkpoints survive.
author:
  - URM training maintainers
extends_documentation_fragment:
  - urm.training.k8s_auth
attributes:
  check_mode:
    support: full
    description:
      - Reads and preflight checks run; nothing is written. Results say would-create, would-replace
        or would-delete.
  diff_mode:
    support: partial
    description:
      - A changed spec is reported as before/after of the run's options (Secret references only,
        never values). Shown in C(diff) on replace, and in the failure message under
        O(on_change=fail).
  idempotent:
    support: full
    description:
      - The same options give changed=false, also after the run finished, and after its Job was
        removed by O(ttl_after_finished) (a record ConfigMap remembers it).
options:
  name:
    description:
      - The run name; it becomes the Job name. A DNS-1123 label (lower case, digits, '-'). Required
        unless O(runs) is given.
    type: str
  namespace:
    description: The namespace of the run. It must exist.
    type: str
    required: true
  image:
    description: The image, preferably pinned as V(repository@sha256:...) as image_build returns it.
    type: str
  command:
    description: The container command, for example the torchrun line.
    type: list
    elements: str
  args:
    description: Arguments to O(command).
    type: list
    elements: str
  gpus:
    description: GPUs per node (a whole number >= 1).
    type: raw
    default: 1
  nodes:
    description: Number of nodes. Above 1 an Indexed Job with a headless Service is created.
    type: raw
    default: 1
  gpu_type:
    description:
      - The value of the O(accelerator_label) node label to run on, for example V(nvidia-h100).
    type: str
  accelerator_label:
    description: The node label key that names the accelerator.
    type: str
    default: accelerator
  cpu_per_gpu:
    description: CPU requested per GPU.
    type: raw
    default: 4
  memory_per_gpu:
    description: Memory per GPU (a Kubernetes quantity such as V(16Gi)); requests equal limits.
    type: str
    default: 16Gi
  shm_size:
    description:
      - Size of the memory-backed C(/dev/shm). It counts against the memory limit, so it must be
        smaller than O(gpus) x O(memory_per_gpu).
    type: str
    default: 8Gi
  env:
    description: Plain environment variables. Put secrets in O(secret_env) instead.
    type: dict
    default: {}
  secret_env:
    description:
      - Environment variables taken from Secrets. Each key is the variable name, each value a dict
        with C(secret) and C(key). Values never leave the cluster.
    type: dict
    default: {}
  wandb:
    description:
      - Weights & Biases settings. Keys C(project), C(entity), C(run_id) (default a stable id from
        the namespace and run name) and C(resume) (default V(allow)).
      - The API key belongs in O(secret_env) as C(WANDB_API_KEY).
    type: dict
  git:
    description:
      - Fetch the training code from git at one commit, instead of taking it from the image.
        An init container clones O(git.commit) into an C(emptyDir) at O(git.path), checks that
        C(HEAD) is that commit, and the training container starts there.
      - The Job gets the label C(training.urm.io/git-commit) and the annotation
        C(training.urm.io/git-repo). Changing the commit changes the run (see O(on_change)).
      - An init container failure (bad credential, unknown commit, no git in the image) fails the
        run with git's reason.
    type: dict
    suboptions:
      repo:
        description:
          - C(https://) URL of the repository, or an ssh remote (C(ssh://git@host[:port]/org/repo.git)
            or C(git@host:org/repo.git)). No credentials in it.
        type: str
        required: true
      commit:
        description:
          - Full commit id (40 hex characters). A branch or tag is refused, because it moves.
        type: str
        required: true
      credentials_secret:
        description:
          - For https, a Secret in the namespace with keys C(username) and C(password) (an access
            token), for example of type C(kubernetes.io/basic-auth). They reach git by reference,
            through a credential helper that reads the environment; they are never in the URL,
            C(.git/config) or the pod's arguments.
          - For ssh (required), a Secret with keys C(ssh-privatekey) (a read-only deploy key) and
            C(known_hosts) (the server's line from C(ssh-keyscan)). It is mounted read-only, mode
            0400, in the init container only; only the hosts in C(known_hosts) are trusted.
          - Checked before anything is created.
        type: str
      path:
        description: Where the code is checked out; the training container's working directory.
        type: str
        default: /workspace
      image:
        description:
          - Image of the init container; it needs C(sh) and C(git) (and C(ssh) for an ssh remote).
            Default the run's O(image) (the URM image has both), which the node pulls anyway.
        type: str
      depth:
        description: History depth to fetch. Servers that refuse a fetch by commit id get a full
          fetch of branches and tags instead.
        type: int
        default: 1
  volumes:
    description:
      - Claims to mount. Each item has C(mount_path) and either C(claim) (an existing PVC) or
        C(storage_class) and C(size) (a PVC named C(<run>-<name>) is created and kept).
      - Optional C(name), C(access_mode) (default V(ReadWriteMany)) and C(read_only).
    type: list
    elements: dict
    default: []
  image_pull_secrets:
    description: dockerconfigjson Secrets to pull the image with. Each must exist.
    type: list
    elements: str
    default: []
  tolerations:
    description: Pod tolerations. Default tolerates the C(nvidia.com/gpu) NoSchedule taint.
    type: list
    elements: dict
  node_selector:
    description: Extra node labels to require, on top of O(gpu_type).
    type: dict
    default: {}
  priority_class:
    description: The pod's priorityClassName.
    type: str
  queue:
    description: A Kueue LocalQueue name, set as the C(kueue.x-k8s.io/queue-name) label.
    type: str
  active_deadline:
    description:
      - Seconds after which the run is stopped (activeDeadlineSeconds). Dev pods default to 8 hours.
    type: raw
  backoff_limit:
    description: Retries of a failed pod. Disruptions (drains, preemption) never count.
    type: raw
    default: 0
  ttl_after_finished:
    description:
      - Seconds after which the finished Job is deleted (ttlSecondsAfterFinished). The outcome stays
        in the run's record ConfigMap.
    type: raw
  labels:
    description: Extra labels for the Job and its pods.
    type: dict
    default: {}
  annotations:
    description: Extra annotations for the Job.
    type: dict
    default: {}
  mode:
    description:
      - V(job) for training, or V(devpod) for an interactive pod (sleeps until O(active_deadline))
        to sync code into and get a shell. A dev pod bills its GPUs while idle.
    type: str
    default: job
    choices: [job, devpod]
  runs:
    description:
      - A sweep. Each item overrides the options above for one run and needs its own C(name). All
        runs are planned, checked and created in this one task.
    type: list
    elements: dict
  state:
    description: V(present) launches; V(absent) deletes the run and so stops its billing.
    type: str
    default: present
    choices: [present, absent]
  on_change:
    description:
      - What to do when an existing run's options changed. V(fail) shows the difference and touches
        nothing; V(replace) deletes the run and creates it anew.
    type: str
    default: fail
    choices: [fail, replace]
  rerun:
    description: Start a finished run again (same options). Without it a finished run is left alone.
    type: bool
    default: false
  wait:
    description: How far to wait. V(complete) waits for the Job to succeed.
    type: str
    default: running
    choices: [none, scheduled, running, complete]
  wait_timeout:
    description: Seconds to wait, for all runs together.
    type: int
    default: 600
  min_compute_capability:
    description:
      - The lowest CUDA compute capability the image can use (flash-attn 2 and adam-atan2 need 8.0).
        V(0) turns the check off.
    type: float
    default: 8.0
  capability_check:
    description: Whether a too-old accelerator fails the task or only warns.
    type: str
    default: fail
    choices: [fail, warn]
  accelerator_capabilities:
    description:
      - Extra or corrected compute capabilities per O(accelerator_label) value, for example
        V(nvidia-b200) mapped to V(10.0).
    type: dict
    default: {}
notes:
  - Listing nodes needs cluster-wide rights. Without them the GPU fit check is skipped with a
    warning, and scheduling problems are reported while waiting.
"""

EXAMPLES = r"""
- name: Train URM on one H100 node
  urm.training.training_job:
    namespace: aic
    name: urm-pretrain-01
    image: "{{ image_build_ref }}"
    gpus: 8
    gpu_type: nvidia-h100
    shm_size: 64Gi
    memory_per_gpu: 32Gi
    image_pull_secrets: [urm-registry-cred]
    secret_env:
      WANDB_API_KEY: {secret: urm-wandb, key: api-key}
    wandb: {project: urm}
    volumes:
      - name: checkpoints
        mount_path: /checkpoints
        storage_class: rook-ceph-fs
        size: 500Gi
    command: [torchrun, --nproc-per-node, "8", pretrain.py]
    args:
      - data_path=/data
      - arch=urm
      - +run_name=urm-pretrain-01
      - +checkpoint_path=/checkpoints
      - +ema=True
    wait: running

- name: A sweep of learning rates in one task
  urm.training.training_job:
    namespace: aic
    image: "{{ image_build_ref }}"
    gpus: 1
    gpu_type: nvidia-h100
    command: [python, pretrain.py]
    wait: none
    runs:
      - {name: lr-3e-4, args: [lr=3e-4], labels: {sweep: lr}}
      - {name: lr-1e-4, args: [lr=1e-4], labels: {sweep: lr}}
      - {name: lr-3e-5, args: [lr=3e-5], labels: {sweep: lr}}

- name: Train the code of one commit, fetched from git by an init container
  urm.training.training_job:
    namespace: aic
    name: urm-ablation-07
    image: "{{ image_build_deps_ref }}"
    gpus: 8
    gpu_type: nvidia-h100
    image_pull_secrets: [urm-registry-cred]
    git:
      repo: https://github.com/example/urm.git
      commit: 3f1c9a6e2b7d4c0a9e8f7b6a5d4c3b2a1f0e9d8c
      credentials_secret: urm-git-cred  # keys username and password (a read-only token)
    command: [torchrun, --nproc-per-node, "8", pretrain.py]

- name: Stop a run (ends its billing)
  urm.training.training_job:
    namespace: aic
    name: urm-pretrain-01
    state: absent
"""

RETURN = r"""
job_name:
  description: The Job (or dev Pod) name.
  returned: when one run is given
  type: str
pods:
  description: The run's pod names.
  returned: when one run is given
  type: list
  elements: str
nodes:
  description: The nodes the pods run on.
  returned: when one run is given
  type: list
  elements: str
phase:
  description: Pending, Running, Succeeded or Failed, as far as observed.
  returned: when one run is given
  type: str
reason:
  description: Why the run failed or waits (for example Unschedulable, OOMKilled).
  returned: when one run is given
  type: str
message:
  description: The plain-English explanation.
  returned: when one run is given
  type: str
start_time:
  description: When the first pod started.
  returned: when one run is given
  type: str
spec_hash:
  description: The hash of everything rendered for the run.
  returned: when one run is given
  type: str
action:
  description: created, replaced, rerun, unchanged, deleted, absent, or would-... in check mode.
  returned: when one run is given
  type: str
runs:
  description: One result (the keys above) per run.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
)
from ansible_collections.urm.training.plugins.module_utils._training import SpecError, build_spec
from ansible_collections.urm.training.plugins.module_utils._training_run import (
    RunFailed,
    expand_runs,
    run_training,
    training_job_argument_spec,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=training_job_argument_spec(),
        supports_check_mode=True,
        required_one_of=[("name", "runs")],
    )
    params = module.params
    try:
        launching = params["state"] == "present"
        specs = [build_spec(run, launching) for run in expand_runs(params)]
        client = K8sClient.from_params(params)
        results, warnings = run_training(
            client,
            specs,
            state=params["state"],
            on_change=params["on_change"],
            rerun=params["rerun"],
            wait=params["wait"],
            wait_timeout=float(params["wait_timeout"]),
            check_mode=module.check_mode,
            min_compute_capability=params["min_compute_capability"],
            capability_action=params["capability_check"],
            capabilities=params["accelerator_capabilities"],
        )
    except RunFailed as exc:
        module.fail_json(msg=str(exc), **exc.result.as_dict())
    except (SpecError, K8sError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    for warning in warnings:
        module.warn(warning)
    output: dict[str, object] = {"runs": [r.as_dict() for r in results]}
    if not params.get("runs"):
        output.update(results[0].as_dict())
    diffs = [r.diff for r in results if r.diff]
    if module._diff and diffs:
        output["diff"] = (
            diffs[0]
            if len(diffs) == 1
            else {
                "before": {r.name: r.diff["before"] for r in results if r.diff},
                "after": {r.name: r.diff["after"] for r in results if r.diff},
            }
        )
    output["changed"] = any(r.changed for r in results)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
