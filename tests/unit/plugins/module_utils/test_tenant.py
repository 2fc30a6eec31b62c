"""The tenant model: names and validation."""
import pytest

from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, TenantInputError, generate_password, is_url_safe_password, validate_bucket_name, validate_db_prefix,
    validate_dns_label, validate_master_set, validate_pg_name, validate_tenant_id)


def test_every_name_comes_from_the_id():
    tenant = Tenant("acme-eu")
    assert tenant.names() == {
        "tenant": "acme-eu",
        "namespace": "harbor-acme-eu",
        "cluster_name": "acme-eu",
        "db_prefix": "acme_eu_",
        "db_role": "harbor_acme_eu",
        "databases": ["acme_eu_core"],
        "bucket": "harbor-acme-eu",
        "iam_user": "harbor-acme-eu",
        "master_set": "harbor-acme-eu",
        "secrets": {"database": "acme-eu-database", "cache": "acme-eu-cache", "admin": "acme-eu-admin",
                    "storage": "acme-eu-storage"},
    }


def test_databases_join_the_prefix_without_separator():
    assert Tenant("acme").databases(notary=True) == ["acme_core", "acme_notaryserver", "acme_notarysigner"]
    assert Tenant("acme").databases(prefix="custom") == ["customcore"]


def test_bucket_prefix_is_fleet_wide():
    assert Tenant("acme", bucket_prefix="corp-registry-").bucket == "corp-registry-acme"
    assert Tenant("acme", bucket_prefix="").bucket == "acme"


@pytest.mark.parametrize("value", ["a", "acme", "acme-eu-1", "a" * 40])
def test_valid_ids(value):
    assert validate_tenant_id(value) == value


@pytest.mark.parametrize("value", [
    "", "Acme", "1acme", "acme-", "-acme", "ac--me", "ac_me", "acme.eu", "a" * 41,
    "acme'; DROP TABLE x; --", 'acme"', "acme;", "ac me", None, 42,
])
def test_invalid_ids_name_the_field(value):
    with pytest.raises(TenantInputError) as err:
        validate_tenant_id(value, field="tenants[3].tenant")
    assert err.value.field == "tenants[3].tenant"
    assert str(err.value).startswith("tenants[3].tenant:")


def test_longest_id_fits_every_limit():
    tenant = Tenant("a" * 40)
    for name in tenant.databases(notary=True) + [tenant.db_role]:
        assert len(name.encode()) <= 63
    assert len(tenant.bucket) <= 63 and len(tenant.namespace) <= 63


def test_db_prefix_must_leave_room_for_notarysigner():
    validate_db_prefix("p" * 51)
    with pytest.raises(TenantInputError, match="63-byte"):
        validate_db_prefix("p" * 52)
    with pytest.raises(TenantInputError, match="lowercase"):
        validate_db_prefix("Bad-Prefix")


@pytest.mark.parametrize("name", ["abc", "harbor-acme", "a.b-c", "a" * 63])
def test_valid_bucket_names(name):
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Harbor", "a..b", "a.-b", "192.168.1.1", "xn--abc", "abc-",
                                  "a_b", "abc-s3alias"])
def test_invalid_bucket_names(name):
    with pytest.raises(TenantInputError, match="bucket"):
        validate_bucket_name(name)


def test_bucket_prefix_is_validated_with_the_id():
    with pytest.raises(TenantInputError) as err:
        Tenant("acme", bucket_prefix="Bad_")
    assert err.value.field == "bucket_prefix"


def test_generated_passwords_are_url_safe_and_distinct():
    passwords = {generate_password() for attempt in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 40 and is_url_safe_password(p) for p in passwords)
    assert not is_url_safe_password("p@ss#word")


@pytest.mark.parametrize("check, value", [
    (validate_tenant_id, "acme\n"), (validate_tenant_id, "acme\r\n"), (validate_tenant_id, "\nacme"),
    (validate_master_set, "harbor-acme\n"), (validate_bucket_name, "harbor-acme\n"),
    (lambda v: validate_pg_name(v, "role"), "harbor_acme\n"), (validate_db_prefix, "acme_\n"),
    (lambda v: validate_dns_label(v, "name"), "pg-a\n"),
])
def test_a_trailing_newline_is_never_part_of_a_name(check, value):
    # re.match with "$" accepts a final newline; a sentinel given "harbor-acme\n" corrupts its config file.
    with pytest.raises(TenantInputError):
        check(value)


@pytest.mark.parametrize("value", [123, 1.5, True, ["acme"], {"id": "acme"}])
def test_ids_must_be_strings(value):
    with pytest.raises(TenantInputError, match="must be a string") as info:
        validate_tenant_id(value, field="tenants[0].id")
    assert info.value.field == "tenants[0].id"
