"""Bad input, property-based: arbitrary ids, plan names and option values through every module's validation and
the fleet file's. Each is either accepted, and then every name derived from it is one the stores accept, or refused
with a TenantInputError/FleetError naming the field. Any other exception is a defect. Validation happens before any
connection is made (the backends' constructors and read/plan are not reached), so nothing is created anywhere."""
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.harborfleet.fleet.plugins.module_utils import _tenant
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, TenantInputError
from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import Fleet
from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_spec import HarborClusterSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._redis import MasterSetSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._redis_instance import ARGUMENT_SPEC, TENANT_SPEC, InstanceSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_buckets import BucketSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_database import TenantDatabaseSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import TenantSecretsSpec

pytestmark = pytest.mark.reliability
EXAMPLES = 300
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIED = {}

# What a user can put in a YAML value: text of every kind (control characters, newlines, unicode), numbers, null,
# booleans, lists and mappings.
TEXT = st.text(min_size=0, max_size=80)
SCALAR = st.one_of(TEXT, st.integers(-10 ** 6, 10 ** 6), st.none(), st.booleans(), st.floats(allow_nan=False))
ANY = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(TEXT, inner, max_size=4)), max_leaves=8)
LIKELY_ID = st.one_of(TEXT, st.from_regex(r"[a-z][a-z0-9-]{0,45}", fullmatch=True), ANY)


def refused_naming(exc, *fields):
    text = str(exc)
    return isinstance(exc, (TenantInputError, FleetError)) and any(text.startswith(f) or f" {f}" in text
                                                                   or f"{f}:" in text for f in fields)


def module_defaults(spec):
    """What an argument spec gives a parameter left out."""
    return {name: option.get("default") for name, option in spec.items()}


def outcome(build, *fields):
    """build() either succeeds or is refused naming one of ``fields``; anything else fails the test."""
    try:
        return build()
    except (TenantInputError, FleetError) as exc:
        assert refused_naming(exc, *fields), exc
        return None


def count(name):
    TRIED[name] = TRIED.get(name, 0) + 1


def names_the_stores_accept(tenant):
    names = tenant.names()
    assert len(names["namespace"]) <= 63 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", names["namespace"])
    assert len(names["db_role"]) <= 63 and all(len(db) <= 63 for db in names["databases"])
    _tenant.validate_bucket_name(names["bucket"])
    _tenant.validate_master_set(names["master_set"])
    assert "\n" not in repr(names).replace("\\n", "")


@SETTINGS
@given(value=LIKELY_ID)
def test_tenant_ids_through_every_module(value):
    count("tenant ids, every module")
    tenant = outcome(lambda: _tenant.Tenant(value), "tenant")
    if tenant is not None:
        names_the_stores_accept(tenant)
    with tempfile.TemporaryDirectory() as tmp:
        redis_params = dict(module_defaults(ARGUMENT_SPEC), config_dir=tmp, data_dir=tmp, run_dir=tmp, log_dir=tmp)
        item = module_defaults(TENANT_SPEC)
        item.update(tenant=value, state="absent", port=None)
        builders = [
            (lambda: TenantDatabaseSpec({"tenant": value}, "present"), ("tenant",)),
            (lambda: BucketSpec({"tenant": value}, "present"), ("tenant", "bucket_prefix")),
            (lambda: MasterSetSpec({"tenant": value, "master_host": "10.0.0.1", "master_port": 7000,
                                    "password": "x"}, "present", 3), ("tenant",)),
            (lambda: TenantSecretsSpec({"tenant": value}), ("tenant",)),
            (lambda: HarborClusterSpec({"tenant": value}, state="absent"), ("tenant",)),
            (lambda: InstanceSpec(item, redis_params), ("tenants.tenant",)),
        ]
        accepted = [outcome(build, *fields) is not None for build, fields in builders]
    assert all(accepted) == (tenant is not None) and (any(accepted) == (tenant is not None))


def fleet_data(tenant):
    return {"defaults": {"plan": "small", "harbor_version": "2.6.4", "domain": "example.test"},
            "plans": {"small": {}},
            "tiers": {"postgres": [{"name": "pg", "host": "10.0.0.1"}],
                      "sentinel_groups": [{"name": "sg", "sentinels": ["10.0.0.2:26379"]}],
                      "s3": [{"name": "s3", "endpoint": "https://s3.example.test"}]},
            "tenants": [tenant]}


@SETTINGS
@given(tid=LIKELY_ID, plan=st.one_of(st.just("small"), ANY), region=st.one_of(st.none(), ANY),
       overrides=st.one_of(st.none(), ANY))
def test_fleet_file_tenants_plans_and_overrides(tid, plan, region, overrides):
    count("fleet file: tenant id, plan, region, overrides")
    tenant = {"id": tid, "plan": plan}
    if region is not None:
        tenant["region"] = region
    if overrides is not None:
        tenant["overrides"] = overrides
    fleet = outcome(lambda: Fleet(fleet_data(tenant)), "tenants[0]", "tenants", "regions", "region")
    if fleet is not None:
        placement, _new, unplaced = fleet.placement()
        assert set(placement) | set(unplaced) == {tid}


HARBOR_OPTIONS = ("replicas", "spec_overrides", "core_max_idle_connections", "core_max_open_connections",
                  "version", "expose", "database", "cache", "storage", "labels", "token_issuer", "external_url")


@SETTINGS
@given(option=st.sampled_from(HARBOR_OPTIONS), value=ANY)
def test_harbor_cluster_option_values(option, value):
    count("harbor_cluster option values")
    base = {"tenant": "acme", "version": "2.6.4", "expose": {"host": "acme.example.test"},
            "token_issuer": {"name": "issuer"},
            "database": {"host": "db", "port": 5432, "password": "dbpass"},
            "cache": {"host": "sentinel", "port": 26379, "password": "redispass"},
            "storage": {"region": "us-east-1", "endpoint": "http://s3:9000"}}
    base[option] = value
    outcome(lambda: HarborClusterSpec(base), option, "tenant")


BUCKET_OPTIONS = ("bucket", "bucket_prefix", "tags", "policy", "delete_access_keys", "credentials_actions",
                  "noncurrent_version_expiration_days", "abort_incomplete_multipart_days")


@SETTINGS
@given(option=st.sampled_from(BUCKET_OPTIONS), value=ANY)
def test_tenant_bucket_option_values(option, value):
    count("tenant_bucket option values")
    params = {"tenant": "acme", option: value}
    prefix = value if option == "bucket_prefix" else "harbor-"
    if option == "bucket_prefix":
        params.pop("bucket_prefix")
    outcome(lambda: BucketSpec(params, "present", bucket_prefix=prefix), option, "bucket", "credentials")


@SETTINGS
@given(prefix=st.one_of(st.none(), ANY), role=st.one_of(st.none(), ANY), template=st.one_of(st.none(), ANY))
def test_tenant_database_names(prefix, role, template):
    count("tenant_database prefix, role, template")
    spec = outcome(lambda: TenantDatabaseSpec({"tenant": "acme", "prefix": prefix, "role": role,
                                               "template": template}, "present"), "prefix", "role", "template")
    if spec is not None:
        assert all(len(db) <= 63 for db in spec.databases) and len(spec.role) <= 63


@SETTINGS
@given(port=st.one_of(st.integers(-10, 70000), st.none()), password=ANY, master_set=st.one_of(st.none(), ANY),
       host=ANY)
def test_redis_ports_passwords_master_sets_and_hosts(port, password, master_set, host):
    count("tenant_redis / sentinel_master ports, passwords, master sets, hosts")
    with tempfile.TemporaryDirectory() as tmp:
        item = module_defaults(TENANT_SPEC)
        item.update(tenant="acme", state="present", port=port, password=password)
        params = dict(module_defaults(ARGUMENT_SPEC), config_dir=tmp, data_dir=tmp, run_dir=tmp, log_dir=tmp,
                      save="")
        outcome(lambda: InstanceSpec(item, params), "port", "password", "tenants")
    outcome(lambda: MasterSetSpec({"tenant": "acme", "master_set": master_set, "master_host": host,
                                   "master_port": port, "password": password}, "present", 3),
            "master_set", "master_host", "master_port", "password")


def test_record_what_was_tried(reliability):
    for name, tried in sorted(TRIED.items()):
        reliability("bad input", name, tried, "refused naming the field, or accepted with valid names")
