#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: training_info
short_description: List training runs (phase, nodes, GPUs, age, reason) and tail their logs
version_added: 0.1.0
description:
  - Lists the runs that urm.training.training_job created in a namespace, newest first, with a
    plain-English reason for a run that failed or waits.
  - Runs whose Job was removed by C(ttlSecondsAfterFinished) are still listed, from their record.
  - With O(name) and O(tail_lines), returns the last log lines of the run.
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
    description: The namespace to look in.
    type: str
    required: true
  name:
    description: Only this run.
    type: str
  label_selector:
    description: An extra label selector, for example C(sweep=lr).
    type: str
  tail_lines:
    description: Return this many last log lines per run (C(0) for none).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Show my runs
  urm.training.training_info:
    namespace: aic
  register: runs

- name: Last 100 log lines of one run
  urm.training.training_info:
    namespace: aic
    name: urm-pretrain-01
    tail_lines: 100
"""

RETURN = r"""
runs:
  description: One entry per run.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The run name., type: str}
    kind: {description: Job or Pod (a dev pod)., type: str}
    phase: {description: Pending, Running, Succeeded or Failed., type: str}
    reason: {description: Why it failed or waits., type: str}
    message: {description: The plain-English explanation., type: str}
    nodes: {description: Nodes its pods are on., type: list, elements: str}
    gpus: {description: GPUs in total., type: int}
    age: {description: Time since creation, like 3h., type: str}
    commit:
      description:
        - The source commit the run's code came from (label training.urm.io/git-commit), if known.
      type: str
    dirty:
      description:
        - Whether that code had uncommitted changes (label training.urm.io/git-dirty), if known.
      type: bool
    log_tail: {description: Last log lines, with O(tail_lines)., type: str}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._k8s import (
    K8sClient,
    K8sError,
    with_auth_options,
)
from ansible_collections.urm.training.plugins.module_utils._observe import list_runs


def main() -> None:
    spec = with_auth_options(
        dict(
            namespace={"type": "str", "required": True},
            name={"type": "str"},
            label_selector={"type": "str"},
            tail_lines={"type": "int", "default": 0},
        )
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    try:
        client = K8sClient.from_params(params)
        runs = list_runs(
            client,
            params["namespace"],
            name=params["name"],
            label_selector=params["label_selector"],
            tail_lines=params["tail_lines"],
        )
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    if params["name"] and not runs:
        module.fail_json(msg=f"no run named {params['name']!r} in namespace {params['namespace']}")
    module.exit_json(changed=False, runs=runs)


if __name__ == "__main__":
    main()
