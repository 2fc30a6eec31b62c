"""PostgreSQL backend pieces that need no server: SCRAM verifiers and spec validation."""
import base64
import hashlib
import os

import pytest

from ansible_collections.harborfleet.fleet.plugins.module_utils import _postgres as pg
from ansible_collections.harborfleet.fleet.plugins.module_utils import _tenant_database as tdb
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import describe_error
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError


def spec(**params):
    base = {"tenant": "acme", "password": "pw", "notary": False}
    base.update(params)
    return tdb.TenantDatabaseSpec(base, params.pop("state", "present"))


def test_scram_verifier_format_and_roundtrip():
    verifier = pg.scram_verifier("correct horse", salt=b"0123456789abcdef")
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256"
    iterations_salt, keys = rest.split("$")
    assert iterations_salt == "4096:" + base64.b64encode(b"0123456789abcdef").decode()
    assert all(len(base64.b64decode(k)) == 32 for k in keys.split(":"))
    assert pg.password_matches(verifier, "correct horse", "harbor_acme")
    assert not pg.password_matches(verifier, "correct horse!", "harbor_acme")


def test_verifiers_are_salted():
    assert pg.scram_verifier("same") != pg.scram_verifier("same")


def test_md5_verifiers_are_understood():
    stored = "md5" + hashlib.md5(b"secretharbor_acme").hexdigest()
    assert pg.password_matches(stored, "secret", "harbor_acme")
    assert not pg.password_matches(stored, "secret", "other_role")


@pytest.mark.parametrize("stored", [None, "", "plaintext", "SCRAM-SHA-256$garbage"])
def test_unknown_or_broken_verifiers_never_match(stored):
    assert not pg.password_matches(stored, "x", "r")


def test_spec_names_come_from_the_tenant_model():
    s = spec(tenant="acme-eu", notary=True)
    assert s.role == "harbor_acme_eu"
    assert s.databases == ["acme_eu_core", "acme_eu_notaryserver", "acme_eu_notarysigner"]


@pytest.mark.parametrize("params, field", [
    ({"prefix": "Bad"}, "prefix"),
    ({"prefix": "x" * 52}, "prefix"),
    ({"role": "role; DROP"}, "role"),
    ({"template": "template0\"; --"}, "template"),
    ({"role_connection_limit": -5}, "role_connection_limit"),
    ({"password": ""}, "password"),
    ({"backup_dir": "/tmp", "backup_file": "{nope}.dump"}, "backup_file"),
])
def test_bad_input_names_the_field(params, field):
    with pytest.raises(TenantInputError) as err:
        spec(**params)
    assert err.value.field == field


def test_describe_error_for_missing_privilege():
    class FakePgError(pg.psycopg2.Error):
        pgcode = pg.INSUFFICIENT_PRIVILEGE
        pgerror = "ERROR:  permission denied to create role"

    assert "insufficient privilege: permission denied to create role" in describe_error(FakePgError())


@pytest.mark.parametrize("error", [pg.psycopg2.InterfaceError("connection already closed"),
                                   pg.psycopg2.OperationalError("server closed the connection unexpectedly")])
def test_a_lost_connection_names_the_server(error):
    backend = tdb.DatabaseBackend(dict(PARAMS, login_host="db.example.test", login_port=6543))
    assert backend.describe_error(error).startswith("PostgreSQL at db.example.test:6543: the connection was lost (")


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


PARAMS = {"login_host": "127.0.0.1", "login_port": 5432, "login_user": "admin", "login_password": "adminpw",
          "login_db": "postgres", "ssl_mode": "disable", "ca_cert": None, "connect_timeout": 5}


def test_a_dump_is_private_from_its_first_byte_and_verified(tmp_path):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres_backup import dump_database
    root = tmp_path / "backups"
    root.mkdir(mode=0o755)
    # The fake pg_dump records the mode of the file it is writing into, and that the password came by environment.
    pg_dump = _script(tmp_path / "pg_dump", 'm=$(stat -L -c %a /proc/$$/fd/1); echo "$m" > "$0.mode"; '
                                            'echo "$PGPASSWORD $*" > "$0.args"; printf PGDMP-data')
    pg_restore = _script(tmp_path / "pg_restore", 'echo ";header"; echo "1; 0 0 TABLE public t owner"')
    path = str(root / "acme" / "acme_core-STAMP.dump")
    result = dump_database(PARAMS, "acme_core", path, str(root), pg_dump, pg_restore)
    assert result == {"database": "acme_core", "path": path, "size": 10, "entries": 1}
    assert (tmp_path / "pg_dump.mode").read_text().strip() == "600"
    assert (tmp_path / "pg_dump.args").read_text().split() == ["adminpw", "--format=custom", "--no-password"]
    assert oct(os.stat(path).st_mode)[-3:] == "600"
    assert oct(root.stat().st_mode)[-3:] == "700" and oct((root / "acme").stat().st_mode)[-3:] == "700"
    assert sorted(os.listdir(root / "acme")) == ["acme_core-STAMP.dump"]


@pytest.mark.parametrize("dump_body, restore_body, message", [
    ("echo 'connection refused' >&2; exit 1", "true", "connection refused"),
    ("true", "true", "wrote an empty file"),
    ("printf garbage", "echo 'input file does not appear to be a valid archive' >&2; exit 1", "failed verification"),
])
def test_a_dump_that_fails_or_does_not_verify_leaves_nothing(tmp_path, dump_body, restore_body, message):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres_backup import dump_database
    pg_dump = _script(tmp_path / "pg_dump", dump_body)
    pg_restore = _script(tmp_path / "pg_restore", restore_body)
    root = tmp_path / "b"
    with pytest.raises(FleetError, match=message):
        dump_database(PARAMS, "acme_core", str(root / "acme" / "x.dump"), str(root), pg_dump, pg_restore)
    assert os.listdir(root / "acme") == []


@pytest.mark.parametrize("template", ["/etc/{tenant}.dump", "../{tenant}.dump", "{nope}.dump"])
def test_backup_files_stay_inside_the_backup_dir(template):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres_backup import check_backup_file
    with pytest.raises(TenantInputError) as info:
        check_backup_file(template)
    assert info.value.field == "backup_file"
