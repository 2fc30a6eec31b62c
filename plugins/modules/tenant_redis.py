#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_redis
short_description: Harbor tenants' Redis instances on this host - files, daemons, health - in one call
version_added: 0.3.0
description:
  - Converges the Redis instance of each tenant on the host it runs on, for a whole batch of tenants in one call
    (the list form), so a Redis tier host costs one task whatever its number of tenants.
  - Each instance has a base configuration file with the collection's settings (and the password), written
    atomically with mode C(0640) from the first byte, and a live file that includes it, seeded once and owned by
    Redis afterwards (a failover records C(replicaof) there). When the settings change, the copies of the base
    file's directives Redis wrote into the live file are dropped and the instance restarts; replication is never
    touched.
  - Daemons are daemonized processes with pid files (O(service_manager=process)) or instances of the systemd
    template unit C(harborfleet-redis@.service) (O(service_manager=systemd), installed by the
    P(harborfleet.fleet.redis_sentinel#role) role). A started or restarted instance must listen within
    O(wait_timeout) seconds, or its tenant fails naming the log file (a taken port shows there).
  - V(absent) stops the instance and deletes its files and data directory.
  - Every tenant is checked before anything changes (ids, ports, passwords, settings); two tenants on one port are
    refused.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.batch
attributes:
  check_mode:
    support: full
    description: Reads the files and the daemons and reports what a real run would do; changes nothing.
  diff_mode:
    support: full
    description: Per tenant, whether it exists, runs, and whether its settings are rewritten (never their values).
  platform:
    support: full
    platforms: posix
    description: Runs on the host of the instances (a Linux host with C(/proc)).
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
      state:
        description: See the top-level O(state).
        type: str
        choices: [present, absent]
      port:
        description: See the top-level O(port).
        type: int
      password:
        description: See the top-level O(password).
        type: str
      replicaof:
        description: See the top-level O(replicaof).
        type: str
      maxmemory:
        description: See the top-level O(maxmemory).
        type: str
      maxmemory_policy:
        description: See the top-level O(maxmemory_policy).
        type: str
  state:
    description: Whether the instance should exist and run.
    type: str
    choices: [present, absent]
    default: present
  port:
    description: The instance's port on this host. Per tenant only.
    type: int
  password:
    description:
      - The tenant's Redis password (C(requirepass) and C(masterauth)); letters and digits only. Per tenant only.
    type: str
  replicaof:
    description:
      - C(host port) of the tenant's master when this host holds a replica, seeded into the live file once (Redis
        and Sentinel manage replication afterwards); unset or empty on the master's host. Per tenant only.
    type: str
  maxmemory:
    description: The instance's C(maxmemory).
    type: str
    default: 256mb
  maxmemory_policy:
    description: The instance's C(maxmemory-policy).
    type: str
    default: volatile-lru
  service_manager:
    description: How the daemons run.
    type: str
    choices: [process, systemd]
    default: process
  bind:
    description: The address the instances bind to.
    type: str
    default: 127.0.0.1
  address:
    description: The address the health check connects to; O(bind) when unset.
    type: str
  config_dir:
    description: Where the configuration files go (created C(0750)).
    type: path
    required: true
  data_dir:
    description: Where each instance's data directory goes (created C(0750)).
    type: path
    required: true
  run_dir:
    description: Where the pid files go (created C(0750)).
    type: path
    required: true
  log_dir:
    description: Where the log files go (created C(0750)).
    type: path
    required: true
  owner:
    description: Owner of the files and directories; unchanged when unset.
    type: str
  owner_group:
    description: Group of the files and directories; unchanged when unset.
    type: str
  server_binary:
    description: The C(redis-server) executable (O(service_manager=process)).
    type: path
    default: /usr/bin/redis-server
  save:
    description: The C(save) directive; empty disables snapshots.
    type: str
    default: "3600 1 300 100 60 10000"
  appendonly:
    description: The C(appendonly) directive.
    type: bool
    default: false
  hz:
    description: The C(hz) directive.
    type: int
    default: 10
  dynamic_hz:
    description: The C(dynamic-hz) directive.
    type: bool
    default: true
  repl_diskless_sync_delay:
    description: The C(repl-diskless-sync-delay) directive.
    type: int
    default: 5
  extra_config:
    description: More directives for every instance (name to value); the ones the module sets are refused.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds a started instance has to answer, and a stopped one to exit before C(SIGKILL).
    type: int
    default: 30
  restart:
    description: Restart every running instance of the call even when its settings did not change (for example after
      the systemd template unit changed).
    type: bool
    default: false
  sentinel:
    description:
      - This host's Sentinel, converged like an instance in the same call (base file, live file Sentinel owns,
        start, restart when its settings change or O(restart) is set, health with its password). Its entry in
        RV(results) has C(tenant) V(sentinel/<group>). Master sets are registered with
        M(harborfleet.fleet.sentinel_master), not here.
    type: dict
    suboptions:
      group:
        description: The sentinel group's name (files C(sentinel-<group>.*), unit C(harborfleet-sentinel@<group>)).
        type: str
        required: true
      port:
        description: The sentinel's port.
        type: int
        required: true
      password:
        description: The sentinel's C(requirepass); letters and digits only.
        type: str
        required: true
      binary:
        description: The C(redis-sentinel) executable (O(service_manager=process)).
        type: path
        default: /usr/bin/redis-sentinel
      resolve_hostnames:
        description: C(sentinel resolve-hostnames).
        type: bool
        default: false
notes:
  - The module returns no configuration content; passwords never leave the host's files.
"""

EXAMPLES = r"""
- name: Every tenant instance of this Redis tier host, in one call
  harborfleet.fleet.tenant_redis:
    config_dir: /etc/redis/harborfleet
    data_dir: /var/lib/redis/harborfleet
    run_dir: /run/redis-harborfleet
    log_dir: /var/log/redis/harborfleet
    owner: redis
    owner_group: redis
    service_manager: systemd
    tenants:
      - {tenant: acme, port: 7000, password: "{{ passwords.acme }}"}
      - {tenant: globex, port: 7001, password: "{{ passwords.globex }}", replicaof: "10.0.1.11 7001"}
      - {tenant: initech, state: absent}
  no_log: true

- name: The host's sentinel of group eu-1 (before its master sets are registered)
  harborfleet.fleet.tenant_redis:
    config_dir: /etc/redis/harborfleet
    data_dir: /var/lib/redis/harborfleet
    run_dir: /run/redis-harborfleet
    log_dir: /var/log/redis/harborfleet
    sentinel:
      group: eu-1
      port: 26379
      password: "{{ sentinel_password }}"
    tenants: []
  no_log: true
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
actions:
  description: What was done (or would be, in check mode), for example C(write <base file>), C(restart redis-acme).
  returned: single form
  type: list
  elements: str
settings_changed:
  description: Whether the instance's settings (base file) were rewritten; its password may have changed.
  returned: single form, present instances
  type: bool
results:
  description:
    - One entry per tenant with the single-form fields plus C(changed), C(failed), C(msg); the sentinel's entry
      (O(sentinel)) comes first, with C(tenant) V(sentinel/<group>).
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
from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis_instance as instance


def main():
    fm = FleetModule(instance.ARGUMENT_SPEC, instance.TENANT_SPEC, per_tenant_only=("port", "password", "replicaof"))
    params = fm.params

    def prepare():
        specs = instance.prepare(params, fm.tenant_params())
        backend = instance.InstanceBackend(params, fm.module.run_command)
        instance.ensure_directories(params, backend, fm.check_mode)
        return specs, backend

    specs, backend = fm.guard(prepare)
    fm.converge(backend, specs)


if __name__ == "__main__":
    main()
