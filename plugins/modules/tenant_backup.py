#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_backup
short_description: Verified custom-format dumps of Harbor tenants' PostgreSQL databases
version_added: 0.2.0
description:
  - Writes a C(pg_dump --format=custom) of each of a tenant's databases that exists (C(<prefix>core), plus the
    notary databases with O(notary)) under O(backup_dir), one call per PostgreSQL server for a whole batch of
    tenants, O(concurrency) dumps at a time.
  - Each file is created with mode C(0600) by the module before C(pg_dump) writes into it, under a C(.partial)
    name, and only counts once it is non-empty and C(pg_restore --list) reads it; then it is renamed into place.
    The directories from O(backup_dir) down are C(0700), existing ones included.
  - Every dump of a call carries the same O(timestamp), so a playbook that passes one value to every call names
    all the files of a run alike.
  - The admin password reaches C(pg_dump) through its environment inside the module, never on a command line or
    in any output.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.postgres
  - harborfleet.fleet.batch
attributes:
  check_mode:
    support: full
    description: Reads which databases exist and reports the files a real run would write; writes nothing.
  diff_mode:
    support: full
    description: The diff lists the files a run writes.
  platform:
    support: full
    platforms: posix
    description: Runs where the PostgreSQL server is reachable and the backup directory is, usually the controller.
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
      prefix:
        description: See the top-level O(prefix).
        type: str
      notary:
        description: See the top-level O(notary).
        type: bool
  prefix:
    description:
      - Database name prefix; the tenant model's (the id with C(-) as C(_), then C(_)) when unset.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  notary:
    description: Also back up the notary databases.
    type: bool
    default: false
  backup_dir:
    description: Where the dumps go (created C(0700) when missing, tightened to C(0700) when it exists).
    type: path
    required: true
  backup_file:
    description:
      - File name template relative to O(backup_dir); C({tenant}), C({database}) and C({timestamp}) are replaced.
    type: str
    default: "{tenant}/{database}-{timestamp}.dump"
  timestamp:
    description:
      - The C({timestamp}) of every file of this call. Pass one value to every call of a run; the module's start
        time (UTC, C(YYYYMMDDTHHMMSSZ)) when unset.
    type: str
  pg_dump_path:
    description: The C(pg_dump) executable; its major version must be at least the server's.
    type: path
    default: pg_dump
  pg_restore_path:
    description: The C(pg_restore) executable that verifies each dump.
    type: path
    default: pg_restore
notes:
  - Backups are an action, not a state; a run that writes files reports C(changed). A tenant none of whose
    databases exist writes nothing, reports RV(missing) and is not an error.
"""

EXAMPLES = r"""
- name: Back up every tenant of one PostgreSQL server, four dumps at a time
  harborfleet.fleet.tenant_backup:
    login_host: db1.internal
    login_user: harborfleet
    login_password: "{{ vault_pg_admin_password }}"
    backup_dir: /srv/backups/harbor
    timestamp: "{{ backup_stamp }}"
    concurrency: 4
    tenants:
      - tenant: acme
      - tenant: globex
        notary: true
  register: backups
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
backups:
  description: The verified dumps written, one per database.
  returned: single form, not in check mode
  type: list
  elements: dict
  contains:
    database:
      description: The database.
      type: str
    path:
      description: The dump file.
      type: str
    size:
      description: Its size in bytes.
      type: int
    entries:
      description: How many table-of-contents entries C(pg_restore --list) read from it.
      type: int
missing:
  description: The tenant's databases that do not exist (nothing to back up).
  returned: single form
  type: list
  elements: str
actions:
  description: The dumps made (or that would be, in check mode).
  returned: single form
  type: list
  elements: str
calls:
  description: The commands run, without credentials.
  returned: single form
  type: list
  elements: str
results:
  description: One entry per tenant with the single-form fields plus C(changed), C(failed), C(msg).
  returned: list form
  type: list
  elements: dict
failed_tenants:
  description: Ids of the tenants whose backup failed.
  returned: list form
  type: list
  elements: str
summary:
  description: Counts of tenants C(total), C(changed), C(failed), C(skipped).
  returned: list form
  type: dict
"""

from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetModule
from ansible_collections.harborfleet.fleet.plugins.module_utils import _postgres as pg
from ansible_collections.harborfleet.fleet.plugins.module_utils import _postgres_backup as backup

TENANT_SPEC = dict(
    prefix=dict(type="str"),
    notary=dict(type="bool", default=False),
)

ARGUMENT_SPEC = dict(
    pg.CONNECTION_SPEC,
    backup_dir=dict(type="path", required=True),
    backup_file=dict(type="str", default=backup.BACKUP_FILE),
    timestamp=dict(type="str"),
    pg_dump_path=dict(type="path", default="pg_dump"),
    pg_restore_path=dict(type="path", default="pg_restore"),
)


def main():
    fm = FleetModule(ARGUMENT_SPEC, TENANT_SPEC, per_tenant_only=("prefix",),
                     libraries={"psycopg2": (pg.psycopg2, pg.PSYCOPG2_IMPORT_ERROR)})
    params = fm.params

    def prepare():
        template = backup.check_backup_file(params["backup_file"])
        stamp = backup.check_timestamp(params["timestamp"] or backup.backup_timestamp())
        return [backup.BackupSpec(item, params["backup_dir"], template, stamp) for item in fm.tenant_params()]

    specs = fm.guard(prepare)
    fm.converge(backup.BackupBackend(params, params["backup_dir"], params["pg_dump_path"], params["pg_restore_path"]),
                specs)


if __name__ == "__main__":
    main()
