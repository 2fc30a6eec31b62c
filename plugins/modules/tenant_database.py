#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_database
short_description: A Harbor tenant's PostgreSQL databases and login role
version_added: 0.1.0
description:
  - Creates or converges, on a shared PostgreSQL server, the databases the Harbor Operator expects for a tenant
    (C(<prefix>core), plus C(<prefix>notaryserver) and C(<prefix>notarysigner) with O(notary)) and the login role
    that owns them.
  - The role is C(LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS). C(CONNECT) and
    C(TEMPORARY) are revoked from C(PUBLIC) on every database, so no other tenant's role can connect to them.
  - Passwords are sent as SCRAM-SHA-256 verifiers computed by the module, never as plaintext.
  - Names come from the tenant id (prefix C(<id>_) with C(-) as C(_), role C(harbor_<id>)) unless O(prefix) or
    O(role) are given.
  - With O(state=absent) the databases are dropped, then the role, only when O(allow_drop=true); with
    O(backup_dir) each database is first written with C(pg_dump --format=custom) and nothing is dropped if a dump
    fails.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.postgres
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
      prefix:
        description: See the top-level O(prefix).
        type: str
      role:
        description: See the top-level O(role).
        type: str
      password:
        description: See the top-level O(password).
        type: str
      update_password:
        description: See the top-level O(update_password).
        type: str
        choices: [always, on_create]
      notary:
        description: See the top-level O(notary).
        type: bool
      role_connection_limit:
        description: See the top-level O(role_connection_limit).
        type: int
      database_connection_limit:
        description: See the top-level O(database_connection_limit).
        type: int
      valid_until:
        description: See the top-level O(valid_until).
        type: str
      encoding:
        description: See the top-level O(encoding).
        type: str
      lc_collate:
        description: See the top-level O(lc_collate).
        type: str
      lc_ctype:
        description: See the top-level O(lc_ctype).
        type: str
      template:
        description: See the top-level O(template).
        type: str
      strategy:
        description: See the top-level O(strategy).
        type: str
        choices: [wal_log, file_copy]
      comment:
        description: See the top-level O(comment).
        type: str
  state:
    description: Whether the tenant's databases and role should exist.
    type: str
    choices: [present, absent]
    default: present
  prefix:
    description:
      - Database name prefix, joined to C(core) with no separator. Defaults to the tenant id with C(-) as C(_)
        followed by C(_).
      - Lowercase letters, digits and C(_); short enough for C(<prefix>notarysigner) to fit in 63 bytes.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  role:
    description:
      - Login role owning the databases. Defaults to C(harbor_<id>) with C(-) as C(_).
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  password:
    description:
      - Password of the login role. Required when the role is created.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  update_password:
    description:
      - V(always) sets the password when it differs from the stored one; V(on_create) only sets it on creation.
      - When unset, V(always) is used if O(login_user) can read C(pg_authid) (so a change can be detected), and
        V(on_create) otherwise. V(always) without that privilege sets the password on every run.
    type: str
    choices: [always, on_create]
  notary:
    description: Also create the notary databases C(<prefix>notaryserver) and C(<prefix>notarysigner).
    type: bool
    default: false
  role_connection_limit:
    description: C(CONNECTION LIMIT) of the role; V(-1) for none.
    type: int
    default: -1
  database_connection_limit:
    description: C(CONNECTION LIMIT) of each database; V(-1) for none.
    type: int
    default: -1
  valid_until:
    description: C(VALID UNTIL) of the role's password, any timestamp PostgreSQL accepts, or V(infinity).
    type: str
  encoding:
    description: Encoding of new databases. An existing database with another encoding is an error.
    type: str
    default: UTF8
  lc_collate:
    description: C(LC_COLLATE) of new databases (server default when unset). Compared on existing databases.
    type: str
  lc_ctype:
    description: C(LC_CTYPE) of new databases (server default when unset). Compared on existing databases.
    type: str
  template:
    description: Template of new databases.
    type: str
    default: template0
  strategy:
    description: C(STRATEGY) of C(CREATE DATABASE) (PostgreSQL 15 and later); the server's default when unset.
    type: str
    choices: [wal_log, file_copy]
  comment:
    description: Comment on the role and the databases. Defaults to C(harborfleet tenant <id>).
    type: str
  allow_drop:
    description: Required for O(state=absent) to drop anything. Without it an existing tenant is an error.
    type: bool
    default: false
  backup_dir:
    description:
      - With O(state=absent), write a custom-format C(pg_dump) of each database here before dropping anything,
        as M(harborfleet.fleet.tenant_backup) does (files 0600 from the moment they exist, directories 0700,
        each dump checked with C(pg_restore --list) before it counts).
      - A failed or unverifiable dump fails the tenant and drops nothing.
    type: path
  backup_file:
    description:
      - File name template for backups, relative to O(backup_dir); C({tenant}), C({database}) and C({timestamp})
        are replaced. Every dump of one module call carries the same timestamp.
    type: str
    default: "{tenant}/{database}-{timestamp}.dump"
  pg_dump_path:
    description: The C(pg_dump) executable; its major version must be at least the server's.
    type: path
    default: pg_dump
  pg_restore_path:
    description: The C(pg_restore) executable that verifies each dump.
    type: path
    default: pg_restore
"""

EXAMPLES = r"""
- name: One tenant
  harborfleet.fleet.tenant_database:
    login_host: db1.internal
    login_user: harborfleet
    login_password: "{{ vault_pg_admin_password }}"
    tenant: acme
    password: "{{ acme_db_password }}"
    role_connection_limit: 50

- name: A batch of tenants over one connection pool (top-level values are defaults for the items)
  harborfleet.fleet.tenant_database:
    login_host: db1.internal
    login_user: harborfleet
    login_password: "{{ vault_pg_admin_password }}"
    database_connection_limit: 100
    concurrency: 8
    tenants:
      - tenant: acme
        password: "{{ acme_db_password }}"
      - tenant: globex
        password: "{{ globex_db_password }}"
        notary: true
        database_connection_limit: 200

- name: Remove a tenant, keeping a dump of each database
  harborfleet.fleet.tenant_database:
    login_host: db1.internal
    login_password: "{{ vault_pg_admin_password }}"
    tenant: acme
    state: absent
    allow_drop: true
    backup_dir: /var/backups/harbor
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
  sample: acme
role:
  description: The tenant's login role.
  returned: single form
  type: str
  sample: harbor_acme
databases:
  description: The tenant's databases.
  returned: single form
  type: list
  elements: str
  sample: [acme_core]
password:
  description: What happened to the password, V(set) (role created), V(changed) or V(unchanged); never the value.
  returned: single form, state=present
  type: str
  sample: unchanged
actions:
  description: What changed (or would change in check mode), in order.
  returned: single form
  type: list
  elements: str
  sample: ["create role harbor_acme", "create database acme_core"]
queries:
  description: The SQL executed (or that would be in check mode); passwords appear as C('********').
  returned: single form
  type: list
  elements: str
  sample: ["CREATE ROLE \"harbor_acme\" WITH LOGIN NOSUPERUSER ... PASSWORD '********'"]
backups:
  description: Paths of the dumps written before dropping.
  returned: single form, state=absent with backup_dir
  type: list
  elements: str
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
from ansible_collections.harborfleet.fleet.plugins.module_utils import _postgres as pg
from ansible_collections.harborfleet.fleet.plugins.module_utils import _tenant_database as tdb

TENANT_SPEC = dict(
    prefix=dict(type="str"),
    role=dict(type="str"),
    password=dict(type="str", no_log=True),
    update_password=dict(type="str", choices=["always", "on_create"], no_log=False),
    notary=dict(type="bool", default=False),
    role_connection_limit=dict(type="int", default=-1),
    database_connection_limit=dict(type="int", default=-1),
    valid_until=dict(type="str"),
    encoding=dict(type="str", default="UTF8"),
    lc_collate=dict(type="str"),
    lc_ctype=dict(type="str"),
    template=dict(type="str", default="template0"),
    strategy=dict(type="str", choices=["wal_log", "file_copy"]),
    comment=dict(type="str"),
)

ARGUMENT_SPEC = dict(
    pg.CONNECTION_SPEC,
    state=dict(type="str", default="present", choices=["present", "absent"]),
    allow_drop=dict(type="bool", default=False),
    backup_dir=dict(type="path"),
    backup_file=dict(type="str", default=tdb.BACKUP_FILE),
    pg_dump_path=dict(type="path", default="pg_dump"),
    pg_restore_path=dict(type="path", default="pg_restore"),
)


def main():
    fm = FleetModule(ARGUMENT_SPEC, TENANT_SPEC, per_tenant_only=("prefix", "role", "password"),
                     libraries={"psycopg2": (pg.psycopg2, pg.PSYCOPG2_IMPORT_ERROR)})
    params = fm.params
    shared = {name: params[name] for name in ("allow_drop", "backup_dir", "backup_file")}
    specs = fm.guard(lambda: [tdb.TenantDatabaseSpec(dict(item, **shared), params["state"])
                              for item in fm.tenant_params()])
    backend = tdb.DatabaseBackend(params, check_mode=fm.check_mode, pg_dump=params["pg_dump_path"],
                                  pg_restore=params["pg_restore_path"], register_secret=fm.register_secret)
    try:
        fm.converge(backend, specs)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
