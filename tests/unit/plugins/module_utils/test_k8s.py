"""Unit tests for the Kubernetes backend: the spec builder against the real CRD schemas, comparison, readiness,
error parsing, and the read/plan cycle over a fake API client."""
import base64
import copy
import json
import os

import jsonschema
import pytest
import yaml

import types

from ansible_collections.harborfleet.fleet.plugins.module_utils import _common, _harbor_cluster, _harbor_spec, _k8s_client, _module, _tenant_secrets

# The Kubernetes files' names under one prefix (k8s.X), as the tests read them.
k8s = types.SimpleNamespace()
for _source in (_common, _k8s_client, _tenant_secrets, _harbor_spec, _harbor_cluster, _module):
    k8s.__dict__.update({name: value for name, value in vars(_source).items() if not name.startswith("__")})
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
CRDS = {"main": os.path.join(ROOT, "lab", "crds", "goharbor.io_harborclusters.yaml"),
        "v1.4.0-rc1": os.path.join(ROOT, "lab", "crds", "goharbor.io_harborclusters_v1.4.0-rc1.yaml")}


# --------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module", params=sorted(CRDS))
def crd(request):
    with open(CRDS[request.param], encoding="utf-8") as handle:
        return request.param, yaml.safe_load(handle)


@pytest.fixture(scope="module")
def main_crd():
    with open(CRDS["main"], encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def rc1_crd():
    with open(CRDS["v1.4.0-rc1"], encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def strict(schema):
    """The CRD's openAPI schema as JSON schema that also refuses unknown fields (the apiserver prunes them)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        node.pop("x-kubernetes-int-or-string", None)
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties",):
            for child in (node.get(key) or {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key) or []:
                walk(child)

    walk(schema)
    return schema


def validate(manifest, crd_doc):
    version = [v for v in crd_doc["spec"]["versions"] if v["name"] == k8s.VERSION][0]
    schema = strict(version["schema"]["openAPIV3Schema"])
    body = {key: value for key, value in manifest.items() if key != "metadata"}
    jsonschema.validate(body, schema, cls=jsonschema.Draft4Validator)  # OpenAPI 3.0: boolean exclusiveMinimum


def params(**overrides):
    base = {
        "tenant": "acme",
        "version": "2.6.4",
        "expose": {"host": "{tenant}.registry.example.test", "tls_secret": "{tenant}-tls"},
        "token_issuer": {"name": "harbor-issuer", "kind": "Issuer"},
        "database": {"host": "db.internal", "port": 5432, "ssl_mode": "disable", "password": "dbpass"},
        "cache": {"host": "sentinel.internal", "port": 26379, "password": "redispass"},
        "storage": {"region": "us-east-1", "endpoint": "http://s3.internal:9000", "access_key": "AKIA1",
                    "secret_key": "s3secret"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = dict(base[key], **value)
        else:
            base[key] = value
    return base


def every_option():
    return params(
        external_url="https://{tenant}.example.test",
        harbor_class="gold",
        log_level="debug",
        labels={"plan": "gold"},
        bucket_prefix="fleet-",
        admin_password="adminpass",
        database={"username": "custom_user", "prefix": "custom_"},
        cache={"master_set": "custom-set"},
        storage={"bucket": "bucket-{tenant}", "secure": False, "v4auth": True, "encrypt": True, "key_id": "kms-1",
                 "root_directory": "/harbor", "skip_verify": True, "storage_class": "STANDARD",
                 "chunk_size": 5242880, "certificate_secret": "s3-ca", "redirect": False},
        expose={"ingress_class_name": "nginx", "controller": "default",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}},
        token_issuer={"kind": "ClusterIssuer", "group": "cert-manager.io"},
        trivy={"enabled": True, "reports_claim": "{tenant}-trivy-reports", "cache_claim": "{tenant}-trivy-cache",
               "skip_update": True, "offline_scan": False, "github_token_secret": "gh-token", "replicas": 2},
        notary={"enabled": True, "host": "notary.{tenant}.example.test", "tls_secret": "{tenant}-notary-tls",
                "migration_enabled": True, "server_replicas": 1, "signer_replicas": 1},
        chartmuseum={"enabled": True, "absolute_url": True, "replicas": 1},
        image_source={"repository": "registry.example.test/goharbor", "tag_suffix": "-patched"},
        replicas={"core": 2, "portal": 1, "registry": 3, "registryctl": 1, "jobservice": 2},
        core_max_idle_connections=10,
        core_max_open_connections=100,
        spec_overrides={"registry": {"relativeURLs": False}, "jobservice": {"workerCount": 5}},
    )


def build(**overrides):
    return k8s.build_cluster(k8s.HarborClusterSpec(params(**overrides)))[0]


# --------------------------------------------------------------------------- the spec builder

def test_minimal_spec_uses_tenant_names_and_validates_against_both_crds(crd):
    _name, doc = crd
    spec = k8s.HarborClusterSpec(params())
    manifest, overrides = k8s.build_cluster(spec)
    assert overrides == set()
    assert manifest["apiVersion"] == "goharbor.io/v1beta1" and manifest["kind"] == "HarborCluster"
    assert manifest["metadata"] == {"name": "acme", "namespace": "harbor-acme",
                                    "labels": {"app.kubernetes.io/managed-by": "harborfleet",
                                               "harborfleet.io/tenant": "acme"}}
    s = manifest["spec"]
    assert s["version"] == "2.6.4"
    assert s["externalURL"] == "https://acme.registry.example.test"
    assert s["harborAdminPasswordRef"] == "acme-admin"
    assert s["core"] == {"tokenIssuer": {"kind": "Issuer", "name": "harbor-issuer"}}
    assert s["expose"] == {"core": {"ingress": {"host": "acme.registry.example.test"},
                                    "tls": {"certificateRef": "acme-tls"}}}
    assert s["database"] == {"kind": "PostgreSQL", "spec": {"postgresql": {
        "hosts": [{"host": "db.internal", "port": 5432}], "username": "harbor_acme", "passwordRef": "acme-database",
        "prefix": "acme_", "sslMode": "disable"}}}
    assert s["cache"] == {"kind": "Redis", "spec": {"redis": {
        "host": "sentinel.internal", "port": 26379, "sentinelMasterSet": "harbor-acme", "passwordRef": "acme-cache"}}}
    assert s["storage"] == {"kind": "S3", "spec": {"s3": {
        "region": "us-east-1", "bucket": "harbor-acme", "regionendpoint": "http://s3.internal:9000",
        "accesskey": "AKIA1", "secretkeyRef": "acme-storage"}}}
    validate(manifest, doc)


def test_every_option_builds_a_spec_the_main_crd_accepts(main_crd):
    spec = k8s.HarborClusterSpec(every_option())
    manifest, _paths = k8s.build_cluster(spec)
    s = manifest["spec"]
    assert manifest["metadata"]["annotations"] == {"goharbor.io/harbor-class": "gold"}
    assert manifest["metadata"]["labels"]["plan"] == "gold"
    assert s["externalURL"] == "https://acme.example.test"
    assert s["logLevel"] == "debug"
    assert s["imageSource"] == {"repository": "registry.example.test/goharbor", "tagSuffix": "-patched"}
    assert s["core"] == {"tokenIssuer": {"kind": "ClusterIssuer", "name": "harbor-issuer", "group": "cert-manager.io"},
                         "replicas": 2, "maxIdleConnections": 10, "maxOpenConnections": 100}
    assert s["expose"]["core"]["ingress"] == {"host": "acme.registry.example.test", "ingressClassName": "nginx",
                                              "controller": "default",
                                              "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}}
    assert s["expose"]["notary"] == {"ingress": {"host": "notary.acme.example.test", "ingressClassName": "nginx",
                                                 "controller": "default"},
                                     "tls": {"certificateRef": "acme-notary-tls"}}
    pg = s["database"]["spec"]["postgresql"]
    assert (pg["username"], pg["prefix"]) == ("custom_user", "custom_")
    assert s["cache"]["spec"]["redis"]["sentinelMasterSet"] == "custom-set"
    assert s["storage"] == {"kind": "S3", "spec": {
        "s3": {"region": "us-east-1", "bucket": "bucket-acme", "regionendpoint": "http://s3.internal:9000",
               "secure": False, "v4auth": True, "encrypt": True, "keyid": "kms-1", "rootdirectory": "/harbor",
               "skipverify": True, "storageclass": "STANDARD", "chunksize": 5242880, "certificateRef": "s3-ca",
               "accesskey": "AKIA1", "secretkeyRef": "acme-storage"},
        "redirect": {"enable": False}}}
    assert s["trivy"] == {"storage": {"reportsPersistentVolume": {"claimName": "acme-trivy-reports"},
                                      "cachePersistentVolume": {"claimName": "acme-trivy-cache"}},
                          "skipUpdate": True, "offlineScan": False, "githubTokenRef": "gh-token", "replicas": 2}
    assert s["notary"] == {"migrationEnabled": True, "server": {"replicas": 1}, "signer": {"replicas": 1}}
    assert s["chartmuseum"] == {"absoluteUrl": True, "replicas": 1}
    assert (s["portal"], s["registry"], s["registryctl"]) == ({"replicas": 1}, {"replicas": 3, "relativeURLs": False},
                                                              {"replicas": 1})
    assert s["jobservice"] == {"replicas": 2, "workerCount": 5}
    assert "secret" not in json.dumps(manifest).replace("Secret", "").replace("secretkeyRef", "") \
        .replace("gh-token", "")  # only names of Secrets, never values
    for value in ("dbpass", "redispass", "s3secret", "adminpass"):
        assert value not in json.dumps(manifest)
    validate(manifest, main_crd)


def test_per_plan_fields_are_dropped_for_the_rc1_crd_and_the_rest_validates(rc1_crd, main_crd):
    spec = k8s.HarborClusterSpec(every_option())
    manifest, overrides = k8s.build_cluster(spec)
    kept = copy.deepcopy(manifest)
    assert k8s.fit_to_schema(kept, overrides, k8s.CrdSchema(main_crd)) == []
    assert kept == manifest
    dropped = k8s.fit_to_schema(manifest, overrides, k8s.CrdSchema(rc1_crd))
    assert dropped == ["spec.core.maxIdleConnections", "spec.core.maxOpenConnections"]
    assert "maxIdleConnections" not in manifest["spec"]["core"] and manifest["spec"]["core"]["replicas"] == 2
    validate(manifest, rc1_crd)
    with pytest.raises(jsonschema.ValidationError):
        validate(k8s.build_cluster(spec)[0], rc1_crd)  # the strict check would catch an emitted field


def test_the_same_fields_from_spec_overrides_are_refused_on_rc1(rc1_crd):
    spec = k8s.HarborClusterSpec(params(spec_overrides={"core": {"maxOpenConnections": 5}}))
    manifest, overrides = k8s.build_cluster(spec)
    with pytest.raises(TenantInputError) as err:
        k8s.fit_to_schema(manifest, overrides, k8s.CrdSchema(rc1_crd))
    assert err.value.field == "spec_overrides"
    assert "spec.core.maxOpenConnections is not a field of the installed harborclusters.goharbor.io" in str(err.value)


def test_unknown_override_field_is_refused_naming_the_option(main_crd):
    spec = k8s.HarborClusterSpec(params(spec_overrides={"registry": {"relativeURLz": False}}))
    manifest, overrides = k8s.build_cluster(spec)
    with pytest.raises(TenantInputError, match=r"spec_overrides: spec\.registry\.relativeURLz is not a field"):
        k8s.fit_to_schema(manifest, overrides, k8s.CrdSchema(main_crd))


def test_spec_overrides_merge_deeply_last_and_null_removes():
    manifest = build(spec_overrides={"expose": {"core": {"tls": None, "ingress": {"ingressClassName": "x"}}},
                                     "database": {"spec": {"postgresql": {"sslMode": "require"}}},
                                     "version": "2.7.0"})
    assert manifest["spec"]["expose"]["core"] == {"ingress": {"host": "acme.registry.example.test",
                                                              "ingressClassName": "x"}}
    assert manifest["spec"]["database"]["spec"]["postgresql"]["sslMode"] == "require"
    assert manifest["spec"]["database"]["spec"]["postgresql"]["prefix"] == "acme_"
    assert manifest["spec"]["version"] == "2.7.0"


def test_defaults_when_options_are_left_out():
    manifest = build(database={"port": None, "ssl_mode": None}, cache={"port": None},
                     storage={"endpoint": None, "access_key": None, "secret_key": None},
                     expose={"tls_secret": None})
    s = manifest["spec"]
    assert s["database"]["spec"]["postgresql"]["hosts"] == [{"host": "db.internal", "port": 5432}]
    assert s["database"]["spec"]["postgresql"]["sslMode"] == "verify-full"  # TLS by default
    assert s["cache"]["spec"]["redis"]["port"] == 26379
    assert s["storage"]["spec"]["s3"] == {"region": "us-east-1", "bucket": "harbor-acme"}
    assert s["expose"]["core"] == {"ingress": {"host": "acme.registry.example.test"}}
    spec = k8s.HarborClusterSpec(params(storage={"access_key": None, "secret_key": None}))
    assert spec.secret_purposes == ("database", "cache", "admin")


def test_bucket_prefix_and_hyphenated_tenant_names():
    spec = k8s.HarborClusterSpec(params(tenant="big-corp", bucket_prefix="eu1-"))
    manifest, _paths = k8s.build_cluster(spec)
    s = manifest["spec"]
    assert manifest["metadata"]["namespace"] == "harbor-big-corp"
    assert s["storage"]["spec"]["s3"]["bucket"] == "eu1-big-corp"
    assert s["database"]["spec"]["postgresql"]["prefix"] == "big_corp_"
    assert s["database"]["spec"]["postgresql"]["username"] == "harbor_big_corp"
    assert s["cache"]["spec"]["redis"]["sentinelMasterSet"] == "harbor-big-corp"
    assert k8s.HarborClusterSpec(params(bucket_prefix="")).storage["bucket"] == "acme"


def test_secret_value_is_kept_out_of_the_spec_object():
    spec = k8s.HarborClusterSpec(params())
    assert "secret_key" not in spec.storage
    assert spec.passwords == {"database": "dbpass", "cache": "redispass", "storage": "s3secret"}


@pytest.mark.parametrize("overrides, field", [
    ({"version": None}, "version"),
    ({"version": "2.6"}, "version"),
    ({"expose": {"host": None}}, "expose.host"),
    ({"expose": {"host": "bad_host.example"}}, "expose.host"),
    ({"expose": {"tls_secret": "Bad_Name"}}, "expose.tls_secret"),
    ({"external_url": "registry.example.test"}, "external_url"),
    ({"token_issuer": {"name": None}}, "token_issuer.name"),
    ({"database": {"host": None}}, "database.host"),
    ({"database": {"prefix": "Bad-Prefix"}}, "database.prefix"),
    ({"database": {"prefix": "p" * 60}}, "database.prefix"),
    ({"database": {"username": "has space"}}, "database.username"),
    ({"database": {"port": 0}}, "database.port"),
    ({"cache": {"port": 0}}, "cache.port"),
    ({"database": {"password": ""}}, "database.password"),
    ({"cache": {"host": None}}, "cache.host"),
    ({"cache": {"password": "p@ss/word"}}, "cache.password"),
    ({"cache": {"master_set": "bad set"}}, "cache.master_set"),
    ({"storage": {"region": None}}, "storage.region"),
    ({"storage": {"bucket": "Bad_Bucket"}}, "storage.bucket"),
    ({"storage": {"chunk_size": 1024}}, "storage.chunk_size"),
    ({"storage": {"access_key": None}}, "storage.access_key"),
    ({"storage": {"certificate_secret": "Bad"}}, "storage.certificate_secret"),
    ({"trivy": {"enabled": True, "reports_claim": "r"}}, "trivy.cache_claim"),
    ({"notary": {"enabled": True}}, "notary.host"),
    ({"replicas": {"trivy": 1}}, "replicas"),
    ({"replicas": {"core": -1}}, "replicas.core"),
    ({"replicas": {"core": "many"}}, "replicas.core"),
    ({"core_max_open_connections": -5}, "core_max_open_connections"),
    ({"labels": {"harborfleet.io/tenant": "other"}}, "labels"),
    ({"tenant": "Not_A_Tenant"}, "tenant"),
    ({"bucket_prefix": "UPPER"}, "bucket_prefix"),
    ({"admin_password": ""}, "admin_password"),
    ({"spec_overrides": ["not", "a", "dict"]}, "spec_overrides"),
])
def test_bad_input_is_refused_naming_the_field(overrides, field):
    with pytest.raises(TenantInputError) as err:
        k8s.HarborClusterSpec(params(**overrides))
    assert err.value.field == field


def test_url_safe_redis_password_error_mentions_the_operator_issue():
    with pytest.raises(TenantInputError, match="#1054"):
        k8s.HarborClusterSpec(params(cache={"password": "a:b"}))


def test_absent_needs_no_spec_options():
    spec = k8s.HarborClusterSpec({"tenant": "acme"}, state="absent", delete_namespace=True)
    assert (spec.namespace, spec.name, spec.delete_namespace) == ("harbor-acme", "acme", True)


def test_secrets_carry_the_operators_data_keys_and_types():
    spec = k8s.HarborClusterSpec(params())
    db = k8s.build_secret(spec.tenant, "database", "pw")
    assert db["metadata"] == {"name": "acme-database", "namespace": "harbor-acme", "labels": spec.labels}
    assert db["type"] == "goharbor.io/postgresql"
    assert {k: base64.b64decode(v).decode() for k, v in db["data"].items()} == {
        "postgres-password": "pw", "postgresql-password": "pw"}
    assert list(k8s.build_secret(spec.tenant, "cache", "x")["data"]) == ["redis-password"]
    assert k8s.build_secret(spec.tenant, "cache", "x")["type"] == "goharbor.io/redis"
    for purpose in ("admin", "storage"):
        secret = k8s.build_secret(spec.tenant, purpose, "x")
        assert (list(secret["data"]), secret["type"]) == (["secret"], "goharbor.io/single")
    assert k8s.build_secret(spec.tenant, "admin", "x", "Opaque")["type"] == "Opaque"
    assert k8s.build_namespace(spec.tenant) == {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": "harbor-acme", "labels": spec.labels}}


# --------------------------------------------------------------------------- CRD schema reading

def test_crd_schema_refuses_an_unserved_version(main_crd):
    doc = copy.deepcopy(main_crd)
    for version in doc["spec"]["versions"]:
        if version["name"] == "v1beta1":
            version["served"] = False
    with pytest.raises(FleetError, match="does not serve v1beta1"):
        k8s.CrdSchema(doc)


def test_crd_schema_knows_maps_and_lists(main_crd, rc1_crd):
    schema = k8s.CrdSchema(main_crd)
    assert schema.has(("spec", "core", "maxIdleConnections"))
    assert not k8s.CrdSchema(rc1_crd).has(("spec", "core", "maxIdleConnections"))
    obj = {"spec": {"expose": {"core": {"ingress": {"annotations": {"any/key": "v"}}}},
                    "database": {"spec": {"postgresql": {"hosts": [{"host": "h", "bogus": 1}]}}}}}
    assert schema.unknown_fields(obj) == [("spec", "database", "spec", "postgresql", "hosts", "bogus")]


# --------------------------------------------------------------------------- comparison

def applied(manifest, manager="harborfleet", defaults=None, extra_fields=None):
    """A live object as the apiserver returns it after an apply: defaults added, managedFields recorded."""
    live = copy.deepcopy(manifest)
    live["spec"] = k8s.deep_merge(defaults or {}, live["spec"])
    live["metadata"].update(uid="u1", resourceVersion="42", generation=3, creationTimestamp="2026-01-01T00:00:00Z")
    fields = to_fields(k8s._compared(manifest))
    for path in extra_fields or ():
        node = fields
        for key in path:
            node = node.setdefault("f:" + key, {})
    live["metadata"]["managedFields"] = [
        {"manager": manager, "operation": "Apply", "apiVersion": "goharbor.io/v1beta1", "fieldsType": "FieldsV1",
         "fieldsV1": fields},
        {"manager": "operator", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {".": {}}}}]
    live["status"] = cluster(3, 3)["status"]
    return live


def to_fields(obj):
    out = {}
    for key, value in obj.items():
        out["f:" + key] = to_fields(value) if isinstance(value, dict) and value else {}
    return out


SERVER_DEFAULTS = {"logLevel": "info", "updateStrategyType": "RollingUpdate",
                   "core": {"maxIdleConnections": 50, "maxOpenConnections": 1000},
                   "storage": {"spec": {"s3": {"secure": True, "v4auth": True, "storageclass": "STANDARD"}}}}


def test_live_object_with_defaults_and_noise_matches():
    manifest = build()
    live = applied(manifest, defaults=SERVER_DEFAULTS)
    assert k8s.is_subset(k8s._compared(manifest), live)
    assert k8s.pending_removals(live, manifest) == []
    assert k8s.matches(live, manifest)


def test_a_changed_value_or_list_does_not_match():
    manifest = build()
    live = applied(manifest)
    changed = build(version="2.6.5")
    assert not k8s.matches(live, changed)
    more_hosts = copy.deepcopy(live)
    more_hosts["spec"]["database"]["spec"]["postgresql"]["hosts"].append({"host": "second", "port": 1})
    assert not k8s.matches(more_hosts, manifest)  # lists are atomic
    assert not k8s.matches(None, manifest)


def test_a_field_we_set_earlier_and_no_longer_want_is_a_pending_removal():
    manifest = build(log_level="debug")
    live = applied(manifest, extra_fields=[("metadata", "labels", "plan")])
    live["metadata"]["labels"]["plan"] = "gold"
    without = build()
    assert k8s.pending_removals(live, without) == ["metadata.labels.plan", "spec.logLevel"]
    assert not k8s.matches(live, without)


def test_fields_owned_by_other_managers_are_not_ours_to_remove():
    manifest = build()
    live = applied(manifest, manager="someone-else")
    live["spec"]["logLevel"] = "debug"
    assert k8s.pending_removals(live, manifest) == []


def test_bools_and_numbers_compare_by_type():
    assert k8s.is_subset({"a": 1}, {"a": 1.0})
    assert not k8s.is_subset({"a": True}, {"a": 1})
    assert not k8s.is_subset({"a": "1"}, {"a": 1})
    assert k8s.is_subset({}, {"x": 1})


# --------------------------------------------------------------------------- readiness and waiting

def cluster(generation=2, observed=2, status="healthy", **conditions):
    base = {"InProgress": "False", "Failed": "False", "ServiceReady": "True", "CacheReady": "True"}
    base.update(conditions)
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "status": status,
                       "conditions": [{"type": t, "status": s, "reason": "R" + t, "message": "m " + t}
                                      for t, s in base.items() if s is not None]}}


@pytest.mark.parametrize("obj, ready, reason", [
    (cluster(), True, None),
    (cluster(InProgress=None, Failed=None), True, None),
    (cluster(observed=1), False, "observedGeneration 1 is not generation 2"),
    (cluster(status="provisioning"), False, "status is provisioning"),
    (cluster(status="unhealthy", Failed="True"), False, "Failed is True"),
    (cluster(InProgress="True"), False, "InProgress is True"),
    (cluster(ServiceReady="False"), False, "ServiceReady is False"),
    (cluster(ServiceReady=None), False, "ServiceReady is missing"),
    ({"metadata": {"generation": 1}}, False, "status is unknown"),
    ({"metadata": {"generation": 1, "deletionTimestamp": "x"}, "status": cluster(1, 1)["status"]}, False,
     "being deleted"),
])
def test_readiness_rule(obj, ready, reason):
    verdict = k8s.readiness(obj)
    assert verdict["ready"] is ready
    if reason:
        assert any(reason in r for r in verdict["reasons"]), verdict["reasons"]
    else:
        assert verdict["reasons"] == []


def test_conditions_are_formatted_with_status_reason_and_message():
    text = k8s.format_conditions(k8s.readiness(cluster(status="unhealthy", Failed="True"))["conditions"])
    assert "Failed=True (RFailed: m Failed)" in text and "ServiceReady=True" in text
    assert k8s.format_conditions([]) == "no conditions"


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_returns_when_done_and_backs_off():
    clock = FakeClock()
    values = iter([1, 2, 3, 4])
    done, value = k8s.poll(lambda: next(values), lambda v: v == 3, 60, clock=clock.clock, sleep=clock.sleep)
    assert (done, value) == (True, 3)
    assert clock.sleeps == [0.5, 0.75]


def test_poll_times_out_on_the_monotonic_clock():
    clock = FakeClock()
    done, value = k8s.poll(lambda: "x", lambda v: False, 5, clock=clock.clock, sleep=clock.sleep)
    assert (done, value) == (False, "x")
    assert clock.now == pytest.approx(105.0)
    assert max(clock.sleeps) <= 2.0


# --------------------------------------------------------------------------- API errors

class FakeApiException(Exception):
    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status = status
        self.reason = "reason"
        self.body = json.dumps(body).encode() if body is not None else None
        self.headers = headers or {}


def test_conflict_names_fields_and_managers():
    body = {"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409,
            "message": "Apply failed with 2 conflicts",
            "details": {"causes": [
                {"reason": "FieldManagerConflict", "message": 'conflict with "other-team"', "field": ".spec.logLevel"},
                {"reason": "FieldManagerConflict", "message": 'conflict with "other-team" using goharbor.io/v1beta1',
                 "field": ".spec.version"}]}}
    err = k8s.api_error(FakeApiException(409, body), "HarborCluster ns/acme")
    assert isinstance(err, k8s.ConflictError)
    assert "spec.logLevel, spec.version managed by 'other-team'" in str(err)
    assert "force_conflicts" in str(err) and str(err).startswith("HarborCluster ns/acme: ")


def test_invalid_reports_the_servers_message_and_odd_bodies_do_not_crash():
    body = {"kind": "Status", "code": 422, "reason": "Invalid",
            "message": 'HarborCluster.goharbor.io "acme" is invalid: spec.logLevel: Unsupported value: "verbose"'}
    err = k8s.api_error(FakeApiException(422, body), "HarborCluster ns/acme")
    assert err.status == 422 and 'spec.logLevel: Unsupported value: "verbose"' in str(err)
    assert "HTTP 500" in str(k8s.api_error(FakeApiException(500, None), "x"))
    odd = FakeApiException(502, None)
    odd.body = b"<html>bad gateway</html>"
    assert "HTTP 502" in str(k8s.api_error(odd, "x"))


class ScriptedApi:
    """Stands in for kubernetes' ApiClient.call_api: answers from a script, records the calls."""

    class Configuration:
        host = "https://127.0.0.1:1"

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []
        self.configuration = self.Configuration()

    def call_api(self, path, method, query_params=None, header_params=None, body=None, **_kwargs):
        self.calls.append((method, path, dict(query_params or []), header_params, body))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return type("Response", (), {"data": json.dumps(answer).encode()})()

    def close(self):
        pass


def test_client_retries_throttling_and_unavailable_then_reports(monkeypatch):
    monkeypatch.setattr(_k8s_client, "ApiException", FakeApiException)
    sleeps = []
    api = ScriptedApi([FakeApiException(429, {}, {"Retry-After": "1"}), FakeApiException(503, {}), {"ok": 1}])
    kube = k8s.KubeClient({}, api_client=api, sleep=sleeps.append)
    assert kube.request("GET", "/x", "get x") == {"ok": 1}
    assert sleeps == [1.0, 1.0]
    api = ScriptedApi([FakeApiException(500, {"message": "field not declared in schema"})])
    with pytest.raises(k8s.KubeApiError, match="field not declared"):
        k8s.KubeClient({}, api_client=api, sleep=sleeps.append).request("GET", "/x", "get x")
    assert len(api.calls) == 1  # a 500 is not transient


def test_apply_is_a_server_side_apply_with_our_field_manager(monkeypatch):
    monkeypatch.setattr(_k8s_client, "ApiException", FakeApiException)
    api = ScriptedApi([{}, {}])
    kube = k8s.KubeClient({}, api_client=api)
    manifest = build()
    kube.apply(manifest)
    kube.apply(manifest, force=True, dry_run=True)
    method, path, query, headers, body = api.calls[0]
    assert (method, path) == ("PATCH", "/apis/goharbor.io/v1beta1/namespaces/harbor-acme/harborclusters/acme")
    assert query == {"fieldManager": "harborfleet", "fieldValidation": "Strict"}
    assert headers["Content-Type"] == "application/apply-patch+yaml" and body == manifest
    assert api.calls[1][2] == {"fieldManager": "harborfleet", "fieldValidation": "Strict", "force": "true",
                               "dryRun": "All"}


def test_list_follows_continue_tokens(monkeypatch):
    monkeypatch.setattr(_k8s_client, "ApiException", FakeApiException)
    api = ScriptedApi([{"items": [1, 2], "metadata": {"continue": "t"}}, {"items": [3], "metadata": {}}])
    assert k8s.KubeClient({}, api_client=api).list("/api/v1/secrets", "list", "a=b") == [1, 2, 3]
    assert api.calls[1][2] == {"limit": 500, "labelSelector": "a=b", "continue": "t"}


# --------------------------------------------------------------------------- the backend over a fake client

class FakeKube:
    """An in-memory API server for the backend: objects by path, applies recorded."""

    def __init__(self, crd, objects=()):
        self.crd = crd
        self.objects = {}
        self.applied = []
        self.dry_runs = []
        self.deleted = []
        self.gets = []
        self.lists = []
        self.fail_dry_run = None
        for obj in objects:
            self.objects[k8s.object_path(obj)] = obj

    def get(self, path, what):
        self.gets.append(path)
        if path.endswith(k8s.CRD_NAME):
            return self.crd
        return self.objects.get(path)

    def list_across(self, api_version, kind, what, label_selector=None, namespaces=None, unreadable=None):
        return self.list(_k8s_client.collection_path(api_version, kind), what, label_selector)

    def grant_tenant_role(self, namespace):
        self.granted = getattr(self, "granted", []) + [namespace]
        return False

    def list(self, path, what, label_selector=None):
        self.lists.append((path, label_selector))
        kind = {"/api/v1/namespaces": "Namespace", "/api/v1/secrets": "Secret"}.get(path, k8s.KIND)
        return [obj for obj in self.objects.values() if obj["kind"] == kind]

    def apply(self, manifest, force=False, dry_run=False):
        if dry_run:
            self.dry_runs.append((manifest, force))
            if self.fail_dry_run:
                raise self.fail_dry_run
            return manifest
        self.applied.append(manifest)
        self.objects[k8s.object_path(manifest)] = applied(manifest) if manifest["kind"] == k8s.KIND else \
            copy.deepcopy(dict(manifest, metadata=dict(manifest["metadata"], managedFields=[
                {"manager": "harborfleet", "operation": "Apply", "fieldsV1": to_fields(k8s._compared(manifest))}])))
        return manifest

    def delete(self, path, what):
        self.deleted.append(path)
        self.objects.pop(path, None)


def converge(kube, specs, check_mode=False, **kwargs):
    backend = k8s.HarborClusterBackend(kube, check_mode=check_mode, **kwargs)
    state = backend.read(specs)
    plans = []
    for spec in specs:
        try:
            plans.append(backend.plan(spec, state[spec.key]))
        except (FleetError, TenantInputError) as exc:
            plans.append(exc)
    if not check_mode:
        for plan in plans:
            if not isinstance(plan, Exception):
                for change in plan.changes:
                    change.apply(None)
    return backend, plans


def test_new_tenant_then_no_op(main_crd):
    kube = FakeKube(main_crd)
    spec = k8s.HarborClusterSpec(params())
    _backend, [plan] = converge(kube, [spec])
    assert plan.changes and [c.action for c in plan.changes] == [
        "create namespace harbor-acme", "create Secret harbor-acme/acme-database",
        "create Secret harbor-acme/acme-cache", "create Secret harbor-acme/acme-admin (generated password)",
        "create Secret harbor-acme/acme-storage", "create HarborCluster harbor-acme/acme"]
    assert plan.result["secrets"] == {"database": "created", "cache": "created", "admin": "created",
                                      "storage": "created"}
    assert plan.after["secrets"]["acme-database"] == {"postgres-password": "created", "postgresql-password": "created"}
    for value in ("dbpass", "redispass", "s3secret", b64("dbpass")):
        assert value not in json.dumps([plan.before, plan.after, plan.as_result()])
    # second run: nothing to do, no false change from managedFields/resourceVersion/defaults
    _backend, [again] = converge(kube, [k8s.HarborClusterSpec(params())])
    assert again.changes == [] and again.result["secrets"]["admin"] == "unchanged"
    assert again.result["ready"] is True and again.result["status"] == "healthy"


def b64(value):
    return base64.b64encode(value.encode()).decode()


def test_one_list_per_kind_and_one_crd_read_for_a_fleet(main_crd):
    kube = FakeKube(main_crd)
    specs = [k8s.HarborClusterSpec(params(tenant=f"t{i}")) for i in range(30)]
    converge(kube, specs)
    kube.gets.clear()
    kube.lists.clear()
    _backend, plans = converge(kube, [k8s.HarborClusterSpec(params(tenant=f"t{i}")) for i in range(30)])
    assert all(plan.changes == [] for plan in plans)
    assert kube.gets == [f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{k8s.CRD_NAME}"]
    assert [path for path, _selector in kube.lists] == [
        "/api/v1/namespaces", "/api/v1/secrets", "/apis/goharbor.io/v1beta1/harborclusters"]
    assert kube.lists[0][1].startswith("harborfleet.io/tenant in (t0,t1,")


def test_a_password_change_updates_only_that_secret(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    _backend, [plan] = converge(kube, [k8s.HarborClusterSpec(params(database={"password": "new"}))])
    assert [c.action for c in plan.changes] == ["update Secret harbor-acme/acme-database"]
    assert plan.result["secrets"]["database"] == "changed"
    assert plan.before["secrets"]["acme-database"] == {"postgres-password": "(previous value)",
                                                       "postgresql-password": "(previous value)"}
    assert plan.after["secrets"]["acme-database"] == {"postgres-password": "changed", "postgresql-password": "changed"}


def test_existing_secrets_are_kept_when_no_value_is_given(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    _backend, [plan] = converge(kube, [k8s.HarborClusterSpec(params(database={"password": None},
                                                             cache={"password": None},
                                                             storage={"secret_key": None}))])
    assert plan.changes == []
    assert set(plan.result["secrets"].values()) == {"unchanged"}


def test_a_missing_secret_without_a_value_is_an_error_naming_the_option(main_crd):
    kube = FakeKube(main_crd)
    _backend, [err] = converge(kube, [k8s.HarborClusterSpec(params(cache={"password": None}))])
    assert isinstance(err, TenantInputError) and err.field == "cache.password"
    assert "required to create Secret harbor-acme/acme-cache" in str(err)


def test_an_option_change_updates_the_cluster_and_a_removed_option_is_removed(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params(log_level="debug"))])
    _backend, [plan] = converge(kube, [k8s.HarborClusterSpec(params())])
    assert [c.action for c in plan.changes] == ["update HarborCluster harbor-acme/acme"]
    assert plan.result["removed_fields"] == ["spec.logLevel"]
    assert "logLevel" in plan.before["cluster"]["spec"] and "logLevel" not in plan.after["cluster"]["spec"]


def test_check_mode_dry_runs_only_changing_clusters_and_reports_server_errors(main_crd):
    kube = FakeKube(main_crd)
    backend, [plan] = converge(kube, [k8s.HarborClusterSpec(params())], check_mode=True)
    # a new tenant: its namespace does not exist, and nothing is sent outside it (not even a dry run)
    assert kube.applied == [] and kube.dry_runs == []
    assert plan.result["validation"].startswith("checked against the installed harborclusters.goharbor.io schema")
    assert plan.changes
    _backend, [err] = converge(kube, [k8s.HarborClusterSpec(params(spec_overrides={
        "logLevel": "verbose", "core": {"replicas": -1}}))], check_mode=True)
    assert isinstance(err, tuple) or isinstance(err, Exception), err
    message = str(err[1] if isinstance(err, tuple) else err)
    assert 'spec.logLevel: Unsupported value: "verbose"' in message
    assert "spec.core.replicas in body should be greater than or equal to 0" in message
    assert kube.dry_runs == []
    converge(kube, [k8s.HarborClusterSpec(params())])
    kube.dry_runs.clear()
    converge(kube, [k8s.HarborClusterSpec(params())], check_mode=True)
    assert kube.dry_runs == []  # unchanged tenants are not sent
    kube.fail_dry_run = k8s.KubeApiError("HarborCluster harbor-acme/acme", 422, "spec.logLevel: Unsupported value")
    _backend, [err] = converge(kube, [k8s.HarborClusterSpec(params(spec_overrides={"logLevel": "verbose"}))],
                               check_mode=True, force_conflicts=True)
    assert isinstance(err, k8s.KubeApiError) and "Unsupported value" in str(err)
    assert kube.dry_runs[-1][1] is True  # force is part of the dry run too
    assert backend.timings["read"] >= 0


def test_dropped_fields_warn_once_for_the_fleet(rc1_crd):
    warnings = []
    kube = FakeKube(rc1_crd)
    specs = [k8s.HarborClusterSpec(params(tenant=f"t{i}", core_max_idle_connections=5)) for i in range(3)]
    _backend, plans = converge(kube, specs, warn=warnings.append)
    assert len(warnings) == 1 and "left out for 3 tenant(s)" in warnings[0]
    assert all(p.result["dropped_fields"] == ["spec.core.maxIdleConnections"] for p in plans)
    assert "maxIdleConnections" not in kube.applied[-1]["spec"]["core"]


def test_a_cluster_being_deleted_is_an_error(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    live = kube.objects[k8s.cluster_path("harbor-acme", "acme")]
    live["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["x/y"])
    _backend, [err] = converge(kube, [k8s.HarborClusterSpec(params())])
    assert isinstance(err, FleetError) and "being deleted (finalizers: x/y)" in str(err)


def test_absent_deletes_the_cluster_and_only_on_request_the_namespace(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    absent = k8s.HarborClusterSpec({"tenant": "acme"}, state="absent")
    _backend, [plan] = converge(kube, [absent], check_mode=True)
    assert [c.action for c in plan.changes] == ["delete HarborCluster harbor-acme/acme"] and kube.deleted == []
    _backend, [plan] = converge(kube, [absent])
    assert kube.deleted == ["/apis/goharbor.io/v1beta1/namespaces/harbor-acme/harborclusters/acme"]
    assert "/api/v1/namespaces/harbor-acme" in kube.objects
    _backend, [plan] = converge(kube, [k8s.HarborClusterSpec({"tenant": "acme"}, "absent", delete_namespace=True)])
    assert [c.action for c in plan.changes] == ["delete namespace harbor-acme"]
    assert kube.deleted[-1] == "/api/v1/namespaces/harbor-acme"
    _backend, [plan] = converge(kube, [absent])
    assert plan.changes == []


def test_absent_deletes_nothing_the_collection_did_not_label_as_its_own(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    live = kube.objects[k8s.cluster_path("harbor-acme", "acme")]
    live["metadata"]["labels"] = {"app": "someone-elses"}
    absent = k8s.HarborClusterSpec({"tenant": "acme"}, "absent", delete_namespace=True)
    _backend, [err] = converge(kube, [absent])
    assert isinstance(err, FleetError) and "HarborCluster harbor-acme/acme" in str(err)
    assert "app.kubernetes.io/managed-by=harborfleet" in str(err) and kube.deleted == []
    live["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "harborfleet", "harborfleet.io/tenant": "acme"}
    _backend, [plan] = converge(kube, [absent])
    assert len(kube.deleted) == 2


def test_finalize_waits_for_the_readiness_rule_and_reports_conditions(main_crd, monkeypatch):
    kube = FakeKube(main_crd)
    backend, [plan] = converge(kube, [k8s.HarborClusterSpec(params())], wait=True, wait_timeout=3)
    live = kube.objects[k8s.cluster_path("harbor-acme", "acme")]
    live["status"] = cluster(3, 3, "unhealthy", Failed="True", DatabaseReady="False")["status"]
    monkeypatch.setattr(_harbor_cluster.time, "sleep", lambda s: None)
    clock = FakeClock()
    monkeypatch.setattr(k8s, "poll", lambda f, d, t: real_poll(f, d, t, clock=clock.clock, sleep=clock.sleep))
    with pytest.raises(FleetError) as err:
        backend.finalize(plan, None)
    text = str(err.value)
    assert "is not ready after 3s: status unhealthy" in text and "DatabaseReady=False (RDatabaseReady" in text
    live["status"] = cluster(3, 3)["status"]
    backend.finalize(plan, None)
    assert plan.result["ready"] is True and plan.result["status"] == "healthy"


real_poll = k8s.poll


# --------------------------------------------------------------------------- info and list-form helpers

def test_summary_and_fleet_counts():
    manifest = build(harbor_class="gold")
    live = applied(manifest)
    live["status"] = cluster(3, 3)["status"]
    other = applied(build(tenant="beta", version="2.6.3"))
    other["status"] = cluster(3, 3, "unhealthy", Failed="True")["status"]
    fresh = applied(build(tenant="gamma"))
    del fresh["status"]
    summaries = [k8s.summarize_cluster(obj) for obj in (live, other, fresh)]
    first = summaries[0]
    assert (first["tenant"], first["namespace"], first["version"], first["status"], first["ready"]) == \
        ("acme", "harbor-acme", "2.6.4", "healthy", True)
    assert first["harbor_class"] == "gold"
    assert first["spec"]["database"] == {"kind": "PostgreSQL", "host": "db.internal", "port": 5432,
                                         "username": "harbor_acme", "prefix": "acme_", "ssl_mode": "disable"}
    assert first["spec"]["components"] == {"trivy": False, "notary": False, "chartmuseum": False}
    assert k8s.fleet_counts(summaries) == {"total": 3, "ready": 1,
                                           "by_status": {"healthy": 1, "unhealthy": 1, "unknown": 1},
                                           "by_version": {"2.6.4": 2, "2.6.3": 1}}


def test_list_items_merge_dict_options_with_top_level_defaults():
    top = {"database": {"host": "db", "port": 5432, "password": None}, "spec_overrides": {"a": {"b": 1, "c": 2}},
           "labels": {"x": "1"},
           "tenants": [{"tenant": "a", "database": {"host": None, "port": 6432, "password": "p"},
                        "spec_overrides": {"a": {"c": 3}}, "labels": None}]}
    items = [{"tenant": "a", "database": top["tenants"][0]["database"], "spec_overrides": {"a": {"c": 3}},
              "labels": {"x": "1"}}]
    merged = k8s.merge_tenant_items(items, top, ("database", "labels"), ("spec_overrides",))
    assert merged[0]["database"] == {"host": "db", "port": 6432, "password": "p"}
    assert merged[0]["spec_overrides"] == {"a": {"b": 1, "c": 3}}
    assert merged[0]["labels"] == {"x": "1"}
    single = [{"tenant": "a"}]
    assert k8s.merge_tenant_items(single, {"tenants": None}, ("database",)) is single


def test_passwords_in_dict_options_are_per_tenant_only():
    with pytest.raises(TenantInputError) as err:
        k8s.refuse_shared_secrets({"tenants": [{}], "database": {"password": "x"}}, (("database", "password"),))
    assert err.value.field == "database.password"
    k8s.refuse_shared_secrets({"tenants": None, "database": {"password": "x"}}, (("database", "password"),))
    k8s.refuse_shared_secrets({"tenants": [{}], "database": {"host": "h", "password": None}},
                              (("database", "password"),))


def test_tenant_selector_narrows_small_runs():
    assert k8s.tenant_selector(["b", "a"]) == "harborfleet.io/tenant in (a,b)"
    assert k8s.tenant_selector([f"t{i}" for i in range(k8s.SMALL_RUN + 1)]) == "app.kubernetes.io/managed-by=harborfleet"


def test_a_terminating_namespace_is_an_error(main_crd):
    kube = FakeKube(main_crd)
    converge(kube, [k8s.HarborClusterSpec(params())])
    kube.objects["/api/v1/namespaces/harbor-acme"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    _backend, [err] = converge(kube, [k8s.HarborClusterSpec(params())])
    assert isinstance(err, FleetError) and "namespace harbor-acme is being deleted (Terminating)" in str(err)


def test_unset_connection_options_come_from_the_k8s_auth_environment():
    env = {"K8S_AUTH_HOST": "https://api.example:6443", "K8S_AUTH_API_KEY": "token", "K8S_AUTH_VERIFY_SSL": "no",
           "K8S_AUTH_SSL_CA_CERT": "/ca.pem", "K8S_AUTH_KUBECONFIG": "", "K8S_AUTH_CONTEXT": "ctx"}
    got = k8s.with_environment({"kubeconfig": None, "context": "mine", "host": None, "api_key": None,
                                "ca_cert": None, "validate_certs": None}, env)
    assert got == {"kubeconfig": None, "context": "mine", "host": "https://api.example:6443", "api_key": "token",
                   "ca_cert": "/ca.pem", "validate_certs": False}
    assert k8s.with_environment({"validate_certs": True}, {"K8S_AUTH_VERIFY_SSL": "false"})["validate_certs"] is True


def test_a_task_naming_its_cluster_takes_nothing_from_the_environment():
    """A fleet's clusters each have their own connection: one injected for another cluster never redirects."""
    env = {"K8S_AUTH_HOST": "https://other:6443", "K8S_AUTH_API_KEY": "other-token", "K8S_AUTH_CONTEXT": "other"}
    assert k8s.with_environment({"kubeconfig": "/eu.kubeconfig", "host": None, "context": None}, env) == \
        {"kubeconfig": "/eu.kubeconfig", "host": None, "context": None}
    assert k8s.with_environment({"host": "https://eu:6443", "api_key": None}, env) == \
        {"host": "https://eu:6443", "api_key": None}


@pytest.mark.parametrize("overrides, path", [
    ({"database": {"spec": {"postgresql": {"prefix": "other_"}}}}, "spec.database.spec.postgresql.prefix"),
    ({"storage": {"spec": {"s3": {"regionendpoint": "https://elsewhere"}}}}, "spec.storage.spec.s3.regionendpoint"),
    ({"harborAdminPasswordRef": "b-admin"}, "spec.harborAdminPasswordRef"),
    ({"externalURL": "https://b.example.test"}, "spec.externalURL"),
    ({"expose": {"notary": {"ingress": {"host": "notary.b.example.test"}}}}, "spec.expose.notary.ingress.host"),
])
def test_spec_overrides_may_not_touch_what_the_tenant_model_owns(overrides, path):
    with pytest.raises(TenantInputError) as err:
        k8s.HarborClusterSpec(params(spec_overrides=overrides))
    assert err.value.field == "spec_overrides" and f"{path} is set by the fleet" in str(err.value)


class ReviewingApi:
    """Answers a KubeClient's raw requests like an API server with RBAC: SelfSubjectAccessReviews from ``allowed``,
    a SelfSubjectReview, namespace and per-namespace lists, and RoleBinding creates."""

    def __init__(self, allowed):
        self.allowed = allowed
        self.requests = []

    def __call__(self, method, path, what, query=None, body=None, content_type="application/json"):
        self.requests.append((method, path))
        if path.endswith("/selfsubjectaccessreviews"):
            attrs = body["spec"]["resourceAttributes"]
            return {"status": {"allowed": (attrs["verb"], attrs["resource"]) in self.allowed}}
        if path.endswith("/selfsubjectreviews"):
            return {"status": {"userInfo": {"username": "system:serviceaccount:ops:harborfleet"}}}
        if path == "/api/v1/namespaces":
            return {"items": [{"metadata": {"name": "harbor-a"}}, {"metadata": {"name": "harbor-b"}}]}
        if method == "GET":
            found = _k8s_client.NAMESPACE_PATH_RE.match(path)
            return {"items": [{"metadata": {"name": "x", "namespace": found.group(1) if found else "any"}}]}
        if method == "POST" and path.endswith("/rolebindings"):
            self.bindings = getattr(self, "bindings", []) + [body]
            return body
        raise AssertionError(path)


def reviewing_client(allowed):
    kube = _k8s_client.KubeClient({}, api_client=types.SimpleNamespace(configuration=None))
    api = ReviewingApi(allowed)
    kube.request = api
    return kube, api


def test_secrets_are_read_cluster_wide_only_by_an_identity_allowed_to():
    kube, api = reviewing_client({("list", "secrets")})
    kube.list_across("v1", "Secret", "list secrets", "t in (a)", ["harbor-a"])
    assert [path for _m, path in api.requests] == ["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                                   "/api/v1/secrets"]
    kube, api = reviewing_client(set())
    items = kube.list_across("v1", "Secret", "list secrets", "t in (a,b)", ["harbor-b", "harbor-a"])
    assert sorted(i["metadata"]["namespace"] for i in items) == ["harbor-a", "harbor-b"]
    assert "/api/v1/secrets" not in [path for _m, path in api.requests]
    assert {"/api/v1/namespaces/harbor-a/secrets", "/api/v1/namespaces/harbor-b/secrets"} <= {
        path for _m, path in api.requests}
    kube.list_across("goharbor.io/v1beta1", "HarborCluster", "list", "t in (a,b)")  # namespaces from their labels
    assert "/apis/goharbor.io/v1beta1/namespaces/harbor-b/harborclusters" in [path for _m, path in api.requests]


def test_a_new_namespace_binds_the_tenant_role_only_for_an_identity_without_cluster_wide_secrets():
    kube, api = reviewing_client({("create", "secrets")})
    assert kube.grant_tenant_role("harbor-a") is False and not hasattr(api, "bindings")
    kube, api = reviewing_client(set())
    assert kube.grant_tenant_role("harbor-a") is True
    (binding,) = api.bindings
    assert binding["metadata"]["namespace"] == "harbor-a" and binding["roleRef"]["name"] == "harborfleet-tenant"
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": "system:serviceaccount:ops:harborfleet"}]


def test_a_refusal_right_after_binding_is_retried_while_the_binding_settles():
    calls = []

    class Api:
        configuration = types.SimpleNamespace(host="https://k8s")

        def call_api(self, path, method, **_kwargs):
            calls.append(path)
            if len(calls) <= 6 or "harbor-b" in path:
                raise _k8s_client.ApiException(status=403, reason="Forbidden")
            return types.SimpleNamespace(data=b'{"items": []}')

    kube = _k8s_client.KubeClient({}, api_client=Api(), sleep=lambda _s: None)
    kube.bound["harbor-a"] = __import__("time").monotonic()
    assert kube.request("GET", "/api/v1/namespaces/harbor-a/secrets", "list") == {"items": []}
    assert len(calls) == 7
    with pytest.raises(_k8s_client.KubeApiError, match="ClusterRole harborfleet-tenant"):
        kube.request("GET", "/api/v1/namespaces/harbor-b/secrets", "list")  # not bound by this run: no retry


# --------------------------------------------------------------------------- TLS to PostgreSQL: the CA Harbor trusts

def _ca_file(tmp_path, name="ca.crt"):
    body = base64.b64encode(os.urandom(300)).decode()
    text = "-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) \
        + "\n-----END CERTIFICATE-----\n"
    path = tmp_path / name
    path.write_text("subject=CN=lab\n" + text)
    return path, text


def test_a_database_ca_goes_to_a_trust_secret_that_the_database_clients_reference(tmp_path):
    path, pem = _ca_file(tmp_path)
    spec = k8s.HarborClusterSpec(params(database={"ca_cert": str(path), "ssl_mode": None},
                                        spec_overrides={"core": {"certificateRefs": ["oidc-ca"]}}))
    assert spec.secret_purposes[-1] == "trust" and spec.passwords["trust"] == pem  # only the certificate
    s = k8s.build_cluster(spec)[0]["spec"]
    assert s["database"]["spec"]["postgresql"]["sslMode"] == "verify-full"
    assert s["core"]["certificateRefs"] == ["oidc-ca", "acme-trust"]  # added to what the overrides give
    assert s["jobservice"]["certificateRefs"] == ["acme-trust"]
    secret = _tenant_secrets.build_secret(spec.tenant, "trust", pem)
    assert secret["metadata"]["name"] == "acme-trust" and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["ca.crt"]).decode() == pem
    assert "certificateRefs" not in build().get("core", {})  # no CA, nothing to trust


@pytest.mark.parametrize("content, reason", [(None, "cannot read"), ("not a certificate\n", "no PEM certificate")])
def test_a_database_ca_that_is_not_a_certificate_is_refused_naming_the_field(tmp_path, content, reason):
    path = tmp_path / "ca.crt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TenantInputError, match=f"database.ca_cert.*{reason}"):
        k8s.HarborClusterSpec(params(database={"ca_cert": str(path)}))


def test_an_unknown_ssl_mode_is_refused_naming_the_field():
    with pytest.raises(TenantInputError, match="database.ssl_mode"):
        k8s.HarborClusterSpec(params(database={"ssl_mode": "sometimes"}))


def test_the_stores_cas_share_one_trust_secret_and_the_registry_trusts_the_s3_one(tmp_path):
    db_ca, db_pem = _ca_file(tmp_path, "db.crt")
    s3_ca, s3_pem = _ca_file(tmp_path, "s3.crt")
    spec = k8s.HarborClusterSpec(params(database={"ca_cert": str(db_ca)}, storage={"ca_cert": str(s3_ca)}))
    assert spec.passwords["trust"] == db_pem.strip() + "\n" + s3_pem  # each certificate once, both stores'
    s = k8s.build_cluster(spec)[0]["spec"]
    assert s["registry"]["certificateRefs"] == s["core"]["certificateRefs"] == ["acme-trust"]
    assert "ca_cert" not in s["storage"]["spec"]["s3"]
    same = k8s.HarborClusterSpec(params(database={"ca_cert": str(db_ca)}, storage={"ca_cert": str(db_ca)}))
    assert same.passwords["trust"] == db_pem  # one CA for both stores: written once
    only_s3 = k8s.build_cluster(k8s.HarborClusterSpec(params(storage={"ca_cert": str(s3_ca)})))[0]["spec"]
    assert only_s3["registry"]["certificateRefs"] == ["acme-trust"] and "certificateRefs" not in only_s3["core"]
