#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kaniko_build
short_description: Build and push a container image inside the cluster with a Kaniko Job
version_added: 0.1.0
description:
  - Builds the image of a local build context in the cluster with Kaniko and pushes it to the
    registry, for users who have no Docker daemon. Returns the digest, so that later tasks run
    V(repository@digest).
  - The tag defaults to a content hash (V(ctx-) and 16 hex digits of a SHA-256) over the
    Dockerfile, every file of the context that C(.dockerignore) does not exclude (with C(!)
    exceptions and C(**)), each file's executable bit, the build args and the target.
    M(urm.training.docker_build) computes the same tag.
  - If V(repository:tag) already exists in the registry (a manifest HEAD with the credential read
    from O(registry_secret)) and O(force) is off, nothing is built and the digest is returned.
  - Otherwise the context is shipped as a deterministic tar.gz in a ConfigMap (C(binaryData)),
    which is complete before the Job exists, so there is no upload race. A context that does not
    fit in a ConfigMap (about 960 KiB compressed) fails with the size and the limit.
  - One Job named V(kaniko-<first 12 hex of the hash>) runs the executor with the Secret mounted
    as C(/kaniko/.docker/config.json) and C(--digest-file=/dev/termination-log). A rerun while
    that Job runs attaches to it and never starts a second one. A finished Job of the same hash
    that left no image behind is replaced.
  - The module waits by watching the pod (no fixed sleeps). A pod that succeeds is not taken as
    proof; the digest must be in the termination message, or the manifest in the registry,
    otherwise the task fails with C(the Kaniko Job completed but pushed no image).
  - On failure the message gives the reason (image pull, config error, OOMKilled, exit code, ...)
    and the last 50 lines of the build log.
  - The ConfigMap is owned by the Job, so the Job's O(ttl) removes both.
author:
  - URM training maintainers
options:
  repository:
    description:
      - Image repository with its registry host and without a tag, for example
        V(registry.ice.ri.se/aic-misc/urm-training).
    type: str
    required: true
  tag:
    description:
      - Explicit tag. By default the content-hash tag V(ctx-<16 hex>) is used.
      - The skip check and the returned O(tag) use this first tag.
    type: str
  extra_tags:
    description:
      - More tags pushed with the same build, for example V(latest). They are only pushed with a
        build (when the first tag exists already, nothing is built or re-tagged).
    type: list
    elements: str
    default: []
  context_dir:
    description:
      - Local directory with the Dockerfile and the files it copies (the build context). Its
        C(.dockerignore) is honoured.
      - Not called C(context), because O(context) is the kubeconfig context, as in
        kubernetes.core.
    type: path
    required: true
  dockerfile:
    description:
      - Path of the Dockerfile relative to O(context_dir). It must lie inside the context; it is
        always sent, even when C(.dockerignore) matches it.
    type: str
    default: Dockerfile
  build_args:
    description:
      - Build args (C(--build-arg)). They are part of the hash, and they are visible in the Job
        spec, so never pass secrets here.
    type: dict
    default: {}
  target:
    description:
      - The stage to build (C(--target)). Part of the hash.
    type: str
  namespace:
    description:
      - Namespace for the ConfigMap and the Job. It must exist.
    type: str
    required: true
  registry_secret:
    description:
      - Name of the C(kubernetes.io/dockerconfigjson) Secret in O(namespace) with a credential for
        the registry of O(repository), as M(urm.training.registry_secret) writes it. The module
        reads it for the skip check; the Job mounts it for the push and uses it as its
        imagePullSecret for O(kaniko_image).
    type: str
    default: urm-registry-cred
  cache:
    description:
      - Use Kaniko's layer cache in a registry repository (C(--cache=true)).
    type: bool
    default: true
  cache_repo:
    description:
      - Repository for the cache layers. Defaults to V(<repository>/cache).
    type: str
  kaniko_image:
    description:
      - The executor image, by default the maintained fork C(osscontainertools/kaniko), pinned.
    type: str
    default: ghcr.io/osscontainertools/kaniko:v1.28.0
  resources:
    description:
      - Requests and limits (equal) of the build container. The defaults are sized for CUDA base
        images, which Kaniko unpacks onto ephemeral storage and snapshots in memory.
    type: dict
    default: {}
    suboptions:
      cpu:
        description: CPU request and limit.
        type: str
        default: "4"
      memory:
        description: Memory request and limit. Snapshots of large images are the classic OOM.
        type: str
        default: 32Gi
      ephemeral_storage:
        description: Ephemeral storage request and limit, for the unpacked base image.
        type: str
        default: 100Gi
  node_selector:
    description: Node selector of the build pod.
    type: dict
    default: {}
  tolerations:
    description: Tolerations of the build pod, as in a pod spec.
    type: list
    elements: dict
    default: []
  pod_labels:
    description: Extra labels on the build pod (for network policies and the like).
    type: dict
    default: {}
  pod_annotations:
    description: Annotations on the build pod, for example V(sidecar.istio.io/inject=false).
    type: dict
    default: {}
  extra_args:
    description: More executor flags, for example V(--compressed-caching=false).
    type: list
    elements: str
    default: []
  push_retry:
    description: Number of push retries (C(--push-retry)).
    type: int
    default: 2
  timeout:
    description: Seconds to wait for the build. On timeout the Job keeps running; a rerun attaches.
    type: int
    default: 3600
  unschedulable_timeout:
    description:
      - Seconds a build pod may stay unschedulable (or the Job unable to create it, e.g. over a
        quota) before the task fails with the scheduler's reason and deletes the Job.
    type: int
    default: 600
  wait:
    description:
      - Wait for the build and verify the digest. With V(false) the module returns once the Job
        exists (or is found running), without a digest.
    type: bool
    default: true
  force:
    description: Build even if V(repository:tag) already exists.
    type: bool
    default: false
  ttl:
    description:
      - C(ttlSecondsAfterFinished) of the Job. The ConfigMap goes with the Job.
    type: int
    default: 3600
extends_documentation_fragment:
  - urm.training.k8s_auth
  - urm.training.registry_tls
notes:
  - O(registry_ca_cert) is also given to Kaniko (as C(--registry-certificate), from the
    ConfigMap); O(registry_validate_certs=false) becomes C(--skip-tls-verify).
  - The registry password is only read from the Secret. It never appears in the result, in the
    ConfigMap, in the Job or in messages.
attributes:
  check_mode:
    support: full
    description:
      - Reads the Secret, the Job and the registry, and reports V(would_build), V(would_skip) or
        V(would_attach). Nothing is written to the Kubernetes API.
  diff_mode:
    support: none
  idempotent:
    support: partial
    description:
      - Idempotent in the sense that an image whose tag already exists is not built again, and a
        running build of the same hash is attached to. With an explicit O(tag) that is reused for
        different contents the old image counts as built; use the default hash tag or O(force).
seealso:
  - module: urm.training.docker_build
  - module: urm.training.registry_secret
"""

EXAMPLES = r"""
- name: Build the training image in the cluster
  urm.training.kaniko_build:
    repository: registry.ice.ri.se/aic-misc/urm-training
    context_dir: "{{ playbook_dir }}/../image"
    namespace: aic
    registry_secret: urm-registry-cred
    extra_tags: [latest]
  register: build

- name: Use the digest
  ansible.builtin.debug:
    msg: "{{ build.image_ref }}"

- name: Start a build on a dedicated node with more memory, without waiting
  urm.training.kaniko_build:
    repository: harbor.internal:5000/aic-misc/urm-training
    context_dir: ./image
    namespace: aic
    registry_ca_cert: /etc/ssl/internal-ca.pem
    node_selector: {node-role.kubernetes.io/build: "true"}
    resources: {memory: 48Gi}
    wait: false
"""

RETURN = r"""
action:
  description: What happened.
  returned: always
  type: str
  choices: [built, attached, skipped, started, running, would_build, would_skip, would_attach]
image:
  description: V(repository:tag) of the first tag.
  returned: always
  type: str
  sample: registry.ice.ri.se/aic-misc/urm-training:ctx-3f2a9c0d1e4b5a67
repository:
  description: The repository.
  returned: always
  type: str
tag:
  description: The first tag (the hash tag unless O(tag) is given).
  returned: always
  type: str
  sample: ctx-3f2a9c0d1e4b5a67
tags:
  description: Every tag pushed.
  returned: always
  type: list
  elements: str
digest:
  description: The manifest digest; V(null) when not waited for or in check mode without image.
  returned: always
  type: str
  sample: sha256:9b2d0c6f...
image_ref:
  description: V(repository@digest), what training Jobs should run.
  returned: always
  type: str
digest_source:
  description: Where the digest came from, V(termination-message) or V(registry).
  returned: when built or attached
  type: str
context_hash:
  description: The full content hash.
  returned: always
  type: str
context_files:
  description: Number of files and symlinks in the context after C(.dockerignore).
  returned: always
  type: int
context_size:
  description: Bytes of the compressed context (plus CA) that go in the ConfigMap.
  returned: always
  type: int
job:
  description: Name of the Job (and of its ConfigMap).
  returned: always
  type: str
  sample: kaniko-3f2a9c0d1e4b
namespace:
  description: The namespace.
  returned: always
  type: str
pod:
  description: The build pod.
  returned: when waited for
  type: str
duration:
  description: Seconds this task spent until the build ended.
  returned: always
  type: float
msg:
  description: A one-line summary.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._kaniko import (
    BuildError,
    argument_spec,
    run,
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        outcome = run(module.params, module.check_mode)
    except BuildError as exc:
        changed = bool(exc.result.pop("changed", False))
        module.fail_json(msg=exc.message, changed=changed, **exc.result)
    module.exit_json(changed=outcome.changed, **outcome.result)


if __name__ == "__main__":
    main()
