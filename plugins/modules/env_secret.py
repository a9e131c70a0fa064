#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_secret
short_description: Keep an Opaque Secret of values that training pods read as environment variables
version_added: 0.1.0
description:
  - Creates or updates an Opaque Secret, for example the wandb API key, so that
    urm.training.training_job can pass it by reference (O(secret_env)) instead of in the pod spec.
  - The live Secret is compared decoded; a rerun with the same values reports no change.
  - Values are never returned, logged or shown in a diff; the diff names the keys that changed.
author:
  - URM training maintainers
extends_documentation_fragment:
  - urm.training.k8s_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports whether it would change.
  diff_mode:
    support: full
    description: Key names with redacted values; changed keys are marked as changed.
  idempotent:
    support: full
    description: Same values, no change.
options:
  name:
    description: Name of the Secret.
    type: str
    required: true
  namespace:
    description: Namespace of the Secret. It must exist.
    type: str
    required: true
  data:
    description:
      - Key to value. Every value must be non-empty. The whole data of the Secret is replaced by it.
    type: dict
    default: {}
  state:
    description: V(present) or V(absent).
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Keep the wandb key for the training pods
  urm.training.env_secret:
    namespace: aic
    name: urm-wandb
    data:
      api-key: "{{ vault_wandb_api_key }}"
  no_log: true
"""

RETURN = r"""
name:
  description: The Secret name.
  returned: always
  type: str
keys:
  description: The keys it holds (never the values).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._env_secret import ensure_env_secret
from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    with_auth_options,
)


def main() -> None:
    spec = with_auth_options(
        dict(
            name={"type": "str", "required": True},
            namespace={"type": "str", "required": True},
            data={"type": "dict", "default": {}, "no_log": True},
            state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        )
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    try:
        client = K8sClient.from_params(params)
        result = ensure_env_secret(
            client,
            name=params["name"],
            namespace=params["namespace"],
            data=params["data"] or {},
            state=params["state"],
            check_mode=module.check_mode,
        )
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    diff = result.pop("diff", None)
    if module._diff and diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
