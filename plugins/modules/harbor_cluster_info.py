#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: harbor_cluster_info
short_description: Read HarborCluster resources - one tenant's, or a fleet's with counts by status and version
version_added: 0.1.0
description:
  - Reads C(goharbor.io/v1beta1) C(HarborCluster) resources and reports, for each, its tenant, version, status,
    readiness by the operator's rule, conditions and a summary of its spec.
  - With O(tenant), reads that tenant's cluster (one GET). Otherwise lists clusters across all namespaces (or in
    O(namespace)) by label selector, with one LIST, and adds fleet counts by status and by version.
  - "Readiness rule: C(status.observedGeneration) equals C(metadata.generation), C(InProgress) and C(Failed) are
    not C(True), C(ServiceReady) is C(True) and C(status.status) is C(healthy)."
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.kubernetes
  - harborfleet.fleet.attributes.info
options:
  tenant:
    description:
      - Read only this tenant's cluster (C(<id>) in namespace C(harbor-<id>)).
      - Mutually exclusive with O(tenants), O(label_selector) and O(namespace).
    type: str
  tenants:
    description: Only these tenants (a label selector on C(harborfleet.io/tenant)).
    type: list
    elements: str
  label_selector:
    description:
      - A label selector, e.g. C(plan=gold,region in (eu1,eu2)).
      - Defaults to the clusters this collection manages (C(app.kubernetes.io/managed-by=harborfleet)); an empty
        string lists every HarborCluster.
    type: str
  namespace:
    description: List only in this namespace.
    type: str
"""

EXAMPLES = r"""
- name: The fleet at a glance
  harborfleet.fleet.harbor_cluster_info:
    kubeconfig: ~/.kube/fleet
  register: fleet

- name: Fail when a tenant is not ready
  ansible.builtin.assert:
    that: fleet.counts.ready == fleet.counts.total
    fail_msg: "not ready: {{ fleet.clusters | rejectattr('ready') | map(attribute='tenant') | join(', ') }}"

- name: One tenant
  harborfleet.fleet.harbor_cluster_info:
    tenant: acme
  register: acme

- name: The gold plan's clusters
  harborfleet.fleet.harbor_cluster_info:
    label_selector: app.kubernetes.io/managed-by=harborfleet,plan=gold
"""

RETURN = r"""
cluster:
  description: The tenant's cluster (same fields as an item of RV(clusters)), or V(null) when it does not exist.
  returned: with tenant
  type: dict
unreadable_namespaces:
  description:
    - Tenant namespaces this identity may not read, left out of RV(clusters) (another fleet's, when each fleet has
      its own identity bound per namespace). Only when reading the whole managed fleet (no O(tenant), O(tenants)).
  returned: when some were left out
  type: list
  elements: str
clusters:
  description: The clusters found, ordered by namespace and name.
  returned: always
  type: list
  elements: dict
  contains:
    tenant:
      description: The tenant id (label C(harborfleet.io/tenant)), V(null) for clusters not made by this collection.
      type: str
      sample: acme
    name:
      description: Name of the HarborCluster.
      type: str
    namespace:
      description: Its namespace.
      type: str
    version:
      description: C(spec.version).
      type: str
      sample: 2.6.4
    external_url:
      description: C(spec.externalURL).
      type: str
    harbor_class:
      description: The C(goharbor.io/harbor-class) annotation.
      type: str
    status:
      description: C(status.status) (C(provisioning), C(healthy), C(unhealthy)), or V(unknown) before the first reconcile.
      type: str
      sample: healthy
    ready:
      description: Whether the readiness rule holds.
      type: bool
    reasons:
      description: Why the cluster is not ready (empty when it is).
      type: list
      elements: str
    generation:
      description: C(metadata.generation).
      type: int
    observed_generation:
      description: C(status.observedGeneration).
      type: int
    conditions:
      description: The conditions with C(type), C(status), C(reason), C(message) and C(last_transition_time).
      type: list
      elements: dict
    deleting:
      description: Whether the cluster is being deleted.
      type: bool
    created:
      description: C(metadata.creationTimestamp).
      type: str
    spec:
      description: A summary of the spec - C(database), C(cache), C(storage), C(expose), C(components), C(log_level).
      type: dict
counts:
  description: Fleet counts C(total), C(ready), C(by_status) and C(by_version).
  returned: always
  type: dict
  sample: {total: 20, ready: 15, by_status: {healthy: 15, unhealthy: 5}, by_version: {"2.6.4": 20}}
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_cluster import read_clusters
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    CONNECTION_SPEC, KUBERNETES_IMPORT_ERROR, KubeClient, k8s_client)
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import guard

ARGUMENT_SPEC = dict(
    CONNECTION_SPEC,
    tenant=dict(type="str"),
    tenants=dict(type="list", elements="str"),
    label_selector=dict(type="str"),
    namespace=dict(type="str"),
)


def read(params):
    kube = KubeClient(params, pool_size=2)
    try:
        return read_clusters(kube, params["tenant"], params["tenants"], params["label_selector"], params["namespace"])
    finally:
        kube.close()


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[["tenant", "tenants"], ["tenant", "label_selector"],
                                               ["tenant", "namespace"]])
    if k8s_client is None:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    result = guard(module, read, module.params)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
