# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: tenant_passwords
author:
  - harborfleet maintainers (@harborfleet)
version_added: 0.2.0
short_description: The passwords kept in tenants' Kubernetes Secrets, for templates on the controller
description:
  - Reads the Secrets that P(harborfleet.fleet.tenant_secrets#module) keeps for each tenant (one LIST of namespaces
    and one of Secrets for all the tenants) and returns one mapping, tenant id to C({database, cache, admin,
    storage}) (the purposes whose Secret exists).
  - This is how a play gets passwords without any task result holding them (modules return references only).
    Keep the mapping in a variable (a C(no_log) C(set_fact)) and pass it to templates and no_log module options.
options:
  _terms:
    description:
      - Tenant ids (a list, or several terms), read from the cluster the connection options name.
      - "Or batches as P(harborfleet.fleet.fleet_batches#filter) returns them (C(member), C(tenants)): each batch's
        tenants are read from its Kubernetes cluster, with the member's connection (its login from O(logins), the
        fleet file's member, then the connection options)."
    required: true
    type: list
    elements: raw
  logins:
    description: With batches, the logins of the clusters by member name (C(fleet_kubernetes_logins)).
    type: dict
  missing:
    description:
      - What a password whose Secret does not exist yet becomes.
      - V(fail) raises an error naming the tenant and the Secret.
      - V(generate) gives a throwaway URL-safe value that is never stored (for check mode, where the Secrets a real
        run would create do not exist).
      - V(omit) leaves the purpose out.
    type: str
    choices: [fail, generate, omit]
    default: fail
  purposes:
    description: The Secrets that must be there (others are returned when they exist).
    type: list
    elements: str
    default: [database, cache, admin]
  kubeconfig:
    description: Path to a kubeconfig file.
    type: path
  context:
    description: The kubeconfig context.
    type: str
  host:
    description: The API server URL, instead of a kubeconfig.
    type: str
  api_key:
    description: A bearer token for O(host).
    type: str
  ca_cert:
    description: CA bundle to verify the API server with.
    type: path
  validate_certs:
    description: Verify the API server's certificate (the default).
    type: bool
notes:
  - Connection options left unset fall back to the E(K8S_AUTH_*) environment variables, as the modules' do.
  - A lookup runs each time its template is rendered; set the result once with a C(no_log) C(set_fact).
"""

EXAMPLES = r"""
- name: Passwords for the Redis tier's config files (never in a task result)
  ansible.builtin.set_fact:
    fleet_passwords: >-
      {{ lookup('harborfleet.fleet.tenant_passwords', ['acme', 'globex'], kubeconfig='~/.kube/fleet',
                missing='generate' if ansible_check_mode else 'fail') }}
  no_log: true

- name: The same for every cluster of a fleet
  ansible.builtin.set_fact:
    fleet_passwords: >-
      {{ lookup('harborfleet.fleet.tenant_passwords', tenants | harborfleet.fleet.fleet_batches('secrets'),
                logins=fleet_kubernetes_logins) }}
  no_log: true
"""

RETURN = r"""
_raw:
  description: One mapping, tenant id to {purpose - password}.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, describe_error
from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import member_settings
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, TenantInputError, generate_password, validate_tenant_id)

CONNECTION = ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs")


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import KubeClient, k8s_client
        from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import read_tenant_passwords
        if k8s_client is None:
            raise AnsibleLookupError("tenant_passwords needs the Python library kubernetes")
        defaults = {name: self.get_option(name) for name in CONNECTION}
        clusters = []  # (connection, tenant ids)
        loose = []
        for term in terms:
            for item in term if isinstance(term, list) else [term]:
                if isinstance(item, dict) and "member" in item:
                    try:
                        connection = member_settings(item["member"], "kubernetes", self.get_option("logins"), defaults)
                    except FleetError as exc:
                        raise AnsibleLookupError(f"tenant_passwords: {exc}") from None
                    clusters.append((connection, [entry.get("tenant") for entry in item.get("tenants") or []]))
                else:
                    loose.append(item)
        if loose:
            clusters.append((defaults, loose))
        tenant_ids = [tid for _connection, ids in clusters for tid in ids]
        try:
            for index, tid in enumerate(tenant_ids):
                validate_tenant_id(tid, f"_terms[{index}]")
        except TenantInputError as exc:
            raise AnsibleLookupError(f"tenant_passwords: {exc}") from None
        missing, purposes = self.get_option("missing"), self.get_option("purposes")
        found = {}
        try:
            for connection, ids in clusters:
                kube = KubeClient(connection)
                try:
                    found.update(read_tenant_passwords(kube, ids))
                finally:
                    kube.close()
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleLookupError(f"tenant_passwords: {describe_error(exc)}") from None
        for tid in tenant_ids:
            for purpose in purposes:
                if found[tid].get(purpose) is not None or missing == "omit":
                    continue
                if missing == "fail":
                    tenant = Tenant(tid)
                    raise AnsibleLookupError(
                        f"tenant_passwords: tenant {tid!r} has no {purpose} password yet (Secret "
                        f"{tenant.namespace}/{tenant.secret_name(purpose)}); run harborfleet.fleet.tenant_secrets "
                        "first")
                found[tid][purpose] = generate_password()
        return [found]
