# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL backend: connection, identifier quoting, SCRAM verifiers, and the tenant database plan.

Reads are bulk: one query returns the roles and databases of every tenant in a module call, so a no-op converge
of a thousand tenants costs a few round trips, not thousands. Every identifier is quoted with ``sql.Identifier``;
user values only ever travel as query parameters. Passwords are sent to the server as SCRAM verifiers computed
here, so the plaintext never reaches the server's statement log; returned queries show ``'********'``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import re
import secrets
import subprocess

try:
    import psycopg2
    from psycopg2 import sql
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    psycopg2 = None
    sql = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = _exc

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, TenantInputError, validate_db_prefix, validate_pg_name)

REDACTED = "********"
SCRAM_ITERATIONS = 4096

CONNECTION_SPEC = dict(
    login_host=dict(type="str", default="localhost", aliases=["host"]),
    login_port=dict(type="int", default=5432, aliases=["port"]),
    login_user=dict(type="str", default="postgres", aliases=["user"]),
    login_password=dict(type="str", no_log=True, aliases=["password_admin"]),
    login_db=dict(type="str", default="postgres"),
    ssl_mode=dict(type="str", default="prefer",
                  choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
    connect_timeout=dict(type="int", default=10),
)

# pgcodes worth a sentence of their own
INSUFFICIENT_PRIVILEGE = "42501"


# --------------------------------------------------------------------------- connection and errors

def connection_params(params):
    out = dict(host=params["login_host"], port=params["login_port"], user=params["login_user"],
               dbname=params["login_db"], sslmode=params["ssl_mode"], connect_timeout=params["connect_timeout"],
               application_name="harborfleet.fleet")
    if params.get("login_password"):
        out["password"] = params["login_password"]
    if params.get("ca_cert"):
        out["sslrootcert"] = params["ca_cert"]
    return out


def connect(params):
    """An autocommit connection (CREATE/DROP DATABASE cannot run in a transaction), with errors that say why."""
    conn_params = connection_params(params)
    where = f"{conn_params['host']}:{conn_params['port']}"
    try:
        conn = psycopg2.connect(**conn_params)
    except psycopg2.OperationalError as exc:
        text = str(exc).strip()
        if "password authentication failed" in text or "no password supplied" in text \
                or "no pg_hba.conf entry" in text:
            raise FleetError(f"PostgreSQL at {where}: authentication failed for user "
                             f"{conn_params['user']!r}: {text.splitlines()[-1]}") from None
        raise FleetError(f"PostgreSQL at {where} is unreachable: {' '.join(text.split())}") from None
    conn.autocommit = True
    return conn


def describe_error(exc):
    if psycopg2 is not None and isinstance(exc, psycopg2.Error):
        message = (exc.pgerror or str(exc)).strip().replace("ERROR:  ", "")
        if exc.pgcode == INSUFFICIENT_PRIVILEGE:
            return (f"insufficient privilege: {message} (the login user needs CREATEROLE and CREATEDB, "
                    "or to be a superuser)")
        return f"PostgreSQL error {exc.pgcode or ''}: {message}".replace("  ", " ")
    if isinstance(exc, (FleetError, TenantInputError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- backups

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
    describe_error = staticmethod(describe_error)

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


# --------------------------------------------------------------------------- SCRAM-SHA-256

def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _scram_keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """The verifier PostgreSQL stores for a password (it accepts one in place of the plaintext)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def password_matches(stored, password, role):
    """Does the stored verifier (SCRAM or md5) belong to ``password``? Non-ASCII passwords are compared without
    SASLprep normalisation, so they may be reported as changed; generated passwords are ASCII."""
    if not stored:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            head, keys = stored[len("SCRAM-SHA-256$"):].split("$", 1)
            iterations, salt = head.split(":", 1)
            stored_key, server_key = keys.split(":", 1)
            expected = _scram_keys(password, base64.b64decode(salt), int(iterations))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(expected[0], base64.b64decode(stored_key)) and \
            hmac.compare_digest(expected[1], base64.b64decode(server_key))
    if stored.startswith("md5"):
        digest = "md5" + hashlib.md5((password + role).encode("utf-8")).hexdigest()  # nosec - PostgreSQL's format
        return hmac.compare_digest(digest, stored)
    return False


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

    describe_error = staticmethod(describe_error)

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
