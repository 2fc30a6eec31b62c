"""The physical floor: the backends' own round trips for the same work, from plain Python, without Ansible.

Nothing here comes from the collection: each store is driven with its usual client (psycopg2, redis-py, boto3,
urllib3 against the Kubernetes API) and the fewest round trips that do the job, with client-side concurrency:

* Kubernetes: per tenant, server-side apply of the namespace, 4 Secrets (3 passwords and the CA that signs the
  PostgreSQL server's certificate, which Harbor's database clients trust) and (last) the HarborCluster; a no-op is
  one LIST per kind.
* Every PostgreSQL and S3 connection is TLS, verified against the lab's CA, as the collection's.
* PostgreSQL: per tenant, CREATE ROLE + COMMENT (one round trip), CREATE DATABASE, COMMENT + REVOKE (one), and
  ALTER SCHEMA public OWNER in the new database (what tenant_database does for a NOINHERIT role); a no-op is one
  query over every tenant. Passwords travel as plaintext (the server hashes them); the collection computes SCRAM
  verifiers client-side instead, and also verifies them on a no-op, which the floor does not.
* Redis Sentinel: per tenant and sentinel of its group, SENTINEL MONITOR + SENTINEL SET in one pipeline (the
  collection also checks the password against the master first); a no-op is one SENTINEL MASTERS per sentinel.
* S3: per tenant CreateBucket + PutBucketVersioning + PutBucketEncryption + PutBucketLifecycleConfiguration
  (the collection also reads each back until visible); a no-op is ListBuckets + the 3 GETs per bucket.
* IAM (credentials phase): CreateUser + PutUserPolicy + CreateAccessKey; a no-op is ListUsers +
  ListAccessKeys + GetUserPolicy per tenant.

The manifests and settings equal what the modules write: after the floor's provisioning the collection's own
plan reports no change (the harness checks it).
"""

import base64
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .common import (BUCKET_SETTINGS, HARBOR_CLASS, HARBOR_VERSION, SENTINEL_SETTINGS, TOKEN_ISSUER, BenchError,
                     password)

MANAGER = "harborfleet"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_TENANT = "harborfleet.io/tenant"
SECRETS = {"database": ("goharbor.io/postgresql", ("postgres-password", "postgresql-password")),
           "cache": ("goharbor.io/redis", ("redis-password",)),
           "admin": ("goharbor.io/single", ("secret",)),
           "trust": ("Opaque", ("ca.crt",))}
STORAGE_SECRET = ("goharbor.io/single", ("secret",))
LIFECYCLE = [
    {"ID": "harborfleet-abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": BUCKET_SETTINGS["abort_incomplete_multipart_days"]}},
    {"ID": "harborfleet-expire-noncurrent-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
     "NoncurrentVersionExpiration": {"NoncurrentDays": BUCKET_SETTINGS["noncurrent_version_expiration_days"]}},
]
CREDENTIAL_ACTIONS = ["s3:GetBucketLocation", "s3:List*", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                      "s3:AbortMultipartUpload"]


def pool_map(func, items, concurrency, resource=None, close=None):
    """``func(item, resource)`` over a thread pool; a per-thread resource from ``resource()``; first error wins."""
    local = threading.local()
    made, lock = [], threading.Lock()

    def one(item):
        res = None
        if resource is not None:
            res = getattr(local, "res", None)
            if res is None:
                res = local.res = resource()
                with lock:
                    made.append(res)
        return func(item, res)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items) or 1))) as pool:
            return list(pool.map(one, items))
    finally:
        for res in made:
            (close or (lambda r: r.close()))(res)


class KubeRaw:
    """Just enough of the Kubernetes API over urllib3, with the kubeconfig's client certificate."""

    def __init__(self, kubeconfig, pool_size=16):
        import urllib3  # pylint: disable=import-outside-toplevel
        import yaml  # pylint: disable=import-outside-toplevel
        with open(kubeconfig, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"]
        self.tmp = tempfile.mkdtemp(prefix="hf-bench-kube-")
        files = {}
        for name, key in (("ca", "certificate-authority-data"), ("cert", "client-certificate-data"),
                          ("key", "client-key-data")):
            source = cluster if name == "ca" else user
            path = os.path.join(self.tmp, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(base64.b64decode(source[key]))
            files[name] = path
        self.http = urllib3.PoolManager(maxsize=pool_size, cert_reqs="CERT_REQUIRED", ca_certs=files["ca"],
                                        cert_file=files["cert"], key_file=files["key"])

    def request(self, method, path, body=None, content_type="application/json", fields=None):
        response = self.http.request(method, self.server + path, fields=fields, body=json.dumps(body) if body else None,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        if response.status >= 300 and not (method == "DELETE" and response.status == 404):
            raise BenchError(f"{method} {path}: HTTP {response.status}: {response.data[:300]!r}")
        return json.loads(response.data) if response.data else {}

    def apply(self, manifest):
        meta = manifest["metadata"]
        if manifest["kind"] == "Namespace":
            path = f"/api/v1/namespaces/{meta['name']}"
        elif manifest["kind"] == "Secret":
            path = f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}"
        else:
            path = f"/apis/goharbor.io/v1beta1/namespaces/{meta['namespace']}/harborclusters/{meta['name']}"
        self.request("PATCH", f"{path}?fieldManager={MANAGER}&fieldValidation=Strict", manifest,
                     "application/apply-patch+yaml")

    def list(self, path, selector):
        items, token = [], None
        while True:
            fields = {"labelSelector": selector, "limit": "500"}
            if token:
                fields["continue"] = token
            data = self.request("GET", path, fields=fields)
            items.extend(data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return items

    def close(self):
        self.http.clear()
        for name in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, name))
        os.rmdir(self.tmp)


def _labels(tenant):
    return {LABEL_MANAGED: MANAGER, LABEL_TENANT: tenant.tenant}


def namespace_manifest(tenant):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": f"harbor-{tenant.tenant}", "labels": _labels(tenant)}}


def secret_manifest(tenant, purpose, value):
    kind, keys = STORAGE_SECRET if purpose == "storage" else SECRETS[purpose]
    encoded = base64.b64encode(value.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": f"{tenant.tenant}-{purpose}", "namespace": f"harbor-{tenant.tenant}",
                         "labels": _labels(tenant)},
            "data": {key: encoded for key in keys}}


def cluster_manifest(tenant, env):
    host = f"{tenant.tenant}.bench.example.test"
    return {"apiVersion": "goharbor.io/v1beta1", "kind": "HarborCluster",
            "metadata": {"name": tenant.tenant, "namespace": f"harbor-{tenant.tenant}", "labels": _labels(tenant),
                         "annotations": {"goharbor.io/harbor-class": HARBOR_CLASS}},
            "spec": {
                "version": HARBOR_VERSION, "externalURL": f"https://{host}",
                "harborAdminPasswordRef": f"{tenant.tenant}-admin",
                "core": {"tokenIssuer": {"kind": "Issuer", "name": TOKEN_ISSUER},
                         "certificateRefs": [f"{tenant.tenant}-trust"]},
                "jobservice": {"certificateRefs": [f"{tenant.tenant}-trust"]},
                "registry": {"certificateRefs": [f"{tenant.tenant}-trust"]},
                "expose": {"core": {"ingress": {"host": host}}},
                "database": {"kind": "PostgreSQL", "spec": {"postgresql": {
                    "hosts": [{"host": env["LAB_PG_HOST"], "port": int(env["LAB_PG_PORT"])}],
                    "username": f"harbor_{tenant.slug}", "passwordRef": f"{tenant.tenant}-database",
                    "prefix": f"{tenant.slug}_", "sslMode": "verify-full"}}},
                "cache": {"kind": "Redis", "spec": {"redis": {
                    "host": tenant.cache_host, "port": tenant.cache_port,
                    "sentinelMasterSet": f"harbor-{tenant.tenant}", "passwordRef": f"{tenant.tenant}-cache"}}},
                "storage": {"kind": "S3", "spec": {"s3": {
                    "region": env["LAB_S3_REGION"], "bucket": tenant.bucket,
                    "regionendpoint": env["LAB_S3_ENDPOINT"]}}},
            }}


class Floor:
    """The floor for one round of tenants; ``provision``/``noop``/``credentials`` return seconds per tier."""

    name = "floor"

    def __init__(self, env, options, tier):
        self.env = env
        self.options = options
        self.tier = tier
        self.passwords = {}

    # ------------------------------------------------------------------ clients
    def _pg(self, dbname="postgres"):
        import psycopg2  # pylint: disable=import-outside-toplevel
        conn = psycopg2.connect(host=self.env["LAB_PG_HOST"], port=int(self.env["LAB_PG_PORT"]),
                                user=self.env["LAB_PG_USER"], password=self.env["LAB_PG_PASSWORD"], dbname=dbname,
                                sslmode="verify-full", sslrootcert=self.env["LAB_CA_CERT"], connect_timeout=10)
        conn.autocommit = True
        return conn

    def _boto(self, service, concurrency):
        import boto3  # pylint: disable=import-outside-toplevel
        from botocore.config import Config  # pylint: disable=import-outside-toplevel
        return boto3.session.Session().client(
            service, endpoint_url=self.env["LAB_S3_ENDPOINT"], region_name=self.env["LAB_S3_REGION"],
            aws_access_key_id=self.env["LAB_S3_ACCESS_KEY"], aws_secret_access_key=self.env["LAB_S3_SECRET_KEY"],
            verify=self.env["LAB_CA_CERT"], config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=concurrency + 2,
                          signature_version="s3v4" if service == "s3" else None))

    def _sentinels(self, tenants):
        import redis  # pylint: disable=import-outside-toplevel
        clients = {}
        for group in sorted({t.group for t in tenants}):
            for address in self.tier.groups[group]:
                host, port = address.rsplit(":", 1)
                clients[address] = redis.Redis(host=host, port=int(port), password=self.env["LAB_SENTINEL_PASSWORD"],
                                               decode_responses=True, socket_timeout=30,
                                               max_connections=self.options.floor_concurrency + 2)
        return clients

    @staticmethod
    def _timed(timings, name, func):
        started = time.monotonic()
        func()
        timings[name] = round(time.monotonic() - started, 3)

    # ------------------------------------------------------------------ provision
    def provision(self, tenants):
        for t in tenants:
            self.passwords[t.tenant] = {"database": password(), "cache": t.cache_password, "admin": password(),
                                        "trust": self._ca_pem()}
        timings = {}
        kube = KubeRaw(self.env["LAB_KUBECONFIG"], self.options.floor_concurrency + 2)
        try:
            self._timed(timings, "secrets", lambda: pool_map(self._k8s_secrets(kube), tenants,
                                                             self.options.floor_concurrency))
            self._timed(timings, "database", lambda: pool_map(self._pg_tenant, tenants, self.options.pg_connections,
                                                              resource=self._pg))
            s3 = self._boto("s3", self.options.floor_concurrency)
            self._timed(timings, "bucket", lambda: pool_map(lambda t, _r: self._bucket(s3, t), tenants,
                                                            self.options.floor_concurrency))
            self._timed(timings, "cluster", lambda: pool_map(lambda t, _r: kube.apply(cluster_manifest(t, self.env)),
                                                             tenants, self.options.floor_concurrency))
        finally:
            kube.close()
        self._timed(timings, "sentinel", lambda: self._sentinel_register(tenants))
        return timings

    def _k8s_secrets(self, kube):
        def work(tenant, _resource):
            kube.apply(namespace_manifest(tenant))
            for purpose in SECRETS:
                kube.apply(secret_manifest(tenant, purpose, self.passwords[tenant.tenant][purpose]))
        return work

    def _ca_pem(self):
        with open(self.env["LAB_CA_CERT"], encoding="ascii") as handle:
            return handle.read().strip() + "\n"

    def _pg_tenant(self, tenant, conn):
        from psycopg2 import sql  # pylint: disable=import-outside-toplevel
        role, database = sql.Identifier(f"harbor_{tenant.slug}"), sql.Identifier(f"{tenant.slug}_core")
        comment = f"harborfleet tenant {tenant.tenant}"
        strategy = sql.SQL(f" STRATEGY {self.options.pg_strategy.upper()}") if self.options.pg_strategy else sql.SQL("")
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
                                "NOBYPASSRLS CONNECTION LIMIT -1 PASSWORD %s; COMMENT ON ROLE {} IS %s").format(role, role),
                        [self.passwords[tenant.tenant]["database"], comment])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0 CONNECTION LIMIT -1")
                        .format(database, role) + strategy)
            cur.execute(sql.SQL("COMMENT ON DATABASE {} IS %s; REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                        .format(database, database), [comment])
        own = self._pg(f"{tenant.slug}_core")
        try:
            with own.cursor() as cur:
                cur.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
        finally:
            own.close()

    def _sentinel_register(self, tenants):
        clients = self._sentinels(tenants)
        jobs = [(t, address) for t in tenants for address in self.tier.groups[t.group]]

        def work(job, _resource):
            tenant, address = job
            name = f"harbor-{tenant.tenant}"
            pipe = clients[address].pipeline(transaction=False)
            pipe.execute_command("SENTINEL", "MONITOR", name, "127.0.0.1", tenant.master_port, 2)
            settings = [item for pair in SENTINEL_SETTINGS.items() for item in pair]
            pipe.execute_command("SENTINEL", "SET", name, "auth-pass", tenant.cache_password, *settings)
            pipe.execute()

        try:
            pool_map(work, jobs, self.options.floor_concurrency)
        finally:
            for conn in clients.values():
                conn.close()

    @staticmethod
    def _bucket(s3, tenant):
        s3.create_bucket(Bucket=tenant.bucket)
        s3.put_bucket_versioning(Bucket=tenant.bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket=tenant.bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        s3.put_bucket_lifecycle_configuration(Bucket=tenant.bucket, LifecycleConfiguration={"Rules": LIFECYCLE})

    # ------------------------------------------------------------------ no-op
    def noop(self, tenants):
        timings = {}
        kube = KubeRaw(self.env["LAB_KUBECONFIG"], 4)
        found = {}
        try:
            self._timed(timings, "kubernetes", lambda: found.update(self._k8s_read(kube, tenants)))
        finally:
            kube.close()
        self._timed(timings, "database", lambda: found.update(database=self._pg_read(tenants)))
        self._timed(timings, "sentinel", lambda: found.update(sentinel=self._sentinel_read(tenants)))
        s3 = self._boto("s3", self.options.floor_concurrency)
        self._timed(timings, "bucket", lambda: found.update(bucket=self._bucket_read(s3, tenants)))
        per_tenant = {"secrets": len(SECRETS)}
        missing = {key: len(tenants) * per_tenant.get(key, 1) - value for key, value in found.items()
                   if value != len(tenants) * per_tenant.get(key, 1)}
        if missing:
            raise BenchError(f"floor no-op: objects missing or different: {missing}")
        return timings

    @staticmethod
    def _k8s_read(kube, tenants):
        ids = {t.tenant for t in tenants}
        selector = f"{LABEL_TENANT} in ({','.join(sorted(ids))})"
        namespaces = [n for n in kube.list("/api/v1/namespaces", selector)
                      if n["metadata"]["name"][len("harbor-"):] in ids]
        secrets = [s for s in kube.list("/api/v1/secrets", selector)
                   if s["metadata"]["name"].rsplit("-", 1)[-1] in SECRETS]
        clusters = [c for c in kube.list("/apis/goharbor.io/v1beta1/harborclusters", selector)
                    if c["spec"].get("version") == HARBOR_VERSION]
        return {"namespaces": len(namespaces), "secrets": len(secrets), "clusters": len(clusters)}

    def _pg_read(self, tenants):
        conn = self._pg()
        try:
            with conn.cursor() as cur:
                cur.execute("""
                    SELECT count(*) FROM unnest(%s::text[], %s::text[]) AS t(role, db)
                    JOIN pg_catalog.pg_roles r ON r.rolname = t.role
                    JOIN pg_catalog.pg_database d ON d.datname = t.db AND d.datdba = r.oid
                    WHERE r.rolcanlogin AND NOT r.rolsuper AND NOT r.rolinherit AND NOT r.rolcreatedb
                      AND NOT EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                                      WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY'))""",
                            ([f"harbor_{t.slug}" for t in tenants], [f"{t.slug}_core" for t in tenants]))
                return cur.fetchone()[0]
        finally:
            conn.close()

    def _sentinel_read(self, tenants):
        clients = self._sentinels(tenants)
        try:
            seen = {address: conn.sentinel_masters() for address, conn in clients.items()}
        finally:
            for conn in clients.values():
                conn.close()
        good = 0
        for t in tenants:
            views = [seen[a].get(f"harbor-{t.tenant}") for a in self.tier.groups[t.group]]
            good += all(v is not None and int(v["port"]) == t.master_port for v in views)
        return good

    def _bucket_read(self, s3, tenants):
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}

        def check(tenant, _resource):
            if tenant.bucket not in names:
                return False
            versioning = s3.get_bucket_versioning(Bucket=tenant.bucket).get("Status")
            rules = s3.get_bucket_encryption(Bucket=tenant.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=tenant.bucket).get("Rules", [])
            return versioning == "Enabled" and bool(rules) and len(lifecycle) == len(LIFECYCLE)

        return sum(pool_map(check, tenants, self.options.floor_concurrency))

    # ------------------------------------------------------------------ credentials
    def credentials(self, tenants):
        """What tenant_bucket does for a new key: user, policy, key, and the key's secret in the tenant's Secret."""
        iam = self._boto("iam", self.options.floor_concurrency)
        kube = KubeRaw(self.env["LAB_KUBECONFIG"], self.options.floor_concurrency + 2)

        def work(tenant, _resource):
            user = f"harbor-{tenant.tenant}"
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="harborfleet-tenant-bucket", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Sid": "HarborfleetTenantBucket", "Effect": "Allow", "Action": CREDENTIAL_ACTIONS,
                    "Resource": [f"arn:aws:s3:::{tenant.bucket}", f"arn:aws:s3:::{tenant.bucket}/*"]}]}))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            kube.apply(secret_manifest(tenant, "storage", key["SecretAccessKey"]))

        timings = {}
        try:
            self._timed(timings, "credentials", lambda: pool_map(work, tenants, self.options.floor_concurrency))
        finally:
            kube.close()
        return timings

    def credentials_noop(self, tenants):
        iam = self._boto("iam", self.options.floor_concurrency)
        counted = []

        def read():
            users = {u["UserName"] for page in iam.get_paginator("list_users").paginate() for u in page["Users"]}

            def check(tenant, _resource):
                user = f"harbor-{tenant.tenant}"
                if user not in users:
                    return False
                keys = iam.list_access_keys(UserName=user).get("AccessKeyMetadata", [])
                policy = iam.get_user_policy(UserName=user, PolicyName="harborfleet-tenant-bucket")
                return bool(keys) and bool(policy.get("PolicyDocument"))

            counted.append(sum(pool_map(check, tenants, self.options.floor_concurrency)))

        timings = {}
        self._timed(timings, "credentials", read)
        if counted[0] != len(tenants):
            raise BenchError(f"floor credentials no-op: {len(tenants) - counted[0]} tenants lack a user, key or policy")
        return timings
