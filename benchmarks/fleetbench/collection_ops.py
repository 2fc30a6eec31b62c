"""Untimed work done with the collection's own backends, in process (no Ansible): checking that a path did the
whole job, and removing a round's tenants again.

``verify`` runs each backend's bulk read and plan with the desired state every path converges to: a tenant whose
plan has changes was not fully provisioned (or a floor object differs from what the modules write). ``cleanup``
runs the ``state: absent`` plans (databases dropped with allow_drop, buckets emptied and deleted with force, IAM
users removed, master sets removed, HarborClusters and namespaces deleted) and then finalizes the namespaces itself
rather than waiting for the lab's namespace controller to work through a thousand of them.
"""

from .common import BUCKET_SETTINGS, HARBOR_CLASS, HARBOR_VERSION, TOKEN_ISSUER, import_collection

PURPOSES = ["database", "cache", "admin"]


def _modules():
    import_collection()
    # pylint: disable=import-outside-toplevel
    import types
    from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis
    from ansible_collections.harborfleet.fleet.plugins.module_utils import _tenant_database as _postgres
    from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import apply_plan, run_batch
    from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_cluster import HarborClusterBackend
    from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_spec import HarborClusterSpec
    from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import KubeClient
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_buckets import BucketBackend, BucketSpec
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import S3Connection
    from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import Tenant
    from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import (
        TenantSecretsBackend, TenantSecretsSpec, read_tenant_passwords)
    k8s = types.SimpleNamespace(HarborClusterBackend=HarborClusterBackend, HarborClusterSpec=HarborClusterSpec,
                                KubeClient=KubeClient, Tenant=Tenant, TenantSecretsBackend=TenantSecretsBackend,
                                TenantSecretsSpec=TenantSecretsSpec, read_tenant_passwords=read_tenant_passwords)
    s3 = types.SimpleNamespace(BucketBackend=BucketBackend, BucketSpec=BucketSpec, S3Connection=S3Connection)
    return k8s, _postgres, _redis, s3, apply_plan, run_batch


def _plans(backend, specs):
    """read → plan for every spec, as FleetModule.converge does it (without applying)."""
    import_collection()
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import plan_all
    return plan_all(backend, specs, backend.read(specs))


def _summary(plans):
    out = {"tenants": len(plans), "changed": sum(1 for p in plans if p.changed),
           "failed": sum(1 for p in plans if p.error)}
    errors = [f"{p.key}: {p.error}" for p in plans if p.error][:3]
    if errors:
        out["errors"] = errors
    actions = [a for p in plans for a in (c.action for c in p.changes)][:3]
    if actions:
        out["example_changes"] = actions
    return out


class CollectionOps:
    def __init__(self, env, tier, concurrency=8):
        self.env = env
        self.tier = tier
        self.concurrency = concurrency
        self.k8s, self.pg, self.rd, self.s3, self.apply_plan, self.run_batch = _modules()

    # ------------------------------------------------------------------ parameters
    def _pg_params(self):
        return {"login_host": self.env["LAB_PG_HOST"], "login_port": int(self.env["LAB_PG_PORT"]),
                "login_user": self.env["LAB_PG_USER"], "login_password": self.env["LAB_PG_PASSWORD"],
                "login_db": "postgres", "ssl_mode": "verify-full", "ca_cert": self.env["LAB_CA_CERT"],
                "connect_timeout": 10}

    def _s3_params(self):
        return {"endpoint_url": self.env["LAB_S3_ENDPOINT"], "iam_endpoint_url": None,
                "region": self.env["LAB_S3_REGION"], "access_key": self.env["LAB_S3_ACCESS_KEY"],
                "secret_key": self.env["LAB_S3_SECRET_KEY"], "session_token": None, "ca_bundle": self.env["LAB_CA_CERT"],
                "validate_certs": True, "addressing_style": "auto", "retry_mode": "standard", "max_attempts": 5,
                "connect_timeout": 10, "read_timeout": 60}

    def _sentinel_params(self, group):
        return {"sentinels": self.tier.groups[group], "sentinel_password": self.env["LAB_SENTINEL_PASSWORD"],
                "socket_timeout": 10.0, "tls": False, "tls_ca_cert": None, "sentinel_group": group, "capacity": 0}

    def _kube(self):
        return self.k8s.KubeClient({"kubeconfig": self.env["LAB_KUBECONFIG"], "request_timeout": 60},
                                   pool_size=self.concurrency + 2)

    def _run(self, backend, specs, concurrency=None, finalize=None):
        plans = _plans(backend, specs)
        factory = getattr(backend, "worker_resource", lambda: None)()

        def work(plan, resource):
            self.apply_plan(plan, resource)
            if finalize is not None:
                finalize(plan, resource)

        runnable = [p for p in plans if not p.error and p.changed]
        self.run_batch(runnable, work, concurrency=concurrency or self.concurrency, resource=factory)
        return _summary(plans)

    # ------------------------------------------------------------------ verify
    def verify(self, tenants, credentials=()):
        """{object: {tenants, changed, failed}}: what the collection would still change (0 when complete)."""
        k8s, pg, rd, s3 = self.k8s, self.pg, self.rd, self.s3
        out = {}
        kube = self._kube()
        try:
            backend = k8s.TenantSecretsBackend(kube)
            specs = [k8s.TenantSecretsSpec({"tenant": t.tenant, "ensure": PURPOSES,
                                            "values": {"cache": t.cache_password}}) for t in tenants]
            plans = _plans(backend, specs)
            out["secrets"] = _summary(plans)
            values = k8s.read_tenant_passwords(kube, [p.key for p in plans if not p.error])
            cluster_specs = []
            for t in tenants:
                own = values.get(t.tenant, {})
                cluster_specs.append(k8s.HarborClusterSpec({
                    "tenant": t.tenant, "bucket_prefix": "harbor-", "harbor_class": HARBOR_CLASS,
                    "version": HARBOR_VERSION, "expose": {"host": "{tenant}.bench.example.test"},
                    "token_issuer": {"name": TOKEN_ISSUER, "kind": "Issuer"},
                    "database": {"host": self.env["LAB_PG_HOST"], "port": int(self.env["LAB_PG_PORT"]),
                                 "ca_cert": self.env["LAB_CA_CERT"], "password": own.get("database")},
                    "cache": {"host": t.cache_host, "port": t.cache_port, "password": own.get("cache")},
                    "storage": {"region": self.env["LAB_S3_REGION"], "endpoint": self.env["LAB_S3_ENDPOINT"],
                                "ca_cert": self.env["LAB_CA_CERT"]},
                    "admin_password": own.get("admin")}))
            out["cluster"] = _summary(_plans(k8s.HarborClusterBackend(kube, concurrency=self.concurrency),
                                             cluster_specs))
        finally:
            kube.close()
        backend = pg.DatabaseBackend(self._pg_params())
        try:
            out["database"] = _summary(_plans(backend, [pg.TenantDatabaseSpec(
                {"tenant": t.tenant, "password": values.get(t.tenant, {}).get("database")}, "present")
                for t in tenants]))
        finally:
            backend.close()
        sentinel = {"tenants": 0, "changed": 0, "failed": 0}
        for group in sorted({t.group for t in tenants}):
            backend = rd.SentinelBackend(self._sentinel_params(group))
            try:
                specs = [rd.MasterSetSpec({"tenant": t.tenant, "master_host": "127.0.0.1", "master_port": t.master_port,
                                           "password": t.cache_password}, "present", 3)
                         for t in tenants if t.group == group]
                part = _summary(_plans(backend, specs))
            finally:
                backend.close()
            for key in sentinel:
                sentinel[key] += part[key]
            sentinel.update({k: v for k, v in part.items() if k not in sentinel})
        out["sentinel"] = sentinel
        connection = s3.S3Connection(self._s3_params(), self.concurrency)
        wanted = set(credentials)
        specs = [s3.BucketSpec(dict(BUCKET_SETTINGS, tenant=t.tenant, credentials=t.tenant in wanted),
                               "present", "harbor-", connection.region) for t in tenants]
        out["bucket"] = _summary(_plans(s3.BucketBackend(connection, concurrency=self.concurrency), specs))
        return out

    # ------------------------------------------------------------------ cleanup
    def cleanup(self, tenants):
        """Remove everything a round created; returns what each backend did (nothing here is timed)."""
        k8s, pg, rd, s3 = self.k8s, self.pg, self.rd, self.s3
        out = {}
        backend = pg.DatabaseBackend(self._pg_params())
        try:
            out["database"] = self._run(backend, [pg.TenantDatabaseSpec({"tenant": t.tenant, "allow_drop": True},
                                                                        "absent") for t in tenants], concurrency=4)
        finally:
            backend.close()
        connection = s3.S3Connection(self._s3_params(), self.concurrency)
        out["bucket"] = self._run(s3.BucketBackend(connection, concurrency=self.concurrency),
                                  [s3.BucketSpec({"tenant": t.tenant, "force": True}, "absent", "harbor-",
                                                 connection.region) for t in tenants])
        if out["bucket"]["failed"]:
            # An IAM API that does not answer fails every tenant before its bucket is touched: remove the buckets
            # at least (the report keeps the first errors, so leftover IAM users are known).
            out["bucket_without_iam"] = self._run(
                s3.BucketBackend(connection, concurrency=self.concurrency),
                [s3.BucketSpec({"tenant": t.tenant, "force": True, "credentials": False}, "absent", "harbor-",
                               connection.region) for t in tenants])
        for group in sorted({t.group for t in tenants}):
            backend = rd.SentinelBackend(self._sentinel_params(group))
            try:
                out[f"sentinel {group}"] = self._run(backend, [rd.MasterSetSpec({"tenant": t.tenant}, "absent", 3)
                                                               for t in tenants if t.group == group])
            finally:
                backend.close()
        kube = self._kube()
        try:
            out["cluster"] = self._run(k8s.HarborClusterBackend(kube, concurrency=self.concurrency),
                                       [k8s.HarborClusterSpec({"tenant": t.tenant}, "absent", True) for t in tenants])
            out["namespaces_finalized"] = self._finalize_namespaces(kube, tenants)
        finally:
            kube.close()
        return out

    def _finalize_namespaces(self, kube, tenants):
        """Delete the Secrets left in each (Terminating) namespace and empty its finalizers, so it goes away."""
        def work(item, _resource):
            namespace = item.key
            kube.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets", f"delete Secrets in {namespace}")
            live = kube.get(f"/api/v1/namespaces/{namespace}", f"get namespace {namespace}")
            if live is None:
                return
            if not live["metadata"].get("deletionTimestamp"):
                kube.delete(f"/api/v1/namespaces/{namespace}", f"delete namespace {namespace}")
            kube.request("PUT", f"/api/v1/namespaces/{namespace}/finalize", f"finalize namespace {namespace}",
                         body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
                               "spec": {"finalizers": []}})

        items = [_Item(self.k8s.Tenant(t.tenant).namespace) for t in tenants]
        self.run_batch(items, work, concurrency=self.concurrency)
        errors = [f"{i.key}: {i.error}" for i in items if i.error]
        return {"namespaces": len(items), "failed": len(errors), "errors": errors[:3]}


class _Item:
    def __init__(self, key):
        self.key = key
        self.error = None
        self.skipped = False
