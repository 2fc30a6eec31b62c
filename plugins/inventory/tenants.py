# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: tenants
short_description: One inventory host per Harbor tenant, from a fleet file
version_added: 0.1.0
description:
  - Reads a fleet file (tenants, plans, shared tiers) and its recorded placement (C(<fleet>.placement.yml)) and
    yields one host per tenant, named after the tenant id, meant for C(connection=local).
  - "Groups: C(tenants) (all), C(plan_<plan>), C(region_<region>), C(harbor_<version>) (dots as underscores),
    C(pg_<server>), C(sentinel_<group>), C(unplaced) (tenants whose placement is not recorded yet), and with
    O(live_status) C(status_<status>) from the tenant's HarborCluster."
  - "Host variables: C(harbor_tenant), C(harbor_plan), C(harbor_plan_settings), C(harbor_region), C(harbor_version),
    C(harbor_external_url), C(harbor_notary), C(harbor_overrides), C(harbor_names) (every name the tenant owns,
    from the collection's tenant model), C(harbor_placement), C(harbor_placement_recorded), C(harbor_postgres),
    C(harbor_sentinel_group), C(harbor_s3) (the tier members the tenant is placed on)."
  - Duplicate or invalid tenant ids, unknown plans and placements on unknown tier members are errors naming them.
  - Placement of new tenants is computed the same way M(harborfleet.fleet.fleet_placement) records it, but only
    recorded placement is stable; such tenants are in group C(unplaced) until it is recorded.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    choices: [harborfleet.fleet.tenants]
    type: str
  fleet_file:
    description: The fleet file, relative to this inventory source unless absolute (C(~) is expanded).
    required: true
    type: str
  live_status:
    description:
      - Also read every tenant's HarborCluster (one list call) and group hosts by C(.status.status) and by the
        collection's readiness rule (C(status_ready), C(status_not_ready), C(status_missing)).
    type: bool
    default: false
  kubeconfig:
    description: Kubeconfig for O(live_status); the client's defaults (E(KUBECONFIG), in-cluster) when unset.
    type: path
  context:
    description: Kubeconfig context for O(live_status).
    type: str
"""

EXAMPLES = r"""
# inventories/prod/fleet.tenants.yml
plugin: harborfleet.fleet.tenants
fleet_file: fleet.yml
keyed_groups:
  - key: harbor_plan_settings.tier | default('standard')
    prefix: tier
"""

import os
import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import FleetError, load_fleet


def _group_name(prefix, value):
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", str(value))


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "harborfleet.fleet.tenants"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".tenants.yml", ".tenants.yaml", "tenants.yml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet_path = os.path.expanduser(self.get_option("fleet_file"))
        if not os.path.isabs(fleet_path):
            fleet_path = os.path.normpath(os.path.join(os.path.dirname(path), fleet_path))
        fleet = self._load_fleet(fleet_path)
        try:
            placement, unplaced = fleet.placement()
        except FleetError as exc:
            raise AnsibleParserError(f"{fleet_path}: {exc}") from None
        status = self._live_status(fleet) if self.get_option("live_status") else {}

        self.inventory.add_group("tenants")
        self.inventory.add_group("unplaced")
        strict = self.get_option("strict")
        for tenant in fleet.tenants:
            host = tenant["id"]
            self.inventory.add_host(host, group="tenants")
            hostvars = fleet.tenant_vars(tenant, placement)
            hostvars["harbor_placement_recorded"] = host not in unplaced
            hostvars["harbor_fleet_file"] = fleet_path
            hostvars.setdefault("ansible_connection", "local")
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            groups = []
            if tenant.get("plan"):
                groups.append(_group_name("plan_", tenant["plan"]))
            if tenant.get("region"):
                groups.append(_group_name("region_", tenant["region"]))
            if hostvars["harbor_version"]:
                groups.append(_group_name("harbor_", hostvars["harbor_version"]))
            if hostvars["harbor_placement"].get("postgres"):
                groups.append(_group_name("pg_", hostvars["harbor_placement"]["postgres"]))
            if hostvars["harbor_placement"].get("sentinel_group"):
                groups.append(_group_name("sentinel_", hostvars["harbor_placement"]["sentinel_group"]))
            if host in unplaced:
                groups.append("unplaced")
            if host in status:
                self.inventory.set_variable(host, "harbor_live", status[host])
                groups.append(_group_name("status_", status[host]["status"] or "unknown"))
                groups.append("status_ready" if status[host]["ready"] else "status_not_ready")
            elif self.get_option("live_status"):
                groups.append("status_missing")
            for group in groups:
                self.inventory.add_group(group)
                self.inventory.add_child(group, host)
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    @staticmethod
    def _load_fleet(fleet_path):
        try:
            return load_fleet(fleet_path)[0]
        except FleetError as exc:
            raise AnsibleParserError(str(exc)) from None

    def _live_status(self, fleet):
        from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_cluster import fleet_status
        try:
            return fleet_status([t["id"] for t in fleet.tenants], kubeconfig=self.get_option("kubeconfig"),
                                context=self.get_option("context"))
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleParserError(f"live_status: cannot read HarborClusters: {exc}") from None
