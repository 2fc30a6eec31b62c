# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: tenants
short_description: One inventory host per Harbor tenant, from a fleet file and the placement the cluster records
version_added: 0.1.0
description:
  - Reads a fleet file (tenants, plans, shared tiers) and where each tenant lives - recorded on the tenant's
    namespace in the cluster (one list call), plus a legacy record file beside the fleet file if there is one - and
    yields one host per tenant, named after the tenant id, meant for C(connection=local).
  - Tenants without a recorded placement are placed in memory exactly as M(harborfleet.fleet.fleet_placement)
    records it (the first run of C(deploy_fleet.yml) records it), in group C(placement_pending).
  - A tenant that fits no tier member goes to group C(unplaced) (not C(tenants)) with its reason in
    C(harbor_unplaced_reason); the others are unaffected.
  - "Groups: C(tenants), C(plan_<plan>), C(region_<region>), C(harbor_<version>) (dots as underscores),
    C(k8s_<cluster>), C(pg_<server>), C(sentinel_<group>), C(s3_<endpoint>), C(placement_pending), C(unplaced), and
    with O(live_status) C(status_<status>)."
  - "With a C(kubernetes) tier in the fleet file, each cluster is read with its own connection: the member's
    C(kubeconfig), C(context), C(host), C(ca_cert) from the fleet file, under its login from the file named by
    E(HARBORFLEET_KUBERNETES_LOGINS) (see P(harborfleet.fleet.fleet_logins#lookup)), over O(kubeconfig) and
    O(context). Records from before the tier existed belong to the cluster they are found in."
  - "Host variables, compact: C(harbor_tenant), C(harbor_plan), C(harbor_region), C(harbor_version),
    C(harbor_external_url), C(harbor_notary), C(harbor_placement) (tier members by name, Redis port),
    C(harbor_placement_recorded), C(harbor_overrides) and C(harbor_labels) when set. The tier members and the plans
    are group variables of C(tenants), once for the fleet: C(harbor_fleet_tiers), C(harbor_fleet_plans),
    C(harbor_fleet_file)."
  - "Transport: a C(postgres) member's C(ssl_mode) (default V(verify-full)) and an C(s3) member's C(https://)
    endpoint (C(http://) only with C(allow_plain: true)); a member's C(ca_cert) file (relative to the fleet file) is
    read here and its certificates travel in C(harbor_fleet_tiers) as C(ca_bundle), so a job in another copy of the
    project verifies the store with them."
  - "Refused, naming the field: invalid, duplicate or reserved tenant ids (C(all), C(ungrouped), C(localhost),
    C(tenants), C(unplaced), C(placement_pending), or a host another inventory source defines), plans or regions
    whose group names collide, two tenants on one Redis port, admin credentials in a tier entry, malformed
    records."
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    choices: [harborfleet.fleet.tenants]
    type: str
  fleet_file:
    description:
      - The fleet file, relative to this inventory source unless absolute (C(~) is expanded).
      - May be a template, for example to read a directory from the environment with the C(ansible.builtin.env)
        lookup.
    required: true
    type: str
  placement:
    description:
      - Where recorded placement is read. V(cluster) reads the tenants' namespaces (and imports a legacy record
        file beside the fleet file); V(file) only reads the record file (offline use; nothing can be recorded).
    type: str
    choices: [cluster, file]
    default: cluster
  live_status:
    description:
      - Also read every tenant's HarborCluster (one list call) and group hosts by C(.status.status) and by the
        collection's readiness rule (C(status_ready), C(status_not_ready), C(status_missing)).
    type: bool
    default: false
  kubeconfig:
    description:
      - Kubeconfig of the cluster (of every cluster member that names none); the client's defaults (E(KUBECONFIG),
        in-cluster) when unset.
    type: path
    env:
      - name: K8S_AUTH_KUBECONFIG
  context:
    description: Kubeconfig context.
    type: str
    env:
      - name: K8S_AUTH_CONTEXT
"""

EXAMPLES = r"""
# inventories/prod/fleet.tenants.yml
plugin: harborfleet.fleet.tenants
fleet_file: fleet.yml
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/cache/harborfleet
keyed_groups:
  - key: harbor_fleet_plans[harbor_plan].tier | default('standard')
    prefix: tier
"""

import os
import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import (
    KUBERNETES, Fleet, FleetError, fleet_clusters, load_yaml, merge_records, placement_path, read_logins)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import DEFAULT_CAPACITY

RESERVED = frozenset(("all", "ungrouped", "localhost", "tenants", "unplaced", "placement_pending"))


def _group_name(prefix, value):
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", str(value))


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "harborfleet.fleet.tenants"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".tenants.yml", ".tenants.yaml", "tenants.yml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        data = None
        if use_cache:
            try:
                data = self._cache[key]
            except KeyError:
                data = None
        if data is None:
            try:
                data = self._build(path)
            except FleetError as exc:
                raise AnsibleParserError(str(exc)) from None
            if self.get_option("cache"):
                self._cache[key] = data
        self._populate(data)

    # ------------------------------------------------------------------ build (what the cache holds)
    def _build(self, path):
        fleet_path = self.get_option("fleet_file")
        if self.templar.is_template(fleet_path):
            fleet_path = self.templar.template(fleet_path)
        fleet_path = os.path.expanduser(str(fleet_path))
        if not os.path.isabs(fleet_path):
            fleet_path = os.path.normpath(os.path.join(os.path.dirname(path), fleet_path))
        record_path = placement_path(fleet_path)
        legacy = load_yaml(record_path, "placement record") if os.path.exists(record_path) else None
        file_records = Fleet.check_recorded(legacy, f"placement record {record_path}")
        data = load_yaml(fleet_path, "fleet file")
        try:
            fleet = Fleet(data, base_dir=os.path.dirname(os.path.abspath(fleet_path)))
        except FleetError as exc:
            raise FleetError(f"{fleet_path}: {exc}") from None
        clusters = self._clusters(fleet)
        cluster_records = self._cluster_records(fleet, clusters) if self.get_option("placement") == "cluster" else {}
        records = merge_records(file_records, cluster_records, record_path)
        try:
            fleet.recorded = Fleet.check_recorded({"tenants": records}, "the recorded placement")
            placement, new, unplaced = fleet.placement()
            new = set(new)
        except FleetError as exc:
            raise FleetError(f"{fleet_path}: {exc}") from None
        status = self._live_status(clusters, placement) if self.get_option("live_status") else None
        hosts, groups = {}, {"tenants": [], "unplaced": [], "placement_pending": []}
        # Values many tenants share are variables of the group that has them (plan_*, region_*, harbor_*,
        # tenants), not copies in every host: a 10,000-tenant inventory stays small and quick to export.
        group_vars = {"tenants": dict(fleet.group_vars(), harbor_fleet_file=fleet_path, ansible_connection="local",
                                      harbor_notary=False, harbor_placement_recorded=True)}
        for tenant in fleet.tenants:
            tid = tenant["id"]
            if tid in RESERVED:
                raise FleetError(f"{fleet_path}: tenants.id {tid!r} is reserved (an inventory group or host name)")
            full = fleet.tenant_vars(tenant, placement)
            host = {key: full[key] for key in ("harbor_tenant", "harbor_placement", "harbor_external_url",
                                               "harbor_overrides", "harbor_labels") if key in full}
            if full["harbor_notary"]:
                host["harbor_notary"] = True
            if tid in unplaced:
                host.update(harbor_unplaced_reason=unplaced[tid], harbor_plan=full["harbor_plan"],
                            harbor_region=full["harbor_region"], harbor_version=full["harbor_version"])
                hosts[tid] = host
                groups["unplaced"].append(tid)
                continue
            if tid in new:
                host["harbor_placement_recorded"] = False
            hosts[tid] = host
            names = ["tenants"] + (["placement_pending"] if tid in new else [])
            chosen = host["harbor_placement"]
            for prefix, variable, value in (("k8s_", None, chosen.get("kubernetes")),
                                            ("plan_", "harbor_plan", full["harbor_plan"]),
                                            ("region_", "harbor_region", full["harbor_region"]),
                                            ("harbor_", "harbor_version", full["harbor_version"]),
                                            ("pg_", None, chosen.get("postgres")),
                                            ("sentinel_", None, chosen.get("sentinel_group")),
                                            ("s3_", None, chosen.get("s3"))):
                if value:
                    name = _group_name(prefix, value)
                    names.append(name)
                    if variable:
                        group_vars.setdefault(name, {variable: value})
            if status is not None:
                live = status.get(tid)
                if live is not None:
                    host["harbor_live"] = live
                    names += [_group_name("status_", live["status"] or "unknown"),
                              "status_ready" if live["ready"] else "status_not_ready"]
                else:
                    names.append("status_missing")
            for name in names:
                groups.setdefault(name, []).append(tid)
        self._check_group_names(fleet, fleet_path)
        tier_hosts = self._redis_tier(fleet, hosts, groups, group_vars, fleet_path)
        return {"hosts": hosts, "groups": groups, "group_vars": group_vars, "tier_hosts": tier_hosts}

    @staticmethod
    def _redis_tier(fleet, hosts, groups, group_vars, fleet_path):
        """The machines of the sentinel groups that list ``hosts``: group ``redis_tier``, and per sentinel group
        ``sg_<name>`` (the role's settings for it), ``sg_<name>_redis`` and ``sg_<name>_sentinels``, so one play on
        redis_tier converges every group at once."""
        tier_hosts = {}
        for member in fleet.tiers["sentinel_groups"]:
            if not member.get("hosts"):
                continue
            base = _group_name("sg_", member["name"])
            capacity = member.get("capacity", DEFAULT_CAPACITY["sentinel_groups"])
            group_vars[base] = dict(member.get("vars") or {}, redis_sentinel_group_name=member["name"],
                                    redis_sentinel_redis_group=f"{base}_redis",
                                    redis_sentinel_sentinel_group=f"{base}_sentinels",
                                    redis_sentinel_group_capacity=capacity)
            for host in member["hosts"]:
                name = host["name"]
                if name in hosts or name in RESERVED:
                    raise FleetError(f"{fleet_path}: sentinel group {member['name']!r} host {name!r} is also a tenant "
                                     "id or a reserved name")
                own = dict(host.get("vars") or {})
                for key, variable in (("address", "redis_sentinel_address"),
                                      ("sentinel_port", "redis_sentinel_sentinel_port"),
                                      ("port_offset", "redis_sentinel_port_offset")):
                    if host.get(key) is not None:
                        own[variable] = host[key]
                tier_hosts[name] = own
                member_groups = ["redis_tier", base]
                member_groups += [f"{base}_redis"] if host.get("redis", True) else []
                member_groups += [f"{base}_sentinels"] if host.get("sentinel", True) else []
                for group in member_groups:
                    groups.setdefault(group, []).append(name)
        return tier_hosts

    @staticmethod
    def _check_group_names(fleet, fleet_path):
        """Two plans (or regions, versions) whose group names are the same would merge their groups."""
        for prefix, values in (("plan_", fleet.plans), ("region_", {t.get("region") for t in fleet.tenants}),
                               ("harbor_", {str(t.get("harbor_version")) for t in fleet.tenants})):
            seen = {}
            for value in sorted(v for v in values if v):
                other = seen.setdefault(_group_name(prefix, value), value)
                if other != value:
                    raise FleetError(f"{fleet_path}: {prefix[:-1]} names {other!r} and {value!r} both make the group "
                                     f"{_group_name(prefix, value)!r}; rename one")

    def _clusters(self, fleet):
        """Every Kubernetes cluster of the fleet with its connection: a member's own (fleet file, then its login from
        E(HARBORFLEET_KUBERNETES_LOGINS)) over this source's options."""
        defaults = {"kubeconfig": self.get_option("kubeconfig"), "context": self.get_option("context")}
        return fleet_clusters(fleet, read_logins("kubernetes") if fleet.tiers["kubernetes"] else None, defaults)

    @staticmethod
    def _cluster_records(fleet, clusters):
        from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import k8s_client
        from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_placement import read_fleet_records
        if k8s_client is None:
            raise FleetError("placement: cluster needs the Python library kubernetes (or set placement: file)")
        try:
            return read_fleet_records(fleet.name, clusters, bool(fleet.tiers["kubernetes"]))
        except FleetError as exc:
            raise FleetError(f"placement: {exc}") from None

    @staticmethod
    def _live_status(clusters, placement):
        from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_cluster import fleet_status
        status = {}
        for member, params in clusters:
            tenants = [tid for tid, chosen in placement.items()
                       if chosen.get("kubernetes", KUBERNETES["name"]) == member["name"]]
            try:
                status.update(fleet_status(tenants, params) if tenants else {})
            except Exception as exc:  # pylint: disable=broad-except
                raise FleetError(f"live_status: cannot read HarborClusters in cluster {member['name']!r}: "
                                 f"{exc}") from None
        return status

    # ------------------------------------------------------------------ populate
    def _populate(self, data):
        existing = set(self.inventory.hosts)
        taken = sorted(existing & (set(data["hosts"]) | set(data.get("tier_hosts", {}))))
        if taken:
            raise AnsibleParserError(f"{taken[0]!r} (a tenant or a sentinel group's host) is also a host of another "
                                     "inventory source; rename one of them")
        for name in data["groups"]:
            self.inventory.add_group(name)
        for name, variables in data["group_vars"].items():
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
        strict = self.get_option("strict")
        for name, host in list(data["hosts"].items()) + list(data.get("tier_hosts", {}).items()):
            self.inventory.add_host(name)
            for key, value in host.items():
                self.inventory.set_variable(name, key, value)
        shared = {}
        for name, members in data["groups"].items():
            for tid in members:
                self.inventory.add_child(name, tid)
                shared.setdefault(tid, {}).update(data["group_vars"].get(name) or {})
        for tid in data["groups"]["tenants"]:
            hostvars = dict(shared[tid], **data["hosts"][tid])
            self._set_composite_vars(self.get_option("compose"), hostvars, tid, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, tid, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, tid, strict=strict)
