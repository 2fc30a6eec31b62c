"""harbor_cluster and harbor_cluster_info against the lab: a real kube-apiserver with the goharbor CRDs, the lab's
stand-in reconciler writing status, and a real PostgreSQL database, Redis master behind the sentinels and S3 bucket
for the tenants that must become healthy."""
import json

import pytest

from conftest import pg_connect, wait_for

GROUP, VERSION, PLURAL = "goharbor.io", "v1beta1", "harborclusters"


# --------------------------------------------------------------------------- helpers and fixtures

def slug(tenant):
    return tenant.replace("-", "_")


class Dependencies:
    """A tenant's real PostgreSQL login + <prefix>core, Redis master monitored by the sentinels, and S3 bucket."""

    def __init__(self, lab, lab_env, sentinel_addresses, s3_admin, name):
        self.lab, self.env, self.s3 = lab, lab_env, s3_admin
        self.sentinels = sentinel_addresses
        self.name = name
        self.role = f"harbor_{slug(name)}"
        self.prefix = f"{slug(name)}_"
        self.db_password = lab.url_safe_password()
        self.redis_password = lab.url_safe_password()
        self.master_set = f"harbor-{name}"
        self.bucket = f"harbor-{name}"
        self.started = []

    def __enter__(self):
        import redis
        from psycopg2 import sql
        conn = pg_connect(self.env)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(self.role)),
                        [self.db_password])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.prefix + "core"),
                                                                      sql.Identifier(self.role)))
        conn.close()
        self.started.append("pg")
        master = self.lab.redis_tenant_start(self.master_set, self.redis_password, replicas=0)["instances"][0]
        self.started.append("redis")
        for host, port in self.sentinels:
            client = redis.Redis(host=host, port=port, password=self.env["LAB_SENTINEL_PASSWORD"])
            client.execute_command("SENTINEL", "MONITOR", self.master_set, master["host"], master["port"], 2)
            client.execute_command("SENTINEL", "SET", self.master_set, "auth-pass", self.redis_password)
            client.close()
        self.s3.create_bucket(Bucket=self.bucket)
        self.started.append("s3")
        return self

    def __exit__(self, *_exc):
        import redis
        from psycopg2 import sql
        if "s3" in self.started:
            self.s3.delete_bucket(Bucket=self.bucket)
        if "redis" in self.started:
            for host, port in self.sentinels:
                client = redis.Redis(host=host, port=port, password=self.env["LAB_SENTINEL_PASSWORD"])
                try:
                    client.execute_command("SENTINEL", "REMOVE", self.master_set)
                except redis.ResponseError:
                    pass
                client.close()
            self.lab.redis_tenant_stop(self.master_set)
        if "pg" in self.started:
            conn = pg_connect(self.env)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.prefix + "core")))
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))
            conn.close()


class Kube:
    """Direct API access for assertions and clean-up (the modules under test are run through ansible)."""

    def __init__(self, api_client):
        from kubernetes import client
        self.client = client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.api = api_client

    def cluster(self, tenant):
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, f"harbor-{tenant}", PLURAL, tenant)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def namespace(self, tenant):
        try:
            return self.core.read_namespace(f"harbor-{tenant}")
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply_as(self, manager, tenant, spec, force=True):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HarborCluster",
                "metadata": {"name": tenant, "namespace": f"harbor-{tenant}"}, "spec": spec}
        query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
        self.api.call_api(f"/apis/{GROUP}/{VERSION}/namespaces/harbor-{tenant}/{PLURAL}/{tenant}", "PATCH",
                          query_params=query, body=body, auth_settings=["BearerToken"],
                          header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                          _preload_content=False, _return_http_data_only=True)

    def set_finalizers(self, tenant, finalizers):
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, f"harbor-{tenant}", PLURAL, tenant,
                                                   {"metadata": {"finalizers": finalizers}},
                                                   _content_type="application/merge-patch+json")

    def remove_tenant(self, tenant):
        """Best-effort clean-up: finalizers, cluster, Secrets, namespace (which stays Terminating in the lab)."""
        namespace = f"harbor-{tenant}"
        try:
            if self.cluster(tenant) is not None:
                self.set_finalizers(tenant, None)
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, tenant)
        except self.client.ApiException:
            pass
        try:
            self.core.delete_collection_namespaced_secret(namespace, label_selector=f"harborfleet.io/tenant={tenant}")
            if self.namespace(tenant) is not None:
                self.core.delete_namespace(namespace)
        except self.client.ApiException:
            pass


@pytest.fixture(scope="module")
def kube(kube_client):
    return Kube(kube_client)


@pytest.fixture
def cleanup(kube):
    """Tenants registered here are removed after the test, whatever happened."""
    tenants = []
    yield tenants.append
    for tenant in tenants:
        kube.remove_tenant(tenant)


@pytest.fixture
def deps(lab, lab_env, sentinel_addresses, s3_admin, unique):
    with Dependencies(lab, lab_env, sentinel_addresses, s3_admin, f"hc-{unique}") as found:
        yield found


def cluster_args(lab_env, tenant, dependencies=None, **extra):
    """Module arguments for a tenant; with ``dependencies`` it is wired to them and can become healthy."""
    args = {
        "kubeconfig": lab_env["LAB_KUBECONFIG"],
        "tenant": tenant,
        "version": "2.6.4",
        "expose": {"host": "{tenant}.registry.example.test", "tls_secret": "{tenant}-tls"},
        "token_issuer": {"name": "harbor-issuer"},
        "database": {"host": lab_env["LAB_PG_HOST"], "port": int(lab_env["LAB_PG_PORT"]),
                     "ca_cert": lab_env["LAB_CA_CERT"],  # TLS: verify-full by default
                     "password": dependencies.db_password if dependencies else "not-a-real-password"},
        "cache": {"host": lab_env["LAB_SENTINELS"].split(",")[0].split(":")[0],
                  "port": int(lab_env["LAB_SENTINELS"].split(",")[0].split(":")[1]),
                  "password": dependencies.redis_password if dependencies else "notARealPassword"},
        "storage": {"region": lab_env["LAB_S3_REGION"], "endpoint": lab_env["LAB_S3_ENDPOINT"],
                    "access_key": lab_env["LAB_S3_ACCESS_KEY"], "secret_key": lab_env["LAB_S3_SECRET_KEY"],
                    "ca_cert": lab_env["LAB_CA_CERT"]},  # https
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(args.get(key), dict):
            args[key] = dict(args[key], **value)
        else:
            args[key] = value
    return args


# --------------------------------------------------------------------------- create → healthy → idempotent

def test_create_check_mode_then_healthy_then_unchanged(run_module, lab_env, kube, deps, cleanup):
    tenant = deps.name
    cleanup(tenant)
    args = cluster_args(lab_env, tenant, deps, admin_password="AdminPassw0rd", log_level="info")

    check = run_module("harbor_cluster", args, check=True, diff=True)
    assert check["changed"] is True and not check.get("failed"), check
    assert check["validation"].startswith("checked against the installed harborclusters.goharbor.io schema")
    assert "create HarborCluster harbor-{0}/{0}".format(tenant) in check["actions"]
    assert kube.namespace(tenant) is None and kube.cluster(tenant) is None  # nothing written
    assert check["diff"]["after"]["secrets"][f"{tenant}-database"] == {"postgres-password": "created",
                                                                       "postgresql-password": "created"}

    created = run_module("harbor_cluster", dict(args, wait=True, wait_timeout=60))
    assert created["changed"] is True and not created.get("failed"), created
    assert created["status"] == "healthy" and created["ready"] is True
    assert {c["type"]: c["status"] for c in created["conditions"]} == {
        "DatabaseReady": "True", "CacheReady": "True", "StorageReady": "True", "ServiceReady": "True",
        "InProgress": "False", "Failed": "False"}
    live = kube.cluster(tenant)
    assert live["metadata"]["labels"]["harborfleet.io/tenant"] == tenant
    assert live["spec"]["database"]["spec"]["postgresql"]["prefix"] == deps.prefix
    assert kube.namespace(tenant).metadata.labels["harborfleet.io/tenant"] == tenant
    secret = kube.core.read_namespaced_secret(f"{tenant}-database", f"harbor-{tenant}")
    assert secret.type == "goharbor.io/postgresql"
    assert set(secret.data) == {"postgres-password", "postgresql-password"}

    again = run_module("harbor_cluster", dict(args, wait=True))
    assert again["changed"] is False and again["actions"] == [], again
    assert again["ready"] is True
    check_again = run_module("harbor_cluster", args, check=True, diff=True)
    assert check_again["changed"] is False and "validation" not in check_again
    assert kube.cluster(tenant)["metadata"]["generation"] == live["metadata"]["generation"]

    info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenant": tenant})
    assert info["cluster"]["ready"] is True and info["cluster"]["status"] == "healthy"
    assert info["cluster"]["spec"]["cache"]["master_set"] == deps.master_set
    assert info["counts"] == {"total": 1, "ready": 1, "by_status": {"healthy": 1}, "by_version": {"2.6.4": 1}}

    # no secret anywhere in the output, even at -vvvv with --diff
    rc, text = run_module("harbor_cluster", dict(args, database=dict(args["database"], password="Chang3dPassw0rd")),
                          check=True, diff=True, verbosity=4, raw=True)
    assert rc == 0, text
    for value in (deps.db_password, "Chang3dPassw0rd", deps.redis_password, lab_env["LAB_S3_SECRET_KEY"],
                  "AdminPassw0rd"):
        assert value not in text
    assert '"postgres-password": "changed"' in text


def test_wrong_database_password_makes_wait_fail_with_the_reason(run_module, lab_env, kube, deps, cleanup):
    tenant = deps.name
    cleanup(tenant)
    args = cluster_args(lab_env, tenant, deps, database={"password": "wrongPassword1"}, wait=True, wait_timeout=6)
    result = run_module("harbor_cluster", args)
    assert result.get("failed") is True, result
    msg = result["msg"]
    assert f"HarborCluster harbor-{tenant}/{tenant} is not ready after 6s: status unhealthy" in msg
    assert "DatabaseReady=False (AuthenticationFailed" in msg and "password authentication failed" in msg
    assert "CacheReady=True" in msg and "StorageReady=True" in msg
    assert "wrongPassword1" not in json.dumps(result)


def test_a_dependency_that_breaks_later_shows_on_a_healthy_cluster(run_module, lab_env, kube, deps, cleanup):
    """The lab's reconciler resyncs healthy clusters like a real controller: a database password changed behind
    the cluster's back turns it unhealthy with the reason, and putting it back makes it healthy again, with no spec
    change in between."""
    from psycopg2 import sql
    tenant = deps.name
    cleanup(tenant)
    created = run_module("harbor_cluster", cluster_args(lab_env, tenant, deps, wait=True, wait_timeout=60))
    assert created["status"] == "healthy", created
    generation = kube.cluster(tenant)["metadata"]["generation"]

    def set_password(value):
        conn = pg_connect(lab_env)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(deps.role)), [value])
        conn.close()

    def status():
        live = kube.cluster(tenant).get("status") or {}
        return live.get("status"), {c["type"]: c for c in live.get("conditions") or []}

    set_password("changedBehindItsBack1")
    assert wait_for(lambda: status()[0] == "unhealthy", 90, interval=1), status()
    broken = status()[1]["DatabaseReady"]
    assert broken["status"] == "False" and "password authentication failed" in broken["message"]
    set_password(deps.db_password)
    assert wait_for(lambda: status()[0] == "healthy", 90, interval=1), status()
    assert kube.cluster(tenant)["metadata"]["generation"] == generation


# --------------------------------------------------------------------------- TLS to the database

def test_harbor_reaches_its_database_over_verified_tls_with_the_ca_from_its_trust_secret(
        run_module, lab_env, kube, deps, cleanup, tmp_path, reliability):
    """The cluster asks for verify-full and trusts the tiers' CA through the Secret <id>-trust named by core's,
    jobservice's and registry's certificateRefs; the lab's stand-in operator connects exactly so (the PostgreSQL
    server takes TLS logins only, the S3 store speaks https only). A CA that did not sign the stores' certificates
    turns the database and the storage unready with the TLS failure."""
    import base64
    import subprocess
    tenant = deps.name
    cleanup(tenant)
    created = run_module("harbor_cluster", cluster_args(lab_env, tenant, deps, wait=True, wait_timeout=60))
    assert created["status"] == "healthy" and created["secrets"]["trust"] == "created", created
    spec = kube.cluster(tenant)["spec"]
    assert spec["database"]["spec"]["postgresql"]["sslMode"] == "verify-full"
    assert spec["core"]["certificateRefs"] == spec["jobservice"]["certificateRefs"] == [f"{tenant}-trust"]
    assert spec["registry"]["certificateRefs"] == [f"{tenant}-trust"]
    trust = kube.core.read_namespaced_secret(f"{tenant}-trust", f"harbor-{tenant}")
    with open(lab_env["LAB_CA_CERT"], encoding="ascii") as handle:
        assert base64.b64decode(trust.data["ca.crt"]).decode() == handle.read()

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=not-the-lab-ca", "-keyout", str(tmp_path / "other.key"), "-out", str(tmp_path / "other.crt")],
                   check=True, capture_output=True)
    # one trust Secret holds both stores' CAs (core would trust the S3 CA too): replace both
    foreign = cluster_args(lab_env, tenant, deps, database={"ca_cert": str(tmp_path / "other.crt")},
                           storage={"ca_cert": str(tmp_path / "other.crt")})
    other = run_module("harbor_cluster", foreign)
    assert other["secrets"]["trust"] == "changed" and other["actions"] == [
        f"update Secret harbor-{tenant}/{tenant}-trust"], other  # the spec is unchanged: only the CA

    def condition(kind):
        live = kube.cluster(tenant).get("status") or {}
        return {c["type"]: c for c in live.get("conditions") or []}.get(kind) or {}
    # the operator's resync finds it (a changed CA reaches Harbor's pods when they restart)
    assert wait_for(lambda: condition("DatabaseReady").get("reason") == "TLSFailed", 90, interval=1), \
        condition("DatabaseReady")
    assert "certificate verify failed" in condition("DatabaseReady")["message"]
    assert condition("StorageReady")["reason"] == "TLSFailed", condition("StorageReady")  # https to S3 too
    back = run_module("harbor_cluster", cluster_args(lab_env, tenant, deps))
    assert back["secrets"]["trust"] == "changed", back
    assert wait_for(lambda: condition("DatabaseReady").get("status") == condition("StorageReady").get("status")
                    == "True", 90, interval=1), kube.cluster(tenant).get("status")
    reliability("tls", "Harbor's database login (verify-full) and bucket (https), CA from the trust Secret", 2,
                "the lab CA connects; a foreign CA: TLSFailed (certificate verify failed) for both")


# --------------------------------------------------------------------------- the API server's own checks

def test_apiserver_rejection_is_reported_in_check_mode_and_real_run(run_module, lab_env, kube, unique, cleanup):
    tenant = f"hi-{unique}"
    cleanup(tenant)
    args = cluster_args(lab_env, tenant, spec_overrides={"core": {"replicas": -1}, "logLevel": "verbose"})
    for check in (True, False):
        result = run_module("harbor_cluster", args, check=check)
        assert result.get("failed") is True, result
        assert "spec.core.replicas" in result["msg"] and "greater than or equal to 0" in result["msg"]
        assert 'spec.logLevel: Unsupported value: "verbose"' in result["msg"]
        assert kube.cluster(tenant) is None
    unknown = run_module("harbor_cluster", cluster_args(lab_env, tenant, spec_overrides={"core": {"bogus": 1}}))
    assert unknown.get("failed") is True, unknown
    assert unknown["msg"].startswith("spec_overrides: spec.core.bogus is not a field of the installed "
                                     "harborclusters.goharbor.io")


def test_bad_input_fails_before_anything_is_written(run_module, lab_env, kube, unique):
    tenant = f"hb-{unique}"
    result = run_module("harbor_cluster", cluster_args(lab_env, tenant, cache={"password": "has/slash"}))
    assert result.get("failed") is True and result["field"] == "cache.password"
    shared = run_module("harbor_cluster", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "database": {"password": "x"},
                                           "tenants": [{"tenant": tenant}]})
    assert shared.get("failed") is True and shared["field"] == "database.password"
    assert kube.namespace(tenant) is None


def test_conflict_with_another_field_manager_and_force(run_module, lab_env, kube, unique, cleanup):
    tenant = f"hs-{unique}"
    cleanup(tenant)
    args = cluster_args(lab_env, tenant, log_level="info")
    assert run_module("harbor_cluster", args)["changed"] is True
    kube.apply_as("other-team", tenant, {"logLevel": "debug"})

    for check in (True, False):
        result = run_module("harbor_cluster", dict(args, log_level="warning"), check=check)
        assert result.get("failed") is True, result
        assert "server-side apply conflict: spec.logLevel managed by 'other-team'" in result["msg"]
        assert "force_conflicts" in result["msg"]
    assert kube.cluster(tenant)["spec"]["logLevel"] == "debug"

    forced = run_module("harbor_cluster", dict(args, log_level="warning", force_conflicts=True))
    assert forced["changed"] is True and not forced.get("failed"), forced
    live = kube.cluster(tenant)
    assert live["spec"]["logLevel"] == "warning"
    owners = {m["manager"]: json.dumps(m.get("fieldsV1")) for m in live["metadata"]["managedFields"]}
    assert "f:logLevel" in owners["harborfleet"] and "f:logLevel" not in owners.get("other-team", "")
    assert run_module("harbor_cluster", dict(args, log_level="warning"))["changed"] is False


# --------------------------------------------------------------------------- deletion

def test_delete_waits_for_finalizers_and_is_idempotent(run_module, lab_env, kube, unique, cleanup):
    tenant = f"hd-{unique}"
    cleanup(tenant)
    connection = {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenant": tenant}
    assert run_module("harbor_cluster", cluster_args(lab_env, tenant))["changed"] is True
    kube.set_finalizers(tenant, ["harborfleet.test/hold"])

    absent = dict(connection, state="absent", wait_timeout=3)
    check = run_module("harbor_cluster", absent, check=True)
    assert check["changed"] is True and kube.cluster(tenant)["metadata"].get("deletionTimestamp") is None
    held = run_module("harbor_cluster", absent)
    assert held.get("failed") is True, held
    assert f"HarborCluster harbor-{tenant}/{tenant} still exists after 3s" in held["msg"]
    assert "finalizers: harborfleet.test/hold" in held["msg"]
    assert kube.cluster(tenant)["metadata"]["deletionTimestamp"]

    kube.set_finalizers(tenant, None)
    assert wait_for(lambda: kube.cluster(tenant) is None, timeout=10)
    gone = run_module("harbor_cluster", absent)
    assert gone["changed"] is False and not gone.get("failed"), gone
    assert kube.namespace(tenant) is not None  # kept unless asked

    removed = run_module("harbor_cluster", dict(absent, delete_namespace=True))
    assert removed["changed"] is True and removed["actions"] == [f"delete namespace harbor-{tenant}"]
    assert kube.namespace(tenant).metadata.deletion_timestamp is not None
    assert run_module("harbor_cluster", dict(absent, delete_namespace=True))["changed"] is False


def test_delete_of_a_live_cluster_waits_until_it_is_gone(run_module, lab_env, kube, unique, cleanup):
    tenant = f"hr-{unique}"
    cleanup(tenant)
    assert run_module("harbor_cluster", cluster_args(lab_env, tenant))["changed"] is True
    result = run_module("harbor_cluster", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenant": tenant,
                                           "state": "absent", "delete_namespace": True})
    assert result["changed"] is True and result["actions"] == [f"delete HarborCluster harbor-{tenant}/{tenant}",
                                                               f"delete namespace harbor-{tenant}"]
    assert kube.cluster(tenant) is None


def test_a_cluster_without_the_collections_labels_is_not_deleted(run_module, lab_env, kube, unique, cleanup):
    tenant = f"hx-{unique}"
    cleanup(tenant)
    assert run_module("harbor_cluster", cluster_args(lab_env, tenant))["changed"] is True
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, f"harbor-{tenant}", PLURAL, tenant, {"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "someone-else"}}}, _content_type="application/merge-patch+json")
    absent = {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenant": tenant, "state": "absent", "delete_namespace": True}
    for check in (True, False):
        refused = run_module("harbor_cluster", absent, check=check)
        assert refused.get("failed") is True, refused
        assert f"HarborCluster harbor-{tenant}/{tenant} of tenant {tenant} lack the labels" in refused["msg"]
    assert kube.cluster(tenant)["metadata"].get("deletionTimestamp") is None
    assert kube.namespace(tenant).metadata.deletion_timestamp is None


# --------------------------------------------------------------------------- a fleet

def test_info_counts_a_fleet_of_twenty(run_module, lab_env, kube, deps, unique, cleanup):
    """20 tenants in one call: 15 wired to real services (healthy), 5 with a wrong password (unhealthy)."""
    tenants = [f"hf{i:02d}-{unique}" for i in range(20)]
    for tenant in tenants:
        cleanup(tenant)
    shared = cluster_args(lab_env, "unused", deps, labels={"harborfleet.test/run": unique},
                          database={"username": deps.role, "prefix": deps.prefix, "password": None},
                          cache={"master_set": deps.master_set, "password": None},
                          storage={"bucket": deps.bucket})
    del shared["tenant"]
    items = []
    for index, tenant in enumerate(tenants):
        item = {"tenant": tenant, "version": "2.6.3" if index % 5 == 0 else "2.6.4",
                "database": {"password": deps.db_password if index % 4 else "wrongPassword"},
                "cache": {"password": deps.redis_password}}
        items.append(item)
    args = dict(shared, tenants=items, concurrency=8)

    check = run_module("harbor_cluster", args, check=True)
    assert check["summary"] == {"total": 20, "changed": 20, "failed": 0, "skipped": 0}, check
    assert kube.namespace(tenants[0]) is None

    created = run_module("harbor_cluster", args)
    assert created["summary"] == {"total": 20, "changed": 20, "failed": 0, "skipped": 0}, created
    assert created["results"][0]["secrets"]["database"] == "created"

    selector = {"kubeconfig": lab_env["LAB_KUBECONFIG"], "label_selector": f"harborfleet.test/run={unique}"}

    def settled():
        info = run_module("harbor_cluster_info", selector)
        done = info["counts"]["total"] == 20 and all(
            c["observed_generation"] == c["generation"] and c["status"] in ("healthy", "unhealthy")
            for c in info["clusters"])
        return info if done else None

    info = wait_for(settled, timeout=90, interval=1)
    assert info, "the reconciler did not settle the fleet"
    assert info["counts"] == {"total": 20, "ready": 15, "by_status": {"healthy": 15, "unhealthy": 5},
                              "by_version": {"2.6.3": 4, "2.6.4": 16}}
    unhealthy = sorted(c["tenant"] for c in info["clusters"] if c["status"] == "unhealthy")
    assert unhealthy == [tenants[i] for i in range(0, 20, 4)]
    assert all(any(cond["type"] == "DatabaseReady" and cond["reason"] == "AuthenticationFailed"
                   for cond in c["conditions"]) for c in info["clusters"] if c["status"] == "unhealthy")
    some = run_module("harbor_cluster_info", dict(selector, tenants=tenants[:3]))
    assert [c["tenant"] for c in some["clusters"]] == tenants[:3]

    again = run_module("harbor_cluster", args)
    assert again["changed"] is False and again["summary"]["changed"] == 0, again

    gone = run_module("harbor_cluster", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "state": "absent",
                                         "tenants": [{"tenant": t} for t in tenants]})
    assert gone["summary"] == {"total": 20, "changed": 20, "failed": 0, "skipped": 0}, gone
    assert run_module("harbor_cluster_info", selector)["counts"]["total"] == 0
