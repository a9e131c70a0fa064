# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Documentation of the container registry connection options."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  registry_ca_cert:
    description:
      - Path to a CA bundle that signed the registry's TLS certificate (and its token server's).
      - Without it the system trust store is used.
    type: path
  registry_validate_certs:
    description:
      - Whether to verify the registry's TLS certificate. Turn off only for throwaway registries.
    type: bool
    default: true
  registry_timeout:
    description:
      - Seconds to wait for each request to the registry and its token server.
    type: float
    default: 15
requirements:
  - requests >= 2.31
"""
