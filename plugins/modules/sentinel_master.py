#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sentinel_master
short_description: A Harbor tenant's Redis master set on every sentinel of a group
version_added: 0.1.0
description:
  - Registers, converges or removes a tenant's master set on EVERY sentinel of a group, so the tenant's Harbor
    can reach its own Redis master through one sentinel endpoint and C(sentinelMasterSet).
  - Registration is C(SENTINEL MONITOR) with O(quorum), then one C(SENTINEL SET) with C(auth-pass),
    C(down-after-milliseconds), C(failover-timeout) and C(parallel-syncs). Removal is C(SENTINEL REMOVE).
  - "Reads are bulk: one C(SENTINEL MASTERS) per sentinel for all tenants of a call. Settings are compared per
    sentinel; a master set missing from some sentinels (partial state) is added to those, at the address the other
    sentinels see."
  - A master set that the sentinels see at another address than O(master_host):O(master_port) is left alone when
    the requested master is one of its known replicas (a failover happened); RV(master_address) then shows where
    the master is now. Only when the address is neither the requested master nor one of its replicas is the
    master set registered again at the requested address.
  - Sentinel never returns C(auth-pass), so it cannot be compared; see O(update_password) for how it converges.
  - The master set name is C(harbor-<tenant>) unless O(master_set) is given.
  - O(state=absent) only stops the monitoring; the tenant's Redis instances and their data are not touched.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.redis
  - harborfleet.fleet.batch
  - harborfleet.fleet.attributes
options:
  tenant:
    description:
      - The tenant id (single form). Lowercase letters, digits and single hyphens, starting with a letter, at most
        40 characters.
      - Mutually exclusive with O(tenants).
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
      master_set:
        description: See the top-level O(master_set).
        type: str
      master_host:
        description: See the top-level O(master_host).
        type: str
      master_port:
        description: See the top-level O(master_port).
        type: int
      password:
        description: See the top-level O(password).
        type: str
      update_password:
        description: See the top-level O(update_password).
        type: str
        choices: [verify, always, on_create]
      quorum:
        description: See the top-level O(quorum).
        type: int
      down_after_milliseconds:
        description: See the top-level O(down_after_milliseconds).
        type: int
      failover_timeout:
        description: See the top-level O(failover_timeout).
        type: int
      parallel_syncs:
        description: See the top-level O(parallel_syncs).
        type: int
  state:
    description: Whether the master set should be monitored by the group.
    type: str
    choices: [present, absent]
    default: present
  sentinel_group:
    description: Name of the sentinel group, used in messages (a fleet places each tenant on one group).
    type: str
    default: default
  capacity:
    description:
      - How many master sets the group may monitor. Registering new master sets beyond it fails before anything
        changes; converging or removing existing ones is always allowed. V(0) for no limit.
      - Every change makes each sentinel rewrite and fsync its whole configuration, so a group slows down as it
        grows; the default comes from measurements (see the collection's C(docs/redis-sizing.md)).
    type: int
    default: 150
  master_set:
    description:
      - Name of the master set (Harbor's C(sentinelMasterSet)). Defaults to C(harbor-<tenant>).
      - Letters, digits, C(.), C(_) and C(-), at most 100 characters.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  master_host:
    description:
      - IP address of the tenant's initial master, as the sentinels reach it (Sentinel resolves host names only with
        C(resolve-hostnames yes)). Required with O(state=present).
    type: str
  master_port:
    description:
      - Port of the tenant's initial master. Required with O(state=present).
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: int
  password:
    description:
      - The tenant's Redis password (the instances' C(requirepass) and C(masterauth)), which becomes the master
        set's C(auth-pass). Required with O(state=present).
      - Letters and digits only; the Harbor Operator breaks on URL-special characters.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  update_password:
    description:
      - How C(auth-pass), which Sentinel never returns, is converged.
      - V(verify) sets it whenever the master set is registered on a sentinel; on sentinels already monitoring it,
        only where the sentinel's link to the master is unhealthy (flags C(s_down) or C(o_down), or no valid PING
        reply for 3 seconds) AND the password opens the master. A healthy link proves the sentinel's C(auth-pass)
        opens the master. When the master cannot be reached from where the module runs, nothing is changed and
        RV(password) is V(unverified).
      - V(always) sets it on every sentinel on every run (always reports a change).
      - V(on_create) only sets it when registering the master set on a sentinel.
      - Whenever it is about to be set, the password is first tried against the master (C(AUTH) + C(PING)); a
        password the master refuses fails the tenant before anything changes, since it would break the
        sentinels' monitoring. A master that cannot be reached is not an error.
    type: str
    choices: [verify, always, on_create]
    default: verify
  quorum:
    description:
      - Sentinels that must agree the master is down before a failover. Defaults to a majority of O(sentinels).
      - Between 1 and the number of sentinels.
    type: int
  down_after_milliseconds:
    description: How long the master may not reply before a sentinel considers it down.
    type: int
    default: 30000
  failover_timeout:
    description: Sentinel's C(failover-timeout) in milliseconds.
    type: int
    default: 180000
  parallel_syncs:
    description: Replicas resynchronised with a new master at the same time after a failover.
    type: int
    default: 1
notes:
  - A sentinel that cannot be reached fails the run for every tenant (the message names it and says whether a
    majority is still reachable) after the reachable sentinels were converged; rerun when it is back.
  - Sentinels find each other through the master's hello channel, a few seconds after registration.
seealso:
  - name: Redis Sentinel documentation
    description: Sentinel's commands and configuration.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
"""

EXAMPLES = r"""
- name: One tenant's master set on a group of three sentinels
  harborfleet.fleet.sentinel_master:
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    sentinel_password: "{{ vault_sentinel_password }}"
    tenant: acme
    master_host: 10.0.1.21
    master_port: 7001
    password: "{{ acme_redis_password }}"

- name: A batch of tenants on one group (top-level values are defaults for the items)
  harborfleet.fleet.sentinel_master:
    sentinels: "{{ groups['sentinel'] | map('extract', hostvars, 'sentinel_address') | list }}"
    sentinel_password: "{{ vault_sentinel_password }}"
    sentinel_group: eu-1
    master_host: 10.0.1.21
    down_after_milliseconds: 5000
    tenants:
      - tenant: acme
        master_port: 7001
        password: "{{ acme_redis_password }}"
      - tenant: globex
        master_host: 10.0.1.22
        master_port: 7002
        password: "{{ globex_redis_password }}"
        quorum: 3

- name: Stop monitoring a removed tenant's master set
  harborfleet.fleet.sentinel_master:
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    sentinel_password: "{{ vault_sentinel_password }}"
    tenant: acme
    state: absent
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
  sample: acme
master_set:
  description: The master set name.
  returned: single form
  type: str
  sample: harbor-acme
master_address:
  description: Where the master is as the sentinels see it (C(host:port)); after a failover, not the requested one.
  returned: single form, state=present
  type: str
  sample: 10.0.1.22:7001
failed_over:
  description: Whether RV(master_address) differs from the requested master (a failover happened).
  returned: single form, state=present
  type: bool
password:
  description:
    - V(set) when C(auth-pass) was (or, in check mode, would be) set on some sentinel, V(unchanged), or
      V(unverified) when it had to be checked but the master could not be reached. Never the value.
  returned: single form, state=present
  type: str
  sample: unchanged
sentinels:
  description:
    - What happened on each sentinel, by C(host:port) - V(ok), V(added), V(updated), V(re-registered),
      V(removed), V(absent) or V(unreachable).
  returned: single form
  type: dict
  sample: {"10.0.0.11:26379": ok, "10.0.0.12:26379": added, "10.0.0.13:26379": ok}
actions:
  description: What changed (or would change in check mode), in order.
  returned: single form
  type: list
  elements: str
  sample: ["monitor harbor-acme at 10.0.1.21:7001 on 10.0.0.12:26379"]
calls:
  description: The Sentinel commands sent (or that would be in check mode); C(auth-pass) appears as C(********).
  returned: single form
  type: list
  elements: str
  sample: ["10.0.0.12:26379: SENTINEL SET harbor-acme auth-pass ******** down-after-milliseconds 30000"]
results:
  description: One entry per tenant, in order, with the single-form fields plus C(changed), C(failed), C(msg).
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
  sample: {total: 50, changed: 2, failed: 0, skipped: 0}
"""

from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetModule
from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis as rd

TENANT_SPEC = dict(
    master_set=dict(type="str"),
    master_host=dict(type="str"),
    master_port=dict(type="int"),
    password=dict(type="str", no_log=True),
    update_password=dict(type="str", default="verify", choices=["verify", "always", "on_create"], no_log=False),
    quorum=dict(type="int"),
    down_after_milliseconds=dict(type="int", default=30000),
    failover_timeout=dict(type="int", default=180000),
    parallel_syncs=dict(type="int", default=1),
)

ARGUMENT_SPEC = dict(
    rd.CONNECTION_SPEC,
    **rd.GROUP_SPEC,
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


def main():
    fm = FleetModule(ARGUMENT_SPEC, TENANT_SPEC, per_tenant_only=("master_set", "master_port", "password"),
                     libraries={"redis": (rd.redis, rd.REDIS_IMPORT_ERROR)})
    params = fm.params
    backend = fm.guard(rd.SentinelBackend, params, check_mode=fm.check_mode, warn=fm.module.warn)
    specs = fm.guard(lambda: [rd.MasterSetSpec(item, params["state"], len(backend.sentinels))
                              for item in fm.tenant_params()])
    try:
        fm.converge(backend, specs, finalize=backend.finalize)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
