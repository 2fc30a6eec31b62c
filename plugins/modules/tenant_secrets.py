#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_secrets
short_description: A Harbor tenant's passwords, generated once and kept in its Kubernetes Secrets
version_added: 0.1.0
description:
  - Makes sure each tenant's namespace (C(harbor-<id>), labelled with the tenant id) and the Secrets the
    HarborCluster references exist, with the Harbor Operator's data keys, and returns where they are (Secret names
    and data keys), never the values.
  - The Secrets are the source of truth for a tenant's passwords. A missing password is generated once (40 letters
    and digits, URL-safe as the operator needs for Redis) and written; later runs read it back, so the database
    role, the Redis instances and the HarborCluster always get the same value.
  - O(values) writes given values (for example a new S3 secret key right after it was created); O(rotate)
    replaces passwords with new generated ones. Nothing is ever deleted.
  - No password is ever part of the result, its diff or its call records, on success or failure; tasks that need
    the values read them with the P(harborfleet.fleet.tenant_passwords#lookup) lookup, which never puts them in a
    task result.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.kubernetes
  - harborfleet.fleet.batch
  - harborfleet.fleet.attributes
options:
  tenant:
    description: The tenant id (single form). Mutually exclusive with O(tenants).
    type: str
  tenants:
    description:
      - The list form. Each item is one tenant and takes the per-tenant options below; an option an item leaves
        out takes its top-level value.
    type: list
    elements: dict
    suboptions:
      tenant:
        description: The tenant id.
        type: str
        required: true
      ensure:
        description: See the top-level O(ensure).
        type: list
        elements: str
        choices: [database, cache, admin]
      values:
        description: See the top-level O(values).
        type: dict
      rotate:
        description: See the top-level O(rotate).
        type: list
        elements: str
        choices: [database, cache, admin]
  ensure:
    description: Secrets that must exist; missing ones get a generated password.
    type: list
    elements: str
    choices: [database, cache, admin]
    default: [database, cache, admin]
  values:
    description:
      - Values to write, by Secret (C(database), C(cache), C(admin), C(storage) for the S3 secret key).
      - Per tenant only; cannot be set at the top level together with O(tenants).
      - The C(cache) value must be letters and digits only.
    type: dict
  rotate:
    description: Secrets whose password is replaced by a newly generated one.
    type: list
    elements: str
    choices: [database, cache, admin]
"""

EXAMPLES = r"""
- name: Passwords of every tenant, generated on first use
  harborfleet.fleet.tenant_secrets:
    kubeconfig: ~/.kube/fleet
    tenants:
      - tenant: acme
      - tenant: globex
  register: tenant_secrets

- name: Store a new S3 secret key as soon as it exists
  harborfleet.fleet.tenant_secrets:
    tenant: acme
    ensure: []
    values:
      storage: "{{ vault_acme_storage_secret_key }}"
"""

RETURN = r"""
tenant:
  description: The tenant id.
  returned: single form
  type: str
namespace:
  description: The tenant's namespace.
  returned: single form
  type: str
  sample: harbor-acme
secrets:
  description: Per Secret, V(created), V(changed) or V(unchanged). Never a value.
  returned: single form
  type: dict
  sample: {database: unchanged, cache: unchanged, admin: created}
refs:
  description:
    - Where each of the tenant's Secrets keeps its value (after the run, or in check mode as it would be), by
      purpose, including Secrets the run did not touch (for example C(storage)). References only, never a value.
  returned: single form
  type: dict
  sample: {database: {name: acme-database, keys: [postgres-password, postgresql-password]}}
actions:
  description: What changed (or would change in check mode).
  returned: single form
  type: list
  elements: str
calls:
  description: The API calls that made the changes.
  returned: single form
  type: list
  elements: str
results:
  description: One entry per tenant with the single-form fields.
  returned: list form
  type: list
  elements: dict
failed_tenants:
  description: Ids of the tenants that failed.
  returned: list form
  type: list
  elements: str
summary:
  description: Counts of tenants C(total), C(changed), C(failed), C(skipped).
  returned: list form
  type: dict
"""

from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetModule
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    CONNECTION_SPEC, KUBERNETES_IMPORT_ERROR, KubeClient, k8s_client)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import (
    TenantSecretsBackend, TenantSecretsSpec)

PURPOSES = ["database", "cache", "admin"]
TENANT_SPEC = dict(
    ensure=dict(type="list", elements="str", choices=PURPOSES, default=PURPOSES),
    values=dict(type="dict", no_log=True),
    rotate=dict(type="list", elements="str", choices=PURPOSES, no_log=False),
)


def main():
    fm = FleetModule(CONNECTION_SPEC, TENANT_SPEC, per_tenant_only=("values",),
                     libraries={"kubernetes": (k8s_client, KUBERNETES_IMPORT_ERROR)})
    specs = fm.guard(lambda: [TenantSecretsSpec(item) for item in fm.tenant_params()])
    kube = fm.guard(KubeClient, fm.params, pool_size=fm.concurrency() + 2)
    try:
        fm.converge(TenantSecretsBackend(kube), specs)
    finally:
        kube.close()


if __name__ == "__main__":
    main()
