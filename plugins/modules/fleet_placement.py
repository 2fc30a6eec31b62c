#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_placement
short_description: Record where tenants live, in the cluster, on each tenant's namespace
version_added: 0.1.0
description:
  - Records each tenant's placement (its PostgreSQL server, sentinel group and Redis port, S3 endpoint) as an
    annotation on the tenant's namespace, where every runner sees it - an Automation Platform job in a throwaway
    project copy included. Nothing is written beside the inventory.
  - A recorded placement never changes. Records are written with optimistic concurrency (a namespace is created
    once; an existing one is patched under its resource version), so two runs can never place one tenant twice
    differently; the loser fails naming both placements.
  - With O(placements) (what the C(harborfleet.fleet.tenants) inventory computed for tenants in group
    C(placement_pending), for the cluster the module connects to) the module records exactly those. With O(fleet_file) it reads the fleet file, a legacy
    record file beside it (authoritative for the tenants it holds) and the cluster's records, places new tenants
    in id order on the member with the most free capacity in their region (ties by name), and records them.
  - O(export_file) writes every tenant's placement to a file, for teams who review placement in git.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.kubernetes
attributes:
  check_mode:
    support: full
    description: Reads the cluster's records and reports what a real run would record; writes nothing.
  diff_mode:
    support: full
    description: The placement of every tenant that would be recorded.
  platform:
    support: full
    platforms: posix
    description: Runs where the Kubernetes API is reachable, usually the controller.
options:
  placements:
    description:
      - Tenant id to placement (C(kubernetes), C(postgres), C(sentinel_group), C(redis_port), C(s3)) to record. A tenant whose
        namespace already records the same placement is left alone; one that records another is an error.
      - Mutually exclusive with O(fleet_file).
    type: dict
  fleet:
    description:
      - With O(placements), the fleet's name (the fleet file's C(name), which the inventory gives as
        C(harbor_fleet_name)). It scopes the records, so fleets that share a cluster never count each other's tenants.
    type: str
    default: default
  fleet_file:
    description:
      - A fleet file whose new tenants are placed and recorded (see the description).
      - Mutually exclusive with O(placements).
    type: path
  export_file:
    description: Also write every tenant's placement to this file (YAML, C(tenants:) by id), with O(fleet_file).
    type: path
  logins:
    description:
      - With O(fleet_file) and a C(kubernetes) tier, the logins of its clusters by member name (any of
        C(kubeconfig), C(context), C(host), C(api_key), C(ca_cert), C(validate_certs)), as
        P(harborfleet.fleet.fleet_logins#lookup) returns them. Each cluster's records are read and written with its
        own connection (its login, then the fleet file's member, then this module's connection options).
      - With O(placements) the module records in the one cluster its connection options name; call it once per
        cluster.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Record the placement the inventory computed for new tenants
  harborfleet.fleet.fleet_placement:
    placements: "{{ dict(groups['placement_pending'] | zip(groups['placement_pending']
                    | map('extract', hostvars, 'harbor_placement'))) }}"

- name: Place and record from the fleet file, and export the record for review in git
  harborfleet.fleet.fleet_placement:
    fleet_file: fleets/prod/fleet.yml
    export_file: fleets/prod/fleet.placement.yml
"""

RETURN = r"""
recorded:
  description: Tenants whose placement this run recorded (or would, in check mode).
  returned: always
  type: list
  elements: str
placement:
  description: Every tenant's placement (with O(fleet_file)), or the placements given.
  returned: always
  type: dict
  sample: {acme: {postgres: pg-a, sentinel_group: sg-a, redis_port: 7000, s3: s3-eu}}
unplaced:
  description: Tenants that fit no tier member, with the reason (with O(fleet_file)).
  returned: always
  type: dict
usage:
  description: Per tier kind and member, C([used, capacity]) (with O(fleet_file)).
  returned: always
  type: dict
  sample: {postgres: {pg-a: [120, 400]}, sentinel_groups: {sg-a: [120, 150]}}
overfull:
  description: Members holding more tenants than their capacity (with O(fleet_file)).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import (
    KUBERNETES, KUBERNETES_CONNECTION, Fleet, fleet_clusters, load_yaml, merge_records, placement_path, yaml)
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    CONNECTION_SPEC, KUBERNETES_IMPORT_ERROR, KubeClient, k8s_client)
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_placement import read_fleet_records, record
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import guard
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import validate_tenant_id

ARGUMENT_SPEC = dict(CONNECTION_SPEC, placements=dict(type="dict"), fleet=dict(type="str", default="default"),
                     fleet_file=dict(type="path"), export_file=dict(type="path"),
                     logins=dict(type="dict", no_log=True, default={}))


def from_fleet_file(params, recorded, fleet):
    fleet_file = params["fleet_file"]
    record_path = placement_path(fleet_file)
    legacy = load_yaml(record_path, "placement record") if os.path.exists(record_path) else None
    records = merge_records(Fleet.check_recorded(legacy, f"placement record {record_path}"), recorded, record_path)
    fleet.recorded = Fleet.check_recorded({"tenants": records}, "the recorded placement")
    placement, new, unplaced = fleet.placement()
    usage = fleet.usage(placement)
    overfull = [f"{kind}/{name}" for kind, members in usage.items() for name, (used, cap) in members.items()
                if cap is not None and used > cap]
    wanted = {tid: placement[tid] for tid in sorted(set(new) | (set(records) - set(recorded))) if tid in placement}
    return placement, wanted, dict(unplaced=unplaced, usage=usage, overfull=overfull)


def given_placements(params):
    placement = {}
    for tid, chosen in (params["placements"] or {}).items():
        validate_tenant_id(tid, "placements")
        if not isinstance(chosen, dict) or not chosen.get("postgres"):
            raise TenantInputError(f"placements.{tid}", "must be a mapping with at least postgres")
        placement[tid] = chosen
    return placement


def run(module):
    params = module.params
    defaults = {key: params.get(key) for key in KUBERNETES_CONNECTION}
    extra = {"unplaced": {}, "usage": {}, "overfull": []}
    if params["fleet_file"]:
        # Every cluster of the fleet: each tenant's record goes to the cluster it is placed on.
        fleet = Fleet(load_yaml(params["fleet_file"], "fleet file"),
                      base_dir=os.path.dirname(os.path.abspath(params["fleet_file"])))
        members = fleet_clusters(fleet, params["logins"], defaults)
        clusters = {member["name"]: connection for member, connection in members}
        recorded = read_fleet_records(fleet.name, members, bool(fleet.tiers["kubernetes"]))
        placement, wanted, extra = from_fleet_file(params, recorded, fleet)
        fleet_name = fleet.name
    else:
        clusters = {KUBERNETES["name"]: defaults}
        fleet_name = params["fleet"]
        placement = given_placements(params)
        recorded = read_fleet_records(fleet_name, [(KUBERNETES, defaults)], tiered=False)
        wanted = {tid: chosen for tid, chosen in placement.items() if recorded.get(tid) != chosen}
    written, kubes = [], {}
    try:
        for tid in sorted(wanted):
            if module.check_mode:
                if tid in recorded and any(wanted[tid].get(k) != v for k, v in recorded[tid].items()):
                    module.fail_json(msg=f"tenant {tid!r} is already placed on {recorded[tid]}, not {wanted[tid]}")
                written.append(tid)
                continue
            cluster = wanted[tid].get("kubernetes") if params["fleet_file"] else None
            cluster = cluster or next(iter(clusters))
            if cluster not in kubes:
                kubes[cluster] = KubeClient(clusters[cluster], pool_size=4)
            if record(kubes[cluster], tid, wanted[tid], fleet_name):
                written.append(tid)
    finally:
        for kube in kubes.values():
            kube.close()
    return placement, written, wanted, recorded, extra


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[["placements", "fleet_file"]],
                           required_one_of=[["placements", "fleet_file"]],
                           required_by={"export_file": "fleet_file"})
    if k8s_client is None:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    placement, written, wanted, recorded, extra = guard(module, run, module)
    for member in extra["overfull"]:
        module.warn(f"{member} holds more tenants than its capacity; its tenants are not moved")
    changed = bool(written)
    export = module.params["export_file"]
    if export:
        text = yaml.safe_dump({"tenants": {tid: dict(sorted(placement[tid].items())) for tid in sorted(placement)}},
                              default_flow_style=False, sort_keys=True)
        current = None
        if os.path.exists(export):
            with open(export, encoding="utf-8") as handle:
                current = handle.read()
        if current != text:
            changed = True
            if not module.check_mode:
                with open(export + ".partial", "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(export + ".partial", export)
    result = dict(changed=changed, recorded=written, placement=placement, **extra)
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": {tid: recorded.get(tid) for tid in written},
                          "after": {tid: wanted[tid] for tid in written},
                          "before_header": "recorded in the cluster", "after_header": "recorded in the cluster"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
