#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: devpod_sync
short_description: Sync a local source tree into a running dev pod
version_added: 0.1.0
description:
  - Copies a local source tree into O(dest) of a running dev pod (a pod of
    urm.training.training_job with O(urm.training.training_job#module:mode=devpod)) through the
    Kubernetes exec API, as C(kubectl cp) does, but only when the tree changed.
  - "The tree is packed exactly as urm.training.code_layer packs a code layer: the same excludes
    (C(.git) and C(__pycache__) anywhere, C(data/), C(checkpoints/) and C(wandb/) at the top,
    then the tree's C(.dockerignore), then O(exclude)), the same refusal of symlinks that point
    outside the tree, the same size cap, and the same bytes. RV(digest) is therefore the
    RV(urm.training.code_layer#module:layer_digest) that code_layer reports for the same O(src)
    and O(dest)."
  - The digest is recorded in the pod annotation C(training.urm.io/synced-digest). When it
    already holds the digest of the tree, nothing is sent and no exec is made (changed=false).
  - Otherwise the gzip tar goes on stdin to C(tar -x) in the container. The image needs C(sh),
    C(tar), C(head) and C(gzip) (O(delete) also C(find) and C(xargs)), as any Debian or Ubuntu
    based image has; busybox works too. Files get the time of the sync as their mtime, so
    Python's bytecode cache sees every change. Files in O(dest) that the tree does not have stay
    unless O(delete=true).
  - Before anything is written it checks that the pod exists, is a dev pod (label
    C(training.urm.io/mode=devpod), unless O(force=true)), is Running with the container
    running, and that O(src) is a directory within the size cap.
author:
  - URM training maintainers
extends_documentation_fragment:
  - urm.training.k8s_auth
attributes:
  check_mode:
    support: full
    description:
      - Reads the pod and packs the tree locally, and reports whether a sync would happen. No
        exec and no patch; which files O(delete) would remove is not known in check mode.
  diff_mode:
    support: partial
    description: The recorded digest before and the tree's digest after; not a file-level diff.
  idempotent:
    support: partial
    description:
      - The same tree into the same O(dest) of the same pod makes no change. The comparison is
        with the annotation, not with the files in the pod, so files edited or added inside
        the pod are not noticed; O(resync=true) syncs again regardless.
      - One tree per pod is tracked; syncing two trees into one pod in turn syncs every time.
options:
  name:
    description: Name of the dev pod (the run name given to training_job).
    type: str
    required: true
    aliases: [pod]
  namespace:
    description: Namespace of the pod.
    type: str
    required: true
  src:
    description: The local source tree.
    type: path
    required: true
  dest:
    description:
      - Absolute directory in the container that receives the tree; created when missing.
      - The dev pod's working directory is V(/workspace).
    type: str
    default: /workspace
  container:
    description:
      - The container to sync into. Defaults to the pod's only container, or C(train), the
        container of a training_job dev pod.
    type: str
  exclude:
    description: More C(.dockerignore) patterns, applied after the defaults and C(.dockerignore).
    type: list
    elements: str
    default: []
  default_excludes:
    description: Whether the default excludes apply.
    type: bool
    default: true
  max_size_mb:
    description: Refuse a tree with more file content than this, after excludes.
    type: int
    default: 512
  delete:
    description:
      - Remove paths in O(dest) that are not in the tree, before unpacking it.
      - Paths that the excludes match (C(data/), C(checkpoints/), C(__pycache__), ...) are kept,
        with the directories that hold them, as with C(rsync --delete). Nothing outside O(dest) is
        touched, and O(dest=/) is refused.
      - Takes effect when a sync happens (the tree changed, or O(resync=true)).
    type: bool
    default: false
  resync:
    description: Sync even when the annotation says the pod already holds this tree.
    type: bool
    default: false
  force:
    description:
      - Sync into a pod that is not a dev pod (no label C(training.urm.io/mode=devpod)), for
        example a training Job's pod. This changes code under a running program.
    type: bool
    default: false
  timeout:
    description: Seconds each exec may take (listing, removing, unpacking).
    type: float
    default: 300
"""

EXAMPLES = r"""
- name: Sync the code into the dev pod
  urm.training.devpod_sync:
    namespace: aic
    name: urm-dev
    src: "{{ playbook_dir }}/../src"

- name: Mirror the tree, removing files deleted locally (data/ and checkpoints/ stay)
  urm.training.devpod_sync:
    namespace: aic
    name: urm-dev
    src: ~/code/urm
    dest: /workspace
    delete: true
    exclude: ["outputs", "*.ipynb"]
"""

RETURN = r"""
pod:
  description: The pod name.
  returned: always
  type: str
namespace:
  description: The pod's namespace.
  returned: always
  type: str
container:
  description: The container synced into.
  returned: always
  type: str
node:
  description: The node the pod runs on.
  returned: always
  type: str
dest:
  description: The normalised destination directory.
  returned: always
  type: str
digest:
  description:
    - Digest of the gzip tar of the tree (under O(dest)); what the annotation now records.
    - Equal to code_layer's RV(urm.training.code_layer#module:layer_digest) for the same tree.
  returned: always
  type: str
  sample: sha256:3b0f4c5e...
previous_digest:
  description: The digest the annotation held before, or V(null).
  returned: always
  type: str
files:
  description: Files and symlinks in the tree, after excludes.
  returned: always
  type: int
size:
  description: Bytes of file content in the tree, before compression.
  returned: always
  type: int
transferred_bytes:
  description: Bytes sent to the pod (the gzip tar); 0 when nothing was synced.
  returned: always
  type: int
deleted:
  description: Paths under O(dest), relative to it, that O(delete) removed.
  returned: always
  type: list
  elements: str
action:
  description: V(synced), V(would_sync) (check mode) or V(unchanged).
  returned: always
  type: str
msg:
  description: A one-line summary.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._devpod_sync import (
    ARGUMENT_SPEC,
    SyncError,
    run,
)
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    with_auth_options,
)


def main() -> None:
    module = AnsibleModule(argument_spec=with_auth_options(ARGUMENT_SPEC), supports_check_mode=True)
    try:
        client = K8sClient.from_params(module.params)
        changed, result = run(client, module.params, module.check_mode)
    except K8sError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except SyncError as exc:
        module.fail_json(msg=exc.message, changed=False, **exc.result)
    diff = result.pop("diff", None)
    if module._diff and changed:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
