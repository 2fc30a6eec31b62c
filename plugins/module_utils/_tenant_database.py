# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's PostgreSQL databases and login role: the desired state, one bulk read for a whole call, the plan.

Reads are bulk: one query returns the roles and databases of every tenant in a module call, so a no-op converge
of a thousand tenants costs a few round trips, not thousands. Every identifier is quoted with ``sql.Identifier``;
user values only ever travel as query parameters. Passwords are sent to the server as SCRAM verifiers, so the
plaintext never reaches the server's statement log; returned queries show ``'********'``.
"""

from __future__ import annotations

import os

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import REDACTED, FleetError, TenantInputError, describe_error
from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres import connect, endpoint, password_matches, scram_verifier, sql
from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres_backup import BACKUP_FILE, backup_timestamp, check_backup_file, dump_database
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import Tenant, validate_db_prefix, validate_pg_name

# --------------------------------------------------------------------------- desired state

# role attribute -> (SQL keyword, value every tenant role gets)
ROLE_FLAGS = {"login": ("LOGIN", True), "superuser": ("SUPERUSER", False), "createdb": ("CREATEDB", False),
              "createrole": ("CREATEROLE", False), "inherit": ("INHERIT", False),
              "replication": ("REPLICATION", False), "bypassrls": ("BYPASSRLS", False)}


class TenantDatabaseSpec:
    """What one tenant should have on the server, validated before any connection is made."""

    def __init__(self, params, state):
        self.tenant = Tenant(params["tenant"])
        self.key = self.tenant.id
        self.state = state
        self.prefix = validate_db_prefix(params.get("prefix") or self.tenant.db_prefix, "prefix")
        self.role = validate_pg_name(params.get("role") or self.tenant.db_role, "role")
        self.databases = self.tenant.databases(bool(params.get("notary")), self.prefix)
        for name in self.databases:
            validate_pg_name(name, "prefix")
        self.password = params.get("password")
        self.update_password = params.get("update_password")
        self.role_connection_limit = _int_option(params, "role_connection_limit")
        self.database_connection_limit = _int_option(params, "database_connection_limit")
        self.valid_until = params.get("valid_until")
        self.encoding = (params.get("encoding") or "UTF8").upper().replace("-", "")
        self.lc_collate = params.get("lc_collate")
        self.lc_ctype = params.get("lc_ctype")
        self.template = validate_pg_name(params.get("template") or "template0", "template")
        self.strategy = params.get("strategy")
        self.comment = params.get("comment") or f"harborfleet tenant {self.tenant.id}"
        self.allow_drop = bool(params.get("allow_drop"))
        self.backup_dir = params.get("backup_dir")
        self.backup_file = check_backup_file(params.get("backup_file") or BACKUP_FILE)
        if state == "present" and self.password is not None and not self.password:
            raise TenantInputError("password", "must not be empty")

    def desired_role(self):
        role = {name: flag[1] for name, flag in ROLE_FLAGS.items()}
        role.update(connection_limit=self.role_connection_limit, comment=self.comment)
        if self.valid_until is not None:
            role["valid_until"] = self.valid_until
        return role

    def desired_database(self):
        database = dict(owner=self.role, encoding=self.encoding, connection_limit=self.database_connection_limit,
                        comment=self.comment, public_connect=False, owner_connect=True)
        if self.lc_collate:
            database["lc_collate"] = self.lc_collate
        if self.lc_ctype:
            database["lc_ctype"] = self.lc_ctype
        return database


def _int_option(params, name):
    value = params.get(name)
    value = -1 if value is None else value
    if value < -1:
        raise TenantInputError(name, "must be -1 (no limit) or a positive number")
    return value


# --------------------------------------------------------------------------- bulk read

READ_ROLES = """
SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolinherit, r.rolreplication,
       r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, shobj_description(r.oid, 'pg_authid')
FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%s)
"""
READ_PASSWORDS = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = ANY(%s)"
READ_DATABASES = """
SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding),
       d.datcollate, d.datctype, d.datconnlimit, shobj_description(d.oid, 'pg_database'),
       EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
               WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')),
       EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
               WHERE a.grantee = d.datdba AND a.privilege_type = 'CONNECT')
FROM pg_catalog.pg_database d WHERE d.datname = ANY(%s)
"""
CAN_READ_PASSWORDS = "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
NORMALISE_TIMESTAMPS = "SELECT v, v::timestamptz::text FROM unnest(%s::text[]) AS v"


class ServerState:
    """What the server has for the tenants of one module call."""

    def __init__(self):
        self.roles = {}
        self.passwords = {}
        self.databases = {}
        self.passwords_readable = False
        self.timestamps = {}


# --------------------------------------------------------------------------- the backend

class DatabaseBackend:
    """read → plan → apply for tenant databases; one instance per module run."""

    record_key = "queries"

    def __init__(self, params, check_mode=False, pg_dump="pg_dump", register_secret=None, pg_restore="pg_restore"):
        self.params = params
        self.check_mode = check_mode
        self.pg_dump = pg_dump
        self.pg_restore = pg_restore
        self.timestamp = backup_timestamp()  # one per call: every dump of a run carries the same stamp
        self.register_secret = register_secret or (lambda value: None)
        self._conn = None

    # resources
    def connection(self):
        if self._conn is None:
            self._conn = connect(self.params)
        return self._conn

    def worker_resource(self):
        return lambda: connect(self.params)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def describe_error(self, exc):
        return describe_error(exc, endpoint(self.params))

    # read
    def read(self, specs):
        state = ServerState()
        roles = [spec.role for spec in specs]
        databases = [name for spec in specs for name in spec.databases]
        with self.connection().cursor() as cur:
            cur.execute(READ_ROLES, (roles,))
            for row in cur.fetchall():
                state.roles[row[0]] = dict(login=row[1], superuser=row[2], createdb=row[3], createrole=row[4],
                                           inherit=row[5], replication=row[6], bypassrls=row[7],
                                           connection_limit=row[8], valid_until=row[9], comment=row[10])
            cur.execute(CAN_READ_PASSWORDS)
            state.passwords_readable = bool(cur.fetchone()[0])
            if state.passwords_readable and any(spec.password for spec in specs):
                cur.execute(READ_PASSWORDS, (roles,))
                state.passwords = dict(cur.fetchall())
                for verifier in state.passwords.values():
                    self.register_secret(verifier)
            cur.execute(READ_DATABASES, (databases,))
            for row in cur.fetchall():
                state.databases[row[0]] = dict(owner=row[1], encoding=row[2], lc_collate=row[3], lc_ctype=row[4],
                                               connection_limit=row[5], comment=row[6], public_connect=row[7],
                                               owner_connect=row[8])
            wanted = sorted({spec.valid_until for spec in specs if spec.valid_until})
            if wanted:
                cur.execute(NORMALISE_TIMESTAMPS, (wanted,))
                state.timestamps = dict(cur.fetchall())
        return {spec.key: state for spec in specs}

    # plan
    def plan(self, spec, state):
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result.update(role=spec.role, databases=list(spec.databases))
        if spec.state == "absent":
            self._plan_absent(spec, state, plan)
        else:
            self._plan_present(spec, state, plan)
        return plan

    def _sql(self, plan, action, statement, params=(), secret_params=()):
        """Add one SQL change; ``secret_params`` are parameter indexes shown as '********' in the record."""
        shown = [REDACTED if index in secret_params else value for index, value in enumerate(params)]
        record = self.connection().cursor().mogrify(statement, shown or None).decode("utf-8")

        def execute(conn):
            with conn.cursor() as cur:
                cur.execute(statement, params or None)

        plan.add(action, execute, record)

    def _plan_present(self, spec, state, plan):
        role_q = sql.Identifier(spec.role)
        actual_role = state.roles.get(spec.role)
        desired_role = spec.desired_role()
        if spec.valid_until is not None:
            desired_role["valid_until"] = state.timestamps.get(spec.valid_until, spec.valid_until)
        password_state = "unchanged"
        if actual_role is None:
            if not spec.password:
                raise TenantInputError("password", f"is required to create role {spec.role!r}")
            flags = [_flag_sql(name, desired_role[name]) for name in ROLE_FLAGS]
            clauses = [sql.SQL(" ".join(flags)),
                       sql.SQL("CONNECTION LIMIT {}").format(sql.SQL(str(int(spec.role_connection_limit)))),
                       sql.SQL("PASSWORD %s")]
            params = [scram_verifier(spec.password)]
            if spec.valid_until is not None:
                clauses.append(sql.SQL("VALID UNTIL %s"))
                params.append(spec.valid_until)
            statement = sql.SQL("CREATE ROLE {} WITH ").format(role_q) + sql.SQL(" ").join(clauses)
            self._sql(plan, f"create role {spec.role}", statement, params, secret_params=(0,))
            self._sql(plan, f"comment on role {spec.role}",
                      sql.SQL("COMMENT ON ROLE {} IS %s").format(role_q), [spec.comment])
            password_state = "set"
        else:
            clauses = [sql.SQL(_flag_sql(name, desired_role[name]))
                       for name in ROLE_FLAGS if actual_role[name] != desired_role[name]]
            if actual_role["connection_limit"] != spec.role_connection_limit:
                clauses.append(sql.SQL("CONNECTION LIMIT {}").format(sql.SQL(str(int(spec.role_connection_limit)))))
            params = []
            if spec.valid_until is not None and actual_role["valid_until"] != desired_role["valid_until"]:
                clauses.append(sql.SQL("VALID UNTIL %s"))
                params.append(spec.valid_until)
            if clauses:
                self._sql(plan, f"alter role {spec.role}",
                          sql.SQL("ALTER ROLE {} WITH ").format(role_q) + sql.SQL(" ").join(clauses), params)
            if actual_role["comment"] != spec.comment:
                self._sql(plan, f"comment on role {spec.role}",
                          sql.SQL("COMMENT ON ROLE {} IS %s").format(role_q), [spec.comment])
            if spec.password and self._password_needs_update(spec, state):
                self._sql(plan, f"set password of role {spec.role}",
                          sql.SQL("ALTER ROLE {} WITH PASSWORD %s").format(role_q),
                          [scram_verifier(spec.password)], secret_params=(0,))
                password_state = "changed"
        plan.before["role"] = _role_view(actual_role)
        plan.after["role"] = dict(plan.before["role"] or {}, **_role_view(desired_role), password=password_state)
        if actual_role is not None:
            plan.before["role"]["password"] = "unchanged" if password_state == "unchanged" else "(previous)"

        plan.before["databases"], plan.after["databases"] = {}, {}
        desired_db = spec.desired_database()
        for name in spec.databases:
            actual_db = state.databases.get(name)
            plan.before["databases"][name] = actual_db
            plan.after["databases"][name] = dict(actual_db or {}, **desired_db)
            self._plan_database(spec, name, actual_db, desired_db, plan)
        plan.result["password"] = password_state

    def _password_needs_update(self, spec, state):
        mode = spec.update_password or ("always" if state.passwords_readable else "on_create")
        if mode == "on_create":
            return False
        if not state.passwords_readable:
            return True  # cannot compare: "always" means always
        return not password_matches(state.passwords.get(spec.role), spec.password, spec.role)

    def _plan_database(self, spec, name, actual, desired, plan):
        db_q, role_q = sql.Identifier(name), sql.Identifier(spec.role)
        if actual is None:
            options = [sql.SQL("OWNER {}").format(role_q), sql.SQL("ENCODING {}").format(sql.Literal(spec.encoding)),
                       sql.SQL("TEMPLATE {}").format(sql.Identifier(spec.template)),
                       sql.SQL("CONNECTION LIMIT {}").format(sql.SQL(str(int(spec.database_connection_limit))))]
            if spec.lc_collate:
                options.append(sql.SQL("LC_COLLATE {}").format(sql.Literal(spec.lc_collate)))
            if spec.lc_ctype:
                options.append(sql.SQL("LC_CTYPE {}").format(sql.Literal(spec.lc_ctype)))
            if spec.strategy:
                options.append(sql.SQL("STRATEGY {}").format(sql.SQL(spec.strategy.upper())))
            self._sql(plan, f"create database {name}",
                      sql.SQL("CREATE DATABASE {} ").format(db_q) + sql.SQL(" ").join(options))
            self._sql(plan, f"comment on database {name}",
                      sql.SQL("COMMENT ON DATABASE {} IS %s").format(db_q), [spec.comment])
            self._sql(plan, f"revoke connect on {name} from PUBLIC",
                      sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db_q))
            self._schema_owner(plan, name, spec.role)
            return
        for option in ("encoding", "lc_collate", "lc_ctype"):
            if option in desired and actual[option] != desired[option]:
                raise FleetError(f"database {name} exists with {option} {actual[option]!r}, not "
                                 f"{desired[option]!r}; {option} cannot be changed after creation")
        if actual["owner"] != spec.role:
            self._sql(plan, f"change owner of {name} to {spec.role}",
                      sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db_q, role_q))
        if actual["connection_limit"] != spec.database_connection_limit:
            self._sql(plan, f"set connection limit of {name}",
                      sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                          db_q, sql.SQL(str(int(spec.database_connection_limit)))))
        if actual["comment"] != spec.comment:
            self._sql(plan, f"comment on database {name}",
                      sql.SQL("COMMENT ON DATABASE {} IS %s").format(db_q), [spec.comment])
        if actual["public_connect"]:
            self._sql(plan, f"revoke connect on {name} from PUBLIC",
                      sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db_q))
        if not actual["owner_connect"] or actual["owner"] != spec.role:
            self._sql(plan, f"grant connect on {name} to {spec.role}",
                      sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db_q, role_q))

    def _schema_owner(self, plan, database, role):
        """A NOINHERIT role does not get the rights of PostgreSQL 15's pg_database_owner (owner of schema public in
        new databases), so Harbor's migrations could not create tables: make the role own schema public."""
        statement = sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role))
        record = self.connection().cursor().mogrify(statement).decode("utf-8") + f" -- in database {database}"

        def execute(_conn):
            conn = connect(dict(self.params, login_db=database))
            try:
                with conn.cursor() as cur:
                    cur.execute(statement)
            finally:
                conn.close()

        plan.add(f"make {role} owner of schema public in {database}", execute, record)

    def _plan_absent(self, spec, state, plan):
        existing = [name for name in spec.databases if name in state.databases]
        role_exists = spec.role in state.roles
        plan.before = {"role": _role_view(state.roles.get(spec.role)),
                       "databases": {name: state.databases[name] for name in existing}}
        plan.after = {"role": None, "databases": {}}
        if not existing and not role_exists:
            return
        if not spec.allow_drop:
            raise FleetError(f"refusing to drop {', '.join(existing + ([spec.role] if role_exists else []))} "
                             "of tenant " + spec.tenant.id + ": set allow_drop: true to drop a tenant's data")
        backups = []
        if spec.backup_dir:
            for name in existing:
                path = os.path.join(spec.backup_dir, spec.backup_file.format(
                    tenant=spec.tenant.id, database=name, timestamp=self.timestamp))
                backups.append(path)
                plan.add(f"back up {name} to {path}", self._dump_action(name, path, spec.backup_dir),
                         f"pg_dump --format=custom {name} > {path}")
        plan.result["backups"] = backups
        if existing:
            self._sql(plan, f"terminate sessions of tenant {spec.tenant.id}",
                      "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                      "WHERE (datname = ANY(%s) OR usename = %s) AND pid <> pg_catalog.pg_backend_pid()",
                      [existing, spec.role])
        for name in existing:
            self._sql(plan, f"drop database {name}",
                      sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if role_exists:
            self._sql(plan, f"drop role {spec.role}", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(spec.role)))

    def _dump_action(self, database, path, root):
        def dump(_conn):
            try:
                dump_database(self.params, database, path, root, self.pg_dump, self.pg_restore)
            except FleetError as exc:
                raise FleetError(f"{exc}; nothing dropped") from None

        return dump


def _flag_sql(name, enabled):
    keyword = ROLE_FLAGS[name][0]
    return keyword if enabled else "NO" + keyword


def _role_view(role):
    if role is None:
        return None
    return {key: value for key, value in role.items() if key != "password"}
