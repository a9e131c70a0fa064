#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_info
short_description: Total, allocated and free GPUs per accelerator type and per node
version_added: 0.1.0
description:
  - Counts GPUs (C(nvidia.com/gpu)) on every node, what running pods request, and what is free,
    per node and per accelerator type; and what the namespace ResourceQuota leaves.
  - Under namespace-only RBAC (nodes cannot be listed) it returns the quota only, and says in
    C(warnings) what it could not see.
author:
  - URM training maintainers
extends_documentation_fragment:
  - urm.training.k8s_auth
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Read-only; never changes anything.
options:
  namespace:
    description: The namespace whose GPU quota to report.
    type: str
  accelerator_label:
    description: The node label key that names the accelerator type.
    type: str
    default: accelerator
"""

EXAMPLES = r"""
- name: Free GPUs by type
  urm.training.gpu_info:
    namespace: aic
  register: gpus

- name: Show them
  ansible.builtin.debug:
    msg: "{{ gpus.by_type }}"
"""

RETURN = r"""
nodes_visible:
  description: Whether nodes could be listed.
  returned: always
  type: bool
pods_visible:
  description: Whether pods in all namespaces could be listed (needed for allocated and free).
  returned: always
  type: bool
nodes:
  description: Per GPU node, its type, product, total, allocated and free GPUs.
  returned: always
  type: list
  elements: dict
by_type:
  description: Per accelerator type, total, allocated, free, largest_free (on one node) and nodes.
  returned: always
  type: dict
quota:
  description: The namespace quota for GPUs (name, used, hard, left), when there is one.
  returned: always
  type: dict
visibility:
  description: What could not be seen, and why (also shown as warnings).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    with_auth_options,
)
from ansible_collections.urm.training.plugins.module_utils._observe import gpu_summary


def main() -> None:
    spec = with_auth_options(
        dict(
            namespace={"type": "str"},
            accelerator_label={"type": "str", "default": "accelerator"},
        )
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    try:
        client = K8sClient.from_params(params)
        summary = gpu_summary(client, params["namespace"], params["accelerator_label"])
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    summary["visibility"] = summary.pop("warnings")
    for warning in summary["visibility"]:
        module.warn(warning)
    module.exit_json(changed=False, **summary)


if __name__ == "__main__":
    main()
