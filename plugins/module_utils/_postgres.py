# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL client: connection options and connections with clear errors, the description of server errors,
SCRAM-SHA-256 verifiers (passwords reach the server only as verifiers, never in plaintext).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

try:
    import psycopg2
    # sql: the statements of _tenant_database are composed with it
    from psycopg2 import sql  # noqa: F401  pylint: disable=unused-import
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    psycopg2 = None
    sql = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = _exc

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, register_errors
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import DEFAULT_PG_SSL_MODE, PG_SSL_MODES

SCRAM_ITERATIONS = 4096

CONNECTION_SPEC = dict(
    login_host=dict(type="str", default="localhost", aliases=["host"]),
    login_port=dict(type="int", default=5432, aliases=["port"]),
    login_user=dict(type="str", default="postgres", aliases=["user"]),
    login_password=dict(type="str", no_log=True, aliases=["password_admin"]),
    login_db=dict(type="str", default="postgres"),
    ssl_mode=dict(type="str", default=DEFAULT_PG_SSL_MODE,
                  choices=list(PG_SSL_MODES)),
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
    where = endpoint(params)
    try:
        conn = psycopg2.connect(**conn_params)
    except psycopg2.OperationalError as exc:
        text = str(exc).strip()
        if "no encryption" in text and "no pg_hba.conf entry" in text:
            raise FleetError(f"PostgreSQL at {where} accepts {conn_params['user']!r} only over TLS (hostssl) and this "
                             f"connection was plain (ssl_mode {conn_params['sslmode']}): use verify-full with "
                             "ca_cert") from None
        if any(sign in text for sign in ("root certificate file", "certificate verify failed", "server certificate for")):
            raise FleetError(f"PostgreSQL at {where}: its TLS certificate could not be verified (ssl_mode "
                             f"{conn_params['sslmode']}): {' '.join(text.split())}; give the CA that signs it in "
                             "ca_cert (a fleet's postgres member: ca_cert)") from None
        if "password authentication failed" in text or "no password supplied" in text \
                or "no pg_hba.conf entry" in text:
            raise FleetError(f"PostgreSQL at {where}: authentication failed for user "
                             f"{conn_params['user']!r}: {text.splitlines()[-1]}") from None
        raise FleetError(f"PostgreSQL at {where} is unreachable: {' '.join(text.split())}") from None
    conn.autocommit = True
    return conn


def endpoint(params):
    """``host:port`` of the server ``params`` log in to, as error messages name it."""
    return f"{params['login_host']}:{params['login_port']}"


def _describe_psycopg2(exc, where=None):
    message = (exc.pgerror or str(exc)).strip().replace("ERROR:  ", "")
    if not exc.pgcode and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        # the connection itself broke (server killed, restarted, network): say which server
        place = f"PostgreSQL at {where}" if where else "PostgreSQL"
        return f"{place}: the connection was lost ({' '.join(message.split())})"
    if exc.pgcode == INSUFFICIENT_PRIVILEGE:
        return f"insufficient privilege: {message} (the login user needs CREATEROLE and CREATEDB, or to be a superuser)"
    return f"PostgreSQL error {exc.pgcode or ''}: {message}".replace("  ", " ")


if psycopg2 is not None:
    register_errors(psycopg2.Error, _describe_psycopg2)


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
