#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_build
short_description: Build and push an image through the Docker API, with the same tag as kaniko_build
version_added: 0.1.0
description:
  - Builds a local context through the Docker Engine API (Docker, or podman's Docker-compatible
    socket given by E(DOCKER_HOST)) and pushes it to the registry.
  - The tag defaults to the same content hash as M(urm.training.kaniko_build) computes (V(ctx-)
    and 16 hex digits over the Dockerfile, the files C(.dockerignore) keeps, the build args and
    the target), and the context sent to the daemon is the same deterministic tar.gz.
  - If V(repository:tag) already exists in the registry and O(force) is off, nothing is built
    (changed=false), and the digest is returned.
  - The returned digest is the one the registry reports for the pushed tag (a manifest HEAD),
    because podman's push stream carries no digest.
  - Errors in the build and push streams (which arrive with HTTP 200) fail the task; a build
    failure shows the last 50 lines of the build output.
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
    description: Explicit tag instead of the content-hash tag.
    type: str
  extra_tags:
    description: More tags to push, for example V(latest).
    type: list
    elements: str
    default: []
  context_dir:
    description:
      - Local directory with the Dockerfile (the build context); its C(.dockerignore) is
        honoured. Named as in M(urm.training.kaniko_build).
    type: path
    required: true
  dockerfile:
    description: Path of the Dockerfile relative to O(context_dir); it must lie inside the context.
    type: str
    default: Dockerfile
  build_args:
    description: Build args. Part of the hash.
    type: dict
    default: {}
  target:
    description: The stage to build. Part of the hash.
    type: str
  registry_username:
    description:
      - User for the push and the skip check. Give it with O(registry_password), or use
        O(docker_config). Without either, the registry is used anonymously.
    type: str
  registry_password:
    description: Password or robot secret for O(registry_username).
    type: str
  docker_config:
    description:
      - Path to a Docker C(config.json), or to a decoded C(.dockerconfigjson), whose C(auths)
        entry for the repository's registry gives the credential.
    type: path
  docker_host:
    description:
      - The Docker API, for example V(unix:///run/podman/podman.sock). Defaults to E(DOCKER_HOST),
        then the Docker default socket.
    type: str
  pull:
    description: Always pull the base images (the daemon's pull policy otherwise).
    type: bool
    default: false
  force:
    description: Build and push even if V(repository:tag) already exists.
    type: bool
    default: false
  timeout:
    description: Seconds for each Docker API call (a build is one call).
    type: int
    default: 3600
extends_documentation_fragment:
  - urm.training.registry_tls
notes:
  - The daemon verifies the registry's TLS on its own; for podman, put the CA in
    C(/etc/containers/certs.d/<host:port>/ca.crt). O(registry_ca_cert) is for this module's own
    registry checks.
  - Base images are pulled with the daemon's own credentials (anonymous if it has none).
attributes:
  check_mode:
    support: full
    description:
      - Hashes the context and asks the registry; reports V(would_build) or V(would_skip). No
        build, no push.
  diff_mode:
    support: none
  idempotent:
    support: partial
    description:
      - Only in the sense that an image whose tag already exists is not built again.
requirements:
  - docker >= 7.0 (docker-py)
seealso:
  - module: urm.training.kaniko_build
"""

EXAMPLES = r"""
- name: Build with podman's Docker API and push to Harbor
  urm.training.docker_build:
    repository: registry.ice.ri.se/aic-misc/urm-training
    context_dir: ./image
    docker_host: unix:///run/podman/podman.sock
    registry_username: robot$aic-misc+ci
    registry_password: "{{ vault_harbor_robot_secret }}"
  register: build

- name: Use the credential docker login wrote
  urm.training.docker_build:
    repository: registry.ice.ri.se/aic-misc/urm-training
    context_dir: ./image
    docker_config: ~/.docker/config.json
"""

RETURN = r"""
action:
  description: What happened.
  returned: always
  type: str
  choices: [built, skipped, would_build, would_skip]
image:
  description: V(repository:tag) of the first tag.
  returned: always
  type: str
repository:
  description: The repository.
  returned: always
  type: str
tag:
  description: The first tag.
  returned: always
  type: str
  sample: ctx-3f2a9c0d1e4b5a67
tags:
  description: Every tag pushed.
  returned: always
  type: list
  elements: str
digest:
  description: The manifest digest the registry reports; V(null) in check mode before a build.
  returned: always
  type: str
image_ref:
  description: V(repository@digest).
  returned: always
  type: str
image_id:
  description: The local image ID the daemon reported, when it did.
  returned: always
  type: str
context_hash:
  description: The full content hash.
  returned: always
  type: str
context_files:
  description: Number of files and symlinks sent.
  returned: always
  type: int
duration:
  description: Seconds the build and push took.
  returned: always
  type: float
msg:
  description: A one-line summary.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._docker_build import (
    ARGUMENT_SPEC,
    DockerBuildError,
    run,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("registry_username", "docker_config")],
    )
    try:
        changed, result = run(module.params, module.check_mode)
    except DockerBuildError as exc:
        module.fail_json(msg=exc.message, changed=False, **exc.result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
