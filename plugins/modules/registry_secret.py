#!/usr/bin/python
# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: registry_secret
short_description: Check a registry credential and keep it in a dockerconfigjson Secret
version_added: 0.1.0
description:
  - Checks a container registry credential against the registry (Basic or Bearer token auth, as
    Harbor does it) and, only when it is accepted, writes it into a
    C(kubernetes.io/dockerconfigjson) Secret that pods and Kaniko use to pull and push.
  - The module manages only its own registry's entry in C(.dockerconfigjson). Entries for other
    registries in an existing Secret are kept as they are.
  - The comparison with the live Secret is made on the I(decoded) config, so a rerun with the same
    credential reports no change.
  - Every input is checked before anything is written. A rejected credential, a missing
    namespace or a missing push right fails the task and leaves the Secret as it was.
  - The password and the C(auth) field are never returned, logged or shown in a diff.
author:
  - URM training maintainers
options:
  name:
    description:
      - Name of the Secret (a DNS-1123 subdomain).
    type: str
    default: urm-registry-cred
  namespace:
    description:
      - Namespace of the Secret. It must exist.
    type: str
    required: true
  registry:
    description:
      - The registry as V(host[:port]). V(https://host/) and V(http://host:port) are accepted and
        normalised to the bare V(host[:port]), which becomes the key in C(auths).
      - A path, query or user info is rejected.
      - Required when O(state=present). With O(state=absent), only this registry's entry is
        removed when the Secret holds other registries too.
    type: str
  username:
    description:
      - Registry user, for Harbor preferably a robot account such as V(robot$project+ci).
      - Required when O(state=present).
    type: str
  password:
    description:
      - Password or robot secret. It must not be empty. Required when O(state=present).
    type: str
  email:
    description:
      - Optional e-mail stored in the entry.
    type: str
  state:
    description:
      - V(present) creates or updates the Secret; V(absent) removes it (or only this registry's
        entry, when other registries' entries remain).
    type: str
    choices: [present, absent]
    default: present
  validate:
    description:
      - Check the credential against the registry before writing. The check requests no scope,
        because Harbor answers a bad credential with a scope as anonymous instead of with 401.
    type: bool
    default: true
  require_push:
    description:
      - A repository such as V(project/image) that the credential must be allowed to push to.
      - With token auth the module reads the C(access) claim of a token for
        C(repository:<repo>:pull,push). With Basic auth it opens a blob upload and cancels it at
        once, which is the only way to ask.
      - Checked even when O(validate=false).
    type: str
  service_account:
    description:
      - A ServiceAccount in O(namespace) that gets the Secret in its C(imagePullSecrets)
        (idempotently). With O(state=absent) the reference is removed. It must exist when
        O(state=present).
    type: str
  labels:
    description:
      - Labels to set on the Secret. Other labels are kept.
    type: dict
    default: {}
  annotations:
    description:
      - Annotations to set on the Secret. Other annotations are kept.
    type: dict
    default: {}
extends_documentation_fragment:
  - urm.training.k8s_auth
  - urm.training.registry_tls
attributes:
  check_mode:
    support: full
    description:
      - Makes no write to the Kubernetes API (no dry-run requests either) and reports what would
        change. The registry is still asked whether the credential works; with Basic auth and
        O(require_push) that includes opening and cancelling a blob upload.
  diff_mode:
    support: full
    description:
      - Shows which keys and entries of the Secret (and the ServiceAccount's imagePullSecrets)
        change. Every value is replaced by V(<redacted>) or V(<redacted:changed>).
  idempotent:
    support: full
    description:
      - Compares the decoded C(.dockerconfigjson), labels and annotations with the live Secret.
notes:
  - Use C(no_log) on tasks that pass the password through variables, so that a failing template
    cannot print it. The module's own messages never contain it.
seealso:
  - name: Distribution token authentication
    description: The Bearer token flow the registry check follows.
    link: https://distribution.github.io/distribution/spec/auth/token/
"""

EXAMPLES = r"""
- name: Store the Harbor robot credential for pulls and Kaniko pushes
  urm.training.registry_secret:
    namespace: aic
    registry: harbor.example.org
    username: robot$aic-misc+ci
    password: "{{ vault_harbor_robot_secret }}"
    require_push: aic-misc/urm
    service_account: default
  no_log: true

- name: Set the cluster connection once for the whole play
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/urm.training.k8s:
      kubeconfig: ~/.kube/ice.yaml
      context: ice
  tasks:
    - name: Store a credential for a registry with a private CA
      urm.training.registry_secret:
        namespace: aic
        registry: https://registry.internal:5000/
        username: ci
        password: "{{ lookup('ansible.builtin.env', 'REGISTRY_PASSWORD') }}"
        registry_ca_cert: /etc/ssl/internal-ca.pem
      no_log: true

- name: Remove the Secret and its imagePullSecrets reference
  urm.training.registry_secret:
    namespace: aic
    registry: harbor.example.org
    state: absent
    service_account: default
"""

RETURN = r"""
name:
  description: Name of the Secret.
  returned: always
  type: str
  sample: urm-registry-cred
namespace:
  description: Namespace of the Secret.
  returned: always
  type: str
  sample: aic
registry:
  description: The normalised registry key, V(host[:port]).
  returned: always
  type: str
  sample: harbor.example.org
validated:
  description: Whether the credential was checked against the registry (and accepted).
  returned: always
  type: bool
push_allowed:
  description: V(true) when O(require_push) was checked and granted; V(null) when not checked.
  returned: always
  type: bool
secret_action:
  description: What happened (or would happen, in check mode) to the Secret.
  returned: always
  type: str
  sample: created
  choices: [created, updated, deleted, unchanged]
service_account_updated:
  description: Whether the ServiceAccount's imagePullSecrets were (or would be) changed.
  returned: always
  type: bool
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: Secret aic/urm-registry-cred was created
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.urm.training.plugins.module_utils._registry_secret import (
    InputError,
    K8sError,
    RegistryError,
    argument_spec,
    run,
    scrub,
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        outcome = run(module.params, module.check_mode, module._diff)
    except (InputError, K8sError, RegistryError) as exc:
        module.fail_json(msg=scrub(str(exc), module.params), changed=False)
    extra = {"diff": outcome.diff} if outcome.diff is not None else {}
    module.exit_json(changed=outcome.changed, **outcome.result, **extra)


if __name__ == "__main__":
    main()
