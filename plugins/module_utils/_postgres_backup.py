# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant backups: verified custom-format dumps, private from the first byte, one timestamp per run.

Used by tenant_backup and by tenant_database before a drop.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, TenantInputError
from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres import connect, connection_params
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import Tenant, validate_db_prefix

BACKUP_FILE = "{tenant}/{database}-{timestamp}.dump"
TIMESTAMP_RE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")


def backup_timestamp():
    """One timestamp for a whole run (pass it on, never compute it twice)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_backup_file(template):
    try:
        template.format(tenant="t", database="d", timestamp="0")
    except (KeyError, IndexError, ValueError) as exc:
        raise TenantInputError("backup_file", f"bad template {template!r}: only {{tenant}}, {{database}} and "
                                              f"{{timestamp}} may be used ({exc})") from None
    if os.path.isabs(template) or ".." in template.split("/"):
        raise TenantInputError("backup_file", f"{template!r} must stay inside backup_dir (relative, no '..')")
    return template


def check_timestamp(value):
    """A timestamp becomes part of file names: letters, digits, '-', '_', '.', ':' only."""
    if not isinstance(value, str) or not TIMESTAMP_RE.fullmatch(value):
        raise TenantInputError("timestamp", f"{value!r} must be 1-40 letters, digits, '-', '_', '.' or ':'")
    return value


def _private_dirs(root, path):
    """Create the directories from ``root`` down to ``path``'s parent as 0700, tightening existing ones."""
    directory = os.path.dirname(path)
    chain = [root]
    relative = os.path.relpath(directory, root)
    if relative != ".":
        for part in relative.split(os.sep):
            chain.append(os.path.join(chain[-1], part))
    for folder in chain:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)


def dump_database(params, database, path, root, pg_dump="pg_dump", pg_restore="pg_restore"):
    """``pg_dump --format=custom`` of one database to ``path`` (under ``root``), verified before it counts.

    The file is created 0600 by this process before pg_dump writes a byte into it (so it is never readable by
    others), filled under a ``.partial`` name, checked to be non-empty and readable by ``pg_restore --list``, and
    only then renamed into place. The admin password goes to pg_dump in its environment, never on a command line.
    Returns {database, path, size, entries}.
    """
    conn = connection_params(params)
    env = dict(os.environ, PGHOST=conn["host"], PGPORT=str(conn["port"]), PGUSER=conn["user"],
               PGDATABASE=database, PGSSLMODE=conn["sslmode"], PGCONNECT_TIMEOUT=str(conn["connect_timeout"]))
    env.pop("PGPASSWORD", None)
    if conn.get("password"):
        env["PGPASSWORD"] = conn["password"]
    if conn.get("sslrootcert"):
        env["PGSSLROOTCERT"] = conn["sslrootcert"]
    _private_dirs(root, path)
    partial = path + ".partial"
    if os.path.lexists(partial):
        os.unlink(partial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                result = subprocess.run([pg_dump, "--format=custom", "--no-password"], env=env, stdout=handle,
                                        stderr=subprocess.PIPE, check=False)
        except OSError as exc:
            raise FleetError(f"backup of {database} failed: cannot run {pg_dump}: {exc}") from None
        if result.returncode != 0:
            raise FleetError(f"backup of {database} failed: {result.stderr.decode(errors='replace').strip()}")
        size = os.path.getsize(partial)
        if size == 0:
            raise FleetError(f"backup of {database} failed: {pg_dump} wrote an empty file")
        try:
            listing = subprocess.run([pg_restore, "--list", partial], capture_output=True, check=False)
        except OSError as exc:
            raise FleetError(f"backup of {database} cannot be verified: cannot run {pg_restore}: {exc}") from None
        if listing.returncode != 0:
            raise FleetError(f"backup of {database} failed verification (pg_restore --list): "
                             f"{listing.stderr.decode(errors='replace').strip()}")
        entries = sum(1 for line in listing.stdout.decode(errors="replace").splitlines()
                      if line and not line.startswith(";"))
        os.replace(partial, path)
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)
    return {"database": database, "path": path, "size": size, "entries": entries}


class BackupSpec:
    """One tenant's backup: its databases (by the tenant model, or its prefix) and where each dump goes."""

    def __init__(self, params, backup_dir, backup_file, timestamp):
        self.tenant = Tenant(params["tenant"])
        self.key = self.tenant.id
        self.prefix = validate_db_prefix(params.get("prefix") or self.tenant.db_prefix, "prefix")
        self.databases = self.tenant.databases(bool(params.get("notary")), self.prefix)
        self.paths = {name: os.path.join(backup_dir, backup_file.format(tenant=self.tenant.id, database=name,
                                                                        timestamp=timestamp))
                      for name in self.databases}


class BackupBackend:
    """read → plan → apply for tenant backups: one query for which databases exist, one dump per database."""

    record_key = "calls"

    def __init__(self, params, backup_dir, pg_dump="pg_dump", pg_restore="pg_restore"):
        self.params = params
        self.backup_dir = backup_dir
        self.pg_dump = pg_dump
        self.pg_restore = pg_restore

    def read(self, specs):
        conn = connect(self.params)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_catalog.pg_database WHERE datname = ANY(%s)",
                            ([name for spec in specs for name in spec.databases],))
                existing = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        return {spec.key: existing for spec in specs}

    def plan(self, spec, existing):
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result["backups"] = []
        plan.result["missing"] = [name for name in spec.databases if name not in existing]
        for name in spec.databases:
            if name not in existing:
                continue
            path = spec.paths[name]
            plan.after.setdefault("backups", []).append(path)

            def dump(_resource, name=name, path=path):
                plan.result["backups"].append(
                    dump_database(self.params, name, path, self.backup_dir, self.pg_dump, self.pg_restore))

            plan.add(f"back up {name} to {path}", dump, f"pg_dump --format=custom {name} > {path}")
        return plan
