"""PostgreSQL backend pieces that need no server: SCRAM verifiers and spec validation."""
import base64
import hashlib

import pytest

from ansible_collections.harborfleet.fleet.plugins.module_utils import _postgres as pg
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import TenantInputError


def spec(**params):
    base = {"tenant": "acme", "password": "pw", "notary": False}
    base.update(params)
    return pg.TenantDatabaseSpec(base, params.pop("state", "present"))


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

    assert "insufficient privilege: permission denied to create role" in pg.describe_error(FakePgError())
