# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options for PostgreSQL, shared by the modules that talk to it."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/harborfleet.fleet.postgres) in C(module_defaults) to set the PostgreSQL connection options once for
        every module of the group.
    support: full
    membership:
      - harborfleet.fleet.postgres
options:
  login_host:
    description: Host name or IP address of the PostgreSQL server.
    type: str
    default: localhost
    aliases: [host]
  login_port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - The administrative role the module connects as.
      - It needs CREATEROLE and CREATEDB. Password changes are only detected when it can read C(pg_authid)
        (a superuser); otherwise see the module's C(update_password) option, where it has one.
    type: str
    default: postgres
    aliases: [user]
  login_password:
    description: Password of O(login_user). libpq's own sources (C(PGPASSWORD), C(~/.pgpass)) apply when unset.
    type: str
    aliases: [password_admin]
  login_db:
    description: Database to connect to for administration.
    type: str
    default: postgres
  ssl_mode:
    description:
      - libpq's C(sslmode) for the connection. The default V(verify-full) checks the server's certificate against
        O(ca_cert) and its name against O(login_host).
      - Plain or unverified transport (V(disable), V(allow), V(prefer), V(require)) only when set explicitly.
    type: str
    default: verify-full
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file to verify the server with (libpq's C(sslrootcert)).
      - Unset, libpq reads C(~/.postgresql/root.crt) of the user running the module.
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
requirements:
  - psycopg2 (or psycopg2-binary) >= 2.9
"""
