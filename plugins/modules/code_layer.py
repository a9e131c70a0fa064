#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: code_layer
short_description: Append a source tree to a base image as one layer, inside the registry
version_added: 0.1.0
description:
  - Turns a local source tree into one deterministic image layer and appends it to a base image
    (the deps image) with the OCI distribution API, the way C(crane append) does. The base is
    never pulled, unpacked or rebuilt, and its layer blobs are never downloaded.
  - "The layer: sorted entries, mtime 0, uid and gid 0 with empty owner names, modes 0644 for
    files and 0755 for directories and executables, gzip with mtime 0. The same tree gives the
    same layer digest on any machine with the same zlib."
  - "Excluded by default: C(.git) and C(__pycache__) anywhere, C(data/), C(checkpoints/) and
    C(wandb/) at the top. Then the tree's C(.dockerignore) and O(exclude) apply, in that order;
    the last matching pattern wins, so C(!data/small.csv) re-includes a file."
  - The result is pushed as V(repository:code-<16 hex>), a tag derived from the base manifest
    digest, the layer digest, O(platform) and the config options, and returned as
    V(repository@digest) in RV(image_ref), which pins the exact code.
  - "An unchanged tree on an unchanged base makes these registry requests: the C(GET /v2/)
    ping, one C(GET /v2/) to check a Basic credential (a Bearer credential is checked at the token
    server), a manifest HEAD of O(base) (none when O(base) is given by digest) and a manifest
    HEAD of the target tag, which exists: changed=false."
  - Otherwise the base manifest (and, under a multi-arch index, the O(platform) manifest) and its
    config are read; the base layers are mounted into O(repository) when it differs from the
    base's repository (streamed through this host only where the registry refuses a mount or
    O(mount=false)); the layer and config blobs are uploaded unless present; then the manifest is
    put. Docker v2 (schema 2) and OCI manifests and indexes are handled; the new manifest has the
    base's type.
  - Nothing is pushed when the source tree is missing, holds a symlink to outside the tree, or is
    larger than O(max_size_mb), or when the base has no image for O(platform).
author:
  - URM training maintainers
options:
  src:
    description: The local source tree.
    type: path
    required: true
  base:
    description:
      - The base image, V(host[:port]/path:tag) or V(host[:port]/path@sha256:...). A digest saves
        one HEAD and pins the base.
      - It must be in the same registry as O(repository).
    type: str
    required: true
  repository:
    description:
      - Repository to push the result to, with registry host and without tag, for example
        V(registry.ice.ri.se/aic-misc/urm-training). It may be the base's repository.
    type: str
    required: true
  dest:
    description: Absolute directory in the image that receives the tree.
    type: str
    default: /workspace
  workdir:
    description:
      - The image's WORKDIR. Defaults to O(dest); V("") keeps the base's.
    type: str
  env:
    description: Environment variables to set in the image config (replacing the base's value).
    type: dict
    default: {}
  labels:
    description: Labels to set in the image config.
    type: dict
    default: {}
  git_labels:
    description:
      - When O(src) is in a git work tree, label the image with the commit
        (C(org.opencontainers.image.revision)) and C(training.urm.io/git-dirty) (V("true") when
        C(git status) lists a change under O(src)). A new commit of the same tree gives a new
        config and tag, but reuses the layer blob.
    type: bool
    default: true
  exclude:
    description: More C(.dockerignore)-style patterns to leave out, applied last.
    type: list
    elements: str
    default: []
  default_excludes:
    description: Apply the default excludes (see the description).
    type: bool
    default: true
  platform:
    description: The platform to pick from a multi-arch base, V(os/arch[/variant]).
    type: str
    default: linux/amd64
  max_size_mb:
    description: Refuse a tree whose files (after excludes) hold more than this many MiB.
    type: int
    default: 512
  mount:
    description:
      - Mount the base layers into O(repository) across repositories. V(false) copies them through
        this host instead (GET and PUT, streamed), for registries that refuse mounts silently.
    type: bool
    default: true
  registry_username:
    description:
      - User for the registry. Give it with O(registry_password), or use O(docker_config).
        Without either, the registry is used anonymously.
    type: str
  registry_password:
    description: Password or robot secret for O(registry_username).
    type: str
  docker_config:
    description:
      - Path to a Docker C(config.json), or to a decoded C(.dockerconfigjson), whose C(auths)
        entry for the registry gives the credential.
    type: path
  registry_timeout:
    description: Seconds to wait for each request (and each read of an upload) to the registry.
    type: float
    default: 60
extends_documentation_fragment:
  - urm.training.registry_tls
notes:
  - The source tree's git state is read with the C(git) command, when there is one; a tree that is
    not in a work tree is no error (RV(git_commit) is V(null)).
  - Sockets, FIFOs and device files in the tree are skipped; hard links are stored as files.
attributes:
  check_mode:
    support: full
    description:
      - Builds the layer locally and reads the registry (base manifest and config, target tag);
        returns the exact RV(image_ref) that would be pushed. No upload, no mount, no manifest
        PUT.
  diff_mode:
    support: none
  idempotent:
    support: full
    description:
      - The tag is a content hash; an existing tag is changed=false after one manifest HEAD.
requirements:
  - requests >= 2.31
seealso:
  - module: urm.training.docker_build
  - module: urm.training.kaniko_build
"""

EXAMPLES = r"""
- name: Put the current code on top of the deps image
  urm.training.code_layer:
    src: "{{ playbook_dir }}/../urm"
    base: "{{ image_build_ref }}"  # registry.ice.ri.se/aic-misc/urm-training@sha256:...
    repository: registry.ice.ri.se/aic-misc/urm-training
    exclude: ["outputs/", "*.ipynb"]
    registry_username: robot$aic-misc+ci
    registry_password: "{{ vault_harbor_robot_secret }}"
  register: code

- name: Use the credential docker login wrote, and a multi-arch base
  urm.training.code_layer:
    src: ./src
    base: registry.example.org/library/python:3.12
    repository: registry.example.org/team/app
    platform: linux/arm64
    dest: /app
    docker_config: ~/.docker/config.json
"""

RETURN = r"""
action:
  description: What happened.
  returned: always
  type: str
  choices: [appended, skipped, would_append, would_skip]
image_ref:
  description: V(repository@digest) of the new image; in check mode the digest it would get.
  returned: always
  type: str
digest:
  description: The manifest digest.
  returned: always
  type: str
image:
  description: V(repository:tag).
  returned: always
  type: str
repository:
  description: The target repository.
  returned: always
  type: str
tag:
  description: The derived tag.
  returned: always
  type: str
  sample: code-5d0c3f1e2a4b6c78
base_image:
  description: The base as given.
  returned: always
  type: str
base_digest:
  description: The digest of the base manifest (of the index, for a multi-arch base).
  returned: always
  type: str
platform_digest:
  description: The digest of the single-platform base manifest the layer went on.
  returned: when a new manifest was computed
  type: str
media_type:
  description: The media type of the new manifest (the base's, OCI or Docker v2).
  returned: when a new manifest was computed
  type: str
layer_digest:
  description: Digest of the gzip layer blob.
  returned: always
  type: str
layer_diff_id:
  description: Digest of the uncompressed layer tar (the config's diff_id).
  returned: always
  type: str
layer_size:
  description: Bytes of the gzip layer blob.
  returned: always
  type: int
file_count:
  description: Files and symlinks in the layer.
  returned: always
  type: int
tree_size:
  description: Bytes of file content in the layer, before compression.
  returned: always
  type: int
git_commit:
  description: The commit of the work tree holding O(src), or V(null).
  returned: always
  type: str
git_dirty:
  description: Whether C(git status) lists a change under O(src); V(null) outside git.
  returned: always
  type: bool
uploaded_bytes:
  description: Bytes this run uploaded (layer, config and copied base layers).
  returned: always
  type: int
mounted_layers:
  description: Base layers mounted across repositories.
  returned: always
  type: int
copied_layers:
  description: Base layers copied because a mount was refused or O(mount=false).
  returned: always
  type: int
msg:
  description: A one-line summary.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._oci_append import (
    ARGUMENT_SPEC,
    CodeLayerError,
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
    except CodeLayerError as exc:
        module.fail_json(msg=exc.message, changed=False, **exc.result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
