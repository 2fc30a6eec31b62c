# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes backend: the HarborCluster "deployer" (build spec, apply, read readiness, delete) and its client.

Everything Kubernetes-specific lives here, in layers:

* pure functions: ``HarborClusterSpec`` (validated inputs) → ``build_cluster`` / ``build_secrets`` /
  ``build_namespace`` (manifests); ``CrdSchema`` (which fields the installed CRD has); ``is_subset`` and
  ``pending_removals`` (does the live object already match what we would apply?); ``readiness`` (the operator's
  readiness rule) and ``poll`` (one waiting loop on a monotonic clock);
* ``KubeClient``: one API client per module run, raw JSON over ``ApiClient.call_api``, server-side apply with the
  ``harborfleet`` field manager, retries for transient errors only, Status objects turned into readable errors;
* ``HarborClusterBackend``: the ``read``/``plan`` pair ``FleetModule.converge`` drives: one LIST per kind for the
  whole run, a plan per tenant, writes only for tenants that differ, server-side dry runs in check mode.

Secret values never leave this file: diffs and results say only whether a Secret key is unchanged or changes.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    k8s_client = None
    k8s_config = None

    class ApiException(Exception):
        """Stand-in so the except clauses below stay valid without the library."""
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = _exc

try:
    from urllib3.exceptions import HTTPError as Urllib3Error
except ImportError:  # pragma: no cover - urllib3 comes with kubernetes
    Urllib3Error = OSError

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, apply_plan, run_batch
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, TenantInputError, is_url_safe_password, validate_bucket_name, validate_db_prefix, validate_dns_label,
    validate_master_set, generate_password)

GROUP = "goharbor.io"
VERSION = "v1beta1"
KIND = "HarborCluster"
PLURAL = "harborclusters"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"
FIELD_MANAGER = "harborfleet"
HARBOR_CLASS_ANNOTATION = "goharbor.io/harbor-class"
TENANT_LABEL = "harborfleet.io/tenant"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}={FIELD_MANAGER}"

# The operator's data keys (database: `postgres-password` on main, `postgresql-password` up to v1.4.0-rc1).
SECRET_KEYS = {
    "database": ("postgres-password", "postgresql-password"),
    "cache": ("redis-password",),
    "admin": ("secret",),
    "storage": ("secret",),
}
SECRET_TYPES = {"database": "goharbor.io/postgresql", "cache": "goharbor.io/redis",
                "admin": "goharbor.io/single", "storage": "goharbor.io/single"}
# Which option holds the value written to each Secret (for error messages).
SECRET_OPTIONS = {"database": "database.password", "cache": "cache.password", "admin": "admin_password",
                  "storage": "storage.secret_key"}

# Per-plan fields only some CRD releases have: dropped (with a warning) when the installed CRD lacks them.
DROPPABLE_FIELDS = {("spec", "core", "maxIdleConnections"): "core_max_idle_connections",
                    ("spec", "core", "maxOpenConnections"): "core_max_open_connections"}
# Option that produced each top-level spec field, to name it in errors.
OPTION_OF_SPEC_FIELD = {"core": "token_issuer", "expose": "expose", "database": "database", "cache": "cache",
                        "storage": "storage", "trivy": "trivy", "notary": "notary", "chartmuseum": "chartmuseum",
                        "imageSource": "image_source", "logLevel": "log_level", "externalURL": "external_url",
                        "version": "version", "harborAdminPasswordRef": "admin_password"}
REPLICA_COMPONENTS = ("core", "portal", "registry", "registryctl", "jobservice")
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
URL_RE = re.compile(r"https?://[^\s/]+(/\S*)?")
SMALL_RUN = 100  # up to this many tenants, LISTs select them by id instead of the whole fleet
REDACTED = "********"

CONNECTION_SPEC = dict(
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    ca_cert=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    request_timeout=dict(type="int", default=30),
)


# --------------------------------------------------------------------------- errors

class KubeApiError(FleetError):
    """An API call the server refused, with the server's own message (never a request or response body)."""

    def __init__(self, what, status, message, causes=None):
        self.status = status
        self.causes = causes or []
        super().__init__(f"{what}: {message}" if what else message)


class ConflictError(KubeApiError):
    """Server-side apply found fields owned by another field manager."""


def _status_of(exc):
    """The Status object in an ApiException's body, or a minimal one."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return body


def api_error(exc, what):
    """Turn an ApiException into a readable error; conflicts name the fields and the other managers."""
    status = _status_of(exc)
    code = getattr(exc, "status", None) or status.get("code")
    message = status.get("message") or f"HTTP {code} {getattr(exc, 'reason', '') or ''}".strip()
    causes = (status.get("details") or {}).get("causes") or []
    if code == 409 and status.get("reason") == "Conflict" and causes:
        owners = {}
        for cause in causes:
            match = re.search(r'conflict with "([^"]+)"', cause.get("message") or "")
            owners.setdefault(match.group(1) if match else "another field manager", []).append(
                (cause.get("field") or "?").lstrip("."))
        text = "; ".join(f"{', '.join(fields)} managed by {manager!r}" for manager, fields in sorted(owners.items()))
        return ConflictError(what, code, f"server-side apply conflict: {text}. Set force_conflicts: true to take "
                                         "these fields over, or stop the other manager from setting them", causes)
    return KubeApiError(what, code, message, causes)


def describe_error(exc):
    if isinstance(exc, (FleetError, TenantInputError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- small pure helpers

def b64(value):
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def deep_merge(base, override):
    """``override`` merged into a copy of ``base``: dicts merge key by key, a ``None`` value removes the key."""
    result = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _leaf_paths(obj, prefix=()):
    if isinstance(obj, dict) and obj:
        paths = []
        for key, value in obj.items():
            paths.extend(_leaf_paths(value, prefix + (key,)))
        return paths
    return [prefix]


def is_subset(desired, live):
    """Does ``live`` already hold every field of ``desired`` with the same value? (Lists are atomic.)"""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(key in live and is_subset(value, live[key])
                                              for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and \
            all(is_subset(d, item) for d, item in zip(desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return desired == live
    return desired == live


def _owned_leaves(fields, prefix=()):
    out = set()
    for key, sub in (fields or {}).items():
        if key == ".":
            out.add(prefix)
        elif key.startswith("f:"):
            path = prefix + (key[2:],)
            if sub:
                out |= _owned_leaves(sub, path)
            else:
                out.add(path)
        else:  # k:/v:/i: members of an associative list: the list itself is what we compare
            out.add(prefix)
    return out


def _all_paths(obj, prefix=()):
    paths = {prefix}
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths |= _all_paths(value, prefix + (key,))
    return paths


def _compared(obj):
    """The parts of a manifest that a field manager owns and we compare (not name, namespace, kind...)."""
    meta = obj.get("metadata") or {}
    out = {key: obj[key] for key in ("spec", "data", "type") if key in obj}
    picked = {key: meta[key] for key in ("labels", "annotations") if meta.get(key)}
    if picked:
        out["metadata"] = picked
    return out


def pending_removals(live, desired, manager=FIELD_MANAGER):
    """Fields our earlier applies set that the desired object no longer has: applying would remove them."""
    have = _all_paths(_compared(desired))
    removed = set()
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply" or entry.get("subresource"):
            continue
        for path in _owned_leaves(entry.get("fieldsV1")):
            if path and path not in have and path[0] in ("spec", "data", "type", "metadata"):
                if path[0] == "metadata" and (len(path) < 2 or path[1] not in ("labels", "annotations")):
                    continue
                removed.add(path)
    return sorted(".".join(path) for path in removed)


def matches(live, desired, manager=FIELD_MANAGER):
    """True when applying ``desired`` would change nothing (no false changes from managedFields or versions)."""
    return live is not None and is_subset(_compared(desired), live) and not pending_removals(live, desired, manager)


def _fmt(value, tenant):
    """User strings may contain ``{tenant}``, replaced by the tenant id (e.g. ``{tenant}.registry.example.com``)."""
    return value.replace("{tenant}", tenant.id) if isinstance(value, str) else value


def _validate_hostname(value, field):
    if not isinstance(value, str) or not value or len(value) > 253:
        raise TenantInputError(field, f"{value!r} is not a valid host name")
    for label in value.split("."):
        validate_dns_label(label, field)
    return value


def _validate_ref(value, field):
    """A Kubernetes object name (DNS subdomain) referenced from the spec."""
    if not isinstance(value, str) or not value or len(value) > 253:
        raise TenantInputError(field, f"{value!r} is not a valid Kubernetes object name")
    for label in value.split("."):
        try:
            validate_dns_label(label, field)
        except TenantInputError:
            raise TenantInputError(field, f"{value!r} is not a valid Kubernetes object name: lowercase letters, "
                                          "digits, '-' and '.'") from None
    return value


def _validate_username(value):
    """Any login name the server accepts (managed services use forms like ``user@server``), but no blanks."""
    if not isinstance(value, str) or not value or len(value) > 128 or any(ch.isspace() for ch in value):
        raise TenantInputError("database.username", f"{value!r} is not a valid login name")
    return value


def _int_at_least(value, field, minimum):
    if value is not None and value < minimum:
        raise TenantInputError(field, f"must be at least {minimum}")
    return value


# --------------------------------------------------------------------------- desired state

class HarborClusterSpec:
    """One tenant's HarborCluster inputs, validated before anything is read or written.

    ``params`` is one tenant's options as the module passes them (nested dicts for database, cache, storage...);
    ``None`` means "not set". Every name comes from the tenant model unless an option overrides it.
    """

    def __init__(self, params, state="present", delete_namespace=False):
        bucket_prefix = params.get("bucket_prefix")
        self.tenant = Tenant(params["tenant"], bucket_prefix="harbor-" if bucket_prefix is None else bucket_prefix)
        self.key = self.tenant.id
        self.state = state
        self.namespace = self.tenant.namespace
        self.name = self.tenant.cluster_name
        self.delete_namespace = bool(delete_namespace)
        self.labels = self._labels(params.get("labels"))
        self.passwords = {}
        if state == "present":
            self._validate_present(params)

    def _labels(self, extra):
        labels = dict(self.tenant.labels)
        for key, value in (extra or {}).items():
            if key in labels and str(value) != labels[key]:
                raise TenantInputError("labels", f"{key!r} is set by the collection (to {labels[key]!r})")
            labels[key] = str(value)
        return labels

    def _section(self, params, name):
        value = params.get(name)
        if value is not None and not isinstance(value, dict):
            raise TenantInputError(name, "must be a dictionary")
        return value or {}

    def _validate_present(self, params):
        t = self.tenant
        self.version = params.get("version")
        if not self.version:
            raise TenantInputError("version", "is required: the Harbor version to deploy, e.g. 2.6.4")
        if not VERSION_RE.fullmatch(self.version):
            raise TenantInputError("version", f"{self.version!r} is not a version like 2.6.4")

        expose = self._section(params, "expose")
        self.host = _fmt(expose.get("host"), t)
        if not self.host:
            raise TenantInputError("expose.host", "is required: the ingress host of the tenant's Harbor "
                                                  "({tenant} is replaced by the tenant id)")
        _validate_hostname(self.host, "expose.host")
        self.ingress_class_name = expose.get("ingress_class_name")
        self.controller = expose.get("controller")
        self.ingress_annotations = {str(k): str(v) for k, v in (expose.get("annotations") or {}).items()}
        self.tls_secret = _fmt(expose.get("tls_secret"), t)
        if self.tls_secret:
            _validate_ref(self.tls_secret, "expose.tls_secret")
        self.external_url = _fmt(params.get("external_url"), t) or f"https://{self.host}"
        if not URL_RE.fullmatch(self.external_url):
            raise TenantInputError("external_url", f"{self.external_url!r} must start with http:// or https://")

        issuer = self._section(params, "token_issuer")
        if not issuer.get("name"):
            raise TenantInputError("token_issuer.name", "is required: the cert-manager issuer that signs "
                                                        "Harbor core's token certificate")
        _validate_ref(issuer["name"], "token_issuer.name")
        self.token_issuer = {"kind": issuer.get("kind") or "Issuer", "name": issuer["name"]}
        if issuer.get("group"):
            self.token_issuer["group"] = issuer["group"]

        db = self._section(params, "database")
        if not db.get("host"):
            raise TenantInputError("database.host", "is required: the PostgreSQL server Harbor connects to")
        self.db = {
            "host": db["host"], "port": 5432 if db.get("port") is None else db["port"], "ssl_mode": db.get("ssl_mode"),
            "username": _validate_username(db.get("username") or t.db_role),
            "prefix": validate_db_prefix(db.get("prefix") or t.db_prefix, "database.prefix"),
        }
        _int_at_least(self.db["port"], "database.port", 1)
        self._password("database", db.get("password"))

        cache = self._section(params, "cache")
        if not cache.get("host"):
            raise TenantInputError("cache.host", "is required: one Redis Sentinel endpoint (host and port)")
        self.cache = {"host": cache["host"], "port": 26379 if cache.get("port") is None else cache["port"],
                      "master_set": validate_master_set(cache.get("master_set") or t.master_set, "cache.master_set")}
        _int_at_least(self.cache["port"], "cache.port", 1)
        self._password("cache", cache.get("password"))
        if self.passwords.get("cache") is not None and not is_url_safe_password(self.passwords["cache"]):
            raise TenantInputError("cache.password", "must be URL-safe (letters and digits only): the operator "
                                                     "puts it into a redis:// URL unescaped (harbor-operator #1054)")

        storage = self._section(params, "storage")
        if not storage.get("region"):
            raise TenantInputError("storage.region", "is required: the S3 region (any value S3-compatible "
                                                     "stores accept, e.g. us-east-1)")
        self.storage = dict(storage)
        self.storage["bucket"] = validate_bucket_name(_fmt(storage.get("bucket"), t) or t.bucket, "storage.bucket")
        if storage.get("certificate_secret"):
            _validate_ref(storage["certificate_secret"], "storage.certificate_secret")
        if storage.get("chunk_size") is not None and storage["chunk_size"] < 5242880:
            raise TenantInputError("storage.chunk_size", "must be at least 5242880 (5 MiB)")
        if storage.get("secret_key") is not None and not storage.get("access_key"):
            raise TenantInputError("storage.access_key", "is required with storage.secret_key")
        if storage.get("access_key"):
            self._password("storage", storage.get("secret_key"))
        self.storage.pop("secret_key", None)  # kept only in self.passwords

        self._password("admin", params.get("admin_password"))

        self.trivy = self._component(params, "trivy")
        if self.trivy:
            for claim in ("reports_claim", "cache_claim"):
                value = _fmt(self.trivy.get(claim), t)
                if not value:
                    raise TenantInputError(f"trivy.{claim}", "is required when trivy is enabled (a "
                                                             "PersistentVolumeClaim name; {tenant} is replaced)")
                self.trivy[claim] = _validate_ref(value, f"trivy.{claim}")
        self.notary = self._component(params, "notary")
        if self.notary:
            self.notary["host"] = _fmt(self.notary.get("host"), t)
            if not self.notary["host"]:
                raise TenantInputError("notary.host", "is required when notary is enabled (its ingress host)")
            _validate_hostname(self.notary["host"], "notary.host")
            self.notary["tls_secret"] = _fmt(self.notary.get("tls_secret"), t)
        self.chartmuseum = self._component(params, "chartmuseum")
        self.image_source = self._section(params, "image_source")
        self.log_level = params.get("log_level")
        self.harbor_class = params.get("harbor_class")
        self.replicas = {}
        for component, value in (params.get("replicas") or {}).items():
            if component not in REPLICA_COMPONENTS:
                raise TenantInputError("replicas", f"unknown component {component!r}; one of "
                                                   f"{', '.join(REPLICA_COMPONENTS)} (optional components take "
                                                   "their replicas in their own option)")
            try:
                self.replicas[component] = _int_at_least(int(value), f"replicas.{component}", 0)
            except (TypeError, ValueError):
                raise TenantInputError(f"replicas.{component}", f"{value!r} is not a number") from None
        self.max_idle = _int_at_least(params.get("core_max_idle_connections"), "core_max_idle_connections", 0)
        self.max_open = _int_at_least(params.get("core_max_open_connections"), "core_max_open_connections", 0)
        overrides = params.get("spec_overrides")
        if overrides is not None and not isinstance(overrides, dict):
            raise TenantInputError("spec_overrides", "must be a dictionary")
        self.spec_overrides = overrides or {}

    def _password(self, purpose, value):
        if value is None:
            return
        if not isinstance(value, str) or not value:
            raise TenantInputError(SECRET_OPTIONS[purpose], "must not be empty")
        self.passwords[purpose] = value

    def _component(self, params, name):
        section = self._section(params, name)
        if not section.get("enabled"):
            return None
        return dict(section)

    @property
    def secret_purposes(self):
        """The Secrets the cluster references (storage only with an access key)."""
        return ("database", "cache", "admin") + (("storage",) if self.storage.get("access_key") else ())


def build_namespace(spec):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace, "labels": dict(spec.labels)}}


def build_secret(spec, purpose, value, secret_type=None):
    """The Secret for ``purpose`` with the operator's data keys; ``secret_type`` keeps an existing (immutable) type."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": spec.tenant.secret_name(purpose), "namespace": spec.namespace,
                         "labels": dict(spec.labels)},
            "type": secret_type or SECRET_TYPES[purpose],
            "data": {key: b64(value) for key in SECRET_KEYS[purpose]}}


def _put(target, key, value):
    if value is not None:
        target[key] = value


def build_cluster(spec):
    """The HarborCluster manifest for a tenant: a pure function of ``spec`` (``spec_overrides`` merged last).

    Returns ``(manifest, override_paths)``; the paths tell which fields came from ``spec_overrides``.
    """
    t = spec.tenant
    ingress = {"host": spec.host}
    _put(ingress, "ingressClassName", spec.ingress_class_name)
    _put(ingress, "controller", spec.controller)
    if spec.ingress_annotations:
        ingress["annotations"] = dict(spec.ingress_annotations)
    expose = {"core": {"ingress": ingress}}
    if spec.tls_secret:
        expose["core"]["tls"] = {"certificateRef": spec.tls_secret}

    postgresql = {"hosts": [{"host": spec.db["host"], "port": spec.db["port"]}], "username": spec.db["username"],
                  "passwordRef": t.secret_name("database"), "prefix": spec.db["prefix"]}
    _put(postgresql, "sslMode", spec.db["ssl_mode"])
    redis = {"host": spec.cache["host"], "port": spec.cache["port"], "sentinelMasterSet": spec.cache["master_set"],
             "passwordRef": t.secret_name("cache")}

    st = spec.storage
    s3 = {"region": st["region"], "bucket": st["bucket"]}
    for option, field in (("endpoint", "regionendpoint"), ("secure", "secure"), ("v4auth", "v4auth"),
                          ("encrypt", "encrypt"), ("key_id", "keyid"), ("root_directory", "rootdirectory"),
                          ("skip_verify", "skipverify"), ("storage_class", "storageclass"),
                          ("chunk_size", "chunksize"), ("certificate_secret", "certificateRef")):
        _put(s3, field, st.get(option))
    if st.get("access_key"):
        s3["accesskey"] = st["access_key"]
        s3["secretkeyRef"] = t.secret_name("storage")
    storage = {"kind": "S3", "spec": {"s3": s3}}
    if st.get("redirect") is not None:
        storage["spec"]["redirect"] = {"enable": bool(st["redirect"])}

    core = {"tokenIssuer": dict(spec.token_issuer)}
    _put(core, "maxIdleConnections", spec.max_idle)
    _put(core, "maxOpenConnections", spec.max_open)

    out = {
        "version": spec.version,
        "externalURL": spec.external_url,
        "harborAdminPasswordRef": t.secret_name("admin"),
        "core": core,
        "expose": expose,
        "database": {"kind": "PostgreSQL", "spec": {"postgresql": postgresql}},
        "cache": {"kind": "Redis", "spec": {"redis": redis}},
        "storage": storage,
    }
    for component, replicas in spec.replicas.items():
        out.setdefault(component, {})["replicas"] = replicas
    _put(out, "logLevel", spec.log_level)
    if spec.image_source:
        source = {}
        _put(source, "repository", spec.image_source.get("repository"))
        _put(source, "tagSuffix", spec.image_source.get("tag_suffix"))
        if source:
            out["imageSource"] = source
    if spec.trivy:
        trivy = {"storage": {"reportsPersistentVolume": {"claimName": spec.trivy["reports_claim"]},
                             "cachePersistentVolume": {"claimName": spec.trivy["cache_claim"]}}}
        for option, field in (("skip_update", "skipUpdate"), ("offline_scan", "offlineScan"),
                              ("github_token_secret", "githubTokenRef"), ("replicas", "replicas")):
            _put(trivy, field, spec.trivy.get(option))
        out["trivy"] = trivy
    if spec.notary:
        notary = {}
        _put(notary, "migrationEnabled", spec.notary.get("migration_enabled"))
        if spec.notary.get("server_replicas") is not None:
            notary["server"] = {"replicas": spec.notary["server_replicas"]}
        if spec.notary.get("signer_replicas") is not None:
            notary["signer"] = {"replicas": spec.notary["signer_replicas"]}
        out["notary"] = notary
        expose["notary"] = {"ingress": {"host": spec.notary["host"]}}
        _put(expose["notary"]["ingress"], "ingressClassName", spec.ingress_class_name)
        _put(expose["notary"]["ingress"], "controller", spec.controller)
        if spec.notary.get("tls_secret"):
            expose["notary"]["tls"] = {"certificateRef": spec.notary["tls_secret"]}
    if spec.chartmuseum:
        chartmuseum = {}
        _put(chartmuseum, "absoluteUrl", spec.chartmuseum.get("absolute_url"))
        _put(chartmuseum, "replicas", spec.chartmuseum.get("replicas"))
        out["chartmuseum"] = chartmuseum

    out = deep_merge(out, spec.spec_overrides)
    metadata = {"name": spec.name, "namespace": spec.namespace, "labels": dict(spec.labels)}
    if spec.harbor_class:
        metadata["annotations"] = {HARBOR_CLASS_ANNOTATION: spec.harbor_class}
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": out}
    override_paths = {("spec",) + path for path in _leaf_paths(spec.spec_overrides) if path}
    return manifest, override_paths


# --------------------------------------------------------------------------- the installed CRD

class CrdSchema:
    """The openAPI schema of the installed CRD's version: which fields exist (values are the server's to check)."""

    def __init__(self, crd, version=VERSION):
        self.name = (crd.get("metadata") or {}).get("name", CRD_NAME)
        versions = {v.get("name"): v for v in (crd.get("spec") or {}).get("versions") or []}
        entry = versions.get(version)
        if entry is None or not entry.get("served", True):
            raise FleetError(f"the installed CRD {self.name} does not serve {version} (it serves "
                             f"{', '.join(sorted(v for v in versions if versions[v].get('served', True))) or 'nothing'})")
        self.version = version
        self.root = (entry.get("schema") or {}).get("openAPIV3Schema") or {}

    def unknown_fields(self, obj):
        """Dotted paths in ``obj`` that the schema does not declare (the apiserver would refuse or prune them)."""
        found = []
        self._walk(obj, self.root, (), found)
        return found

    def _walk(self, value, node, path, found):
        if not node or node.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            props = node.get("properties")
            extra = node.get("additionalProperties")
            for key, sub in value.items():
                if path == () and key in ("apiVersion", "kind", "metadata"):
                    continue
                if props is not None and key in props:
                    self._walk(sub, props[key], path + (key,), found)
                elif isinstance(extra, dict):
                    self._walk(sub, extra, path + (key,), found)
                elif extra is True:
                    continue
                elif props is not None or node.get("type") == "object":
                    found.append(path + (key,))
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                self._walk(item, node["items"], path, found)

    def has(self, path):
        node = self.root
        for key in path:
            props = node.get("properties") or {}
            if key not in props:
                return False
            node = props[key]
        return True


def fit_to_schema(manifest, override_paths, schema):
    """Drop per-plan fields the installed CRD lacks (returned) and refuse any other unknown field."""
    dropped = []
    for path in schema.unknown_fields(manifest):
        dotted = ".".join(path)
        if path in DROPPABLE_FIELDS and path not in override_paths:
            node = manifest
            for key in path[:-1]:
                node = node[key]
            node.pop(path[-1], None)
            dropped.append(dotted)
            continue
        from_overrides = any(path[:len(p)] == p or p[:len(path)] == path for p in override_paths)
        top = path[1] if len(path) > 1 else ""
        option = "spec_overrides" if from_overrides else OPTION_OF_SPEC_FIELD.get(top, "spec_overrides")
        raise TenantInputError(option, f"{dotted} is not a field of the installed {schema.name} "
                                       f"({schema.version}); this operator release does not support it")
    core = manifest["spec"].get("core")
    if core is not None and not core:
        manifest["spec"].pop("core")
    return dropped


# --------------------------------------------------------------------------- readiness and waiting

READINESS_CONDITIONS = (("InProgress", "False"), ("Failed", "False"), ("ServiceReady", "True"))


def conditions_of(obj):
    out = []
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type"):
            out.append({"type": cond["type"], "status": cond.get("status"), "reason": cond.get("reason"),
                        "message": cond.get("message"), "last_transition_time": cond.get("lastTransitionTime")})
    return out


def readiness(obj):
    """The operator's readiness rule as a pure predicate over a HarborCluster object.

    Ready when ``status.observedGeneration == metadata.generation``, InProgress is False, Failed is False,
    ServiceReady is True and ``status.status`` is ``healthy`` (InProgress/Failed may be absent: not in progress,
    not failed). Returns a dict with ``ready``, ``status``, the generations, ``conditions`` and ``reasons``.
    """
    meta = (obj or {}).get("metadata") or {}
    status = (obj or {}).get("status") or {}
    conditions = conditions_of(obj)
    by_type = {c["type"]: c for c in conditions}
    reasons = []
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if observed is None or observed != generation:
        reasons.append(f"observedGeneration {observed} is not generation {generation} (not reconciled yet)")
    for ctype, wanted in READINESS_CONDITIONS:
        got = (by_type.get(ctype) or {}).get("status")
        if got is None and wanted == "False":
            continue
        if got != wanted:
            reasons.append(f"{ctype} is {got or 'missing'}, not {wanted}")
    overall = status.get("status") or "unknown"
    if overall != "healthy":
        reasons.append(f"status is {overall}, not healthy")
    if meta.get("deletionTimestamp"):
        reasons.append("being deleted")
    return {"ready": not reasons, "status": overall, "generation": generation, "observed_generation": observed,
            "conditions": conditions, "reasons": reasons}


def format_conditions(conditions):
    if not conditions:
        return "no conditions"
    parts = []
    for cond in conditions:
        text = f"{cond['type']}={cond.get('status')}"
        detail = ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x)
        parts.append(f"{text} ({detail})" if detail else text)
    return "; ".join(parts)


def poll(fetch, done, timeout, interval=0.5, max_interval=2.0, clock=time.monotonic, sleep=time.sleep):
    """Call ``fetch()`` until ``done(value)`` or ``timeout`` seconds pass (monotonic clock).

    Returns ``(True, value)`` or ``(False, last value)``. The interval grows by half up to ``max_interval``.
    """
    deadline = clock() + timeout
    while True:
        value = fetch()
        if done(value):
            return True, value
        remaining = deadline - clock()
        if remaining <= 0:
            return False, value
        sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)


# --------------------------------------------------------------------------- the client

RETRY_STATUSES = (429, 502, 503, 504)
RETRY_ATTEMPTS = 4


def new_api_client(params, pool_size=10):
    """One ApiClient from an explicit host + token, a kubeconfig (+ context) or the in-cluster service account."""
    configuration = k8s_client.Configuration()
    try:
        if params.get("host"):
            configuration.host = params["host"]
            if params.get("api_key"):
                configuration.api_key = {"authorization": "Bearer " + params["api_key"]}
        elif params.get("kubeconfig") or params.get("context") or not _in_cluster():
            k8s_config.load_kube_config(config_file=params.get("kubeconfig"), context=params.get("context"),
                                        client_configuration=configuration, persist_config=False)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise FleetError(f"cannot load the Kubernetes client configuration: {exc}") from None
    if params.get("ca_cert"):
        configuration.ssl_ca_cert = params["ca_cert"]
    if params.get("validate_certs") is False:
        configuration.verify_ssl = False
    configuration.connection_pool_maxsize = max(int(pool_size), 4)
    return k8s_client.ApiClient(configuration)


def _in_cluster():
    import os
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class KubeClient:
    """Raw-JSON access to the API server: one ApiClient (thread-safe connection pool) per module run."""

    def __init__(self, params, pool_size=10, api_client=None, sleep=time.sleep):
        self.api = api_client or new_api_client(params, pool_size)
        self.timeout = params.get("request_timeout") or 30
        self.sleep = sleep
        self.calls = 0

    def close(self):
        try:
            self.api.close()
        except Exception:  # pylint: disable=broad-except
            pass  # best effort

    def request(self, method, path, what, query=None, body=None, content_type="application/json"):
        """One API call with retries for throttling and unavailable servers; returns parsed JSON."""
        delay = 0.5
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            self.calls += 1
            try:
                response = self.api.call_api(
                    path, method, query_params=list(query or []),
                    header_params={"Accept": "application/json", "Content-Type": content_type},
                    body=body, auth_settings=["BearerToken"], _preload_content=False,
                    _return_http_data_only=True, _request_timeout=self.timeout)
                data = response.data
                return json.loads(data) if data else {}
            except ApiException as exc:
                if exc.status in RETRY_STATUSES and attempt < RETRY_ATTEMPTS:
                    self.sleep(_retry_after(exc, delay))
                    delay *= 2
                    continue
                raise api_error(exc, what) from None
            except Urllib3Error as exc:
                if attempt < RETRY_ATTEMPTS:
                    self.sleep(delay)
                    delay *= 2
                    continue
                raise FleetError(f"{what}: the Kubernetes API at {self.api.configuration.host} is unreachable: "
                                 f"{type(exc).__name__}") from None
        raise FleetError(f"{what}: gave up after {RETRY_ATTEMPTS} attempts")  # pragma: no cover

    # reads
    def get(self, path, what):
        try:
            return self.request("GET", path, what)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path, what, label_selector=None, page=500):
        items, token = [], None
        while True:
            query = [("limit", page)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            result = self.request("GET", path, what, query)
            items.extend(result.get("items") or [])
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items

    # writes
    def apply(self, manifest, force=False, dry_run=False):
        """Server-side apply of ``manifest`` with the collection's field manager; returns the resulting object."""
        query = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        return self.request("PATCH", object_path(manifest), describe_object(manifest), query, manifest,
                            "application/apply-patch+yaml")

    def create_dry_run(self, manifest, namespace):
        """Validate ``manifest`` by a dry-run create under a generated name in ``namespace`` (nothing is stored)."""
        body = copy.deepcopy(manifest)
        meta = body["metadata"]
        body["metadata"] = {"generateName": f"{meta['name']}-", "namespace": namespace,
                            "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return self.request("POST", path, describe_object(manifest),
                            [("dryRun", "All"), ("fieldValidation", "Strict"), ("fieldManager", FIELD_MANAGER)],
                            body)

    def delete(self, path, what):
        try:
            return self.request("DELETE", path, what, body={"propagationPolicy": "Background"})
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise


def _retry_after(exc, default):
    for key, value in (getattr(exc, "headers", None) or {}).items():
        if key.lower() == "retry-after":
            try:
                return min(float(value), 10.0)
            except ValueError:
                break
    return default


def object_path(manifest):
    meta = manifest["metadata"]
    kind = manifest["kind"]
    if kind == "Namespace":
        return f"/api/v1/namespaces/{meta['name']}"
    if kind == "Secret":
        return f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}"
    if kind == KIND:
        return cluster_path(meta["namespace"], meta["name"])
    raise ValueError(f"no path for kind {kind}")


def cluster_path(namespace, name=None):
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def describe_object(manifest):
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name")
    return f"{manifest['kind']} {where}"


def tenant_selector(tenant_ids):
    """One label selector for a set of tenants (small runs) or the whole managed fleet."""
    if tenant_ids and len(tenant_ids) <= SMALL_RUN:
        return f"{TENANT_LABEL} in ({','.join(sorted(tenant_ids))})"
    return MANAGED_BY_SELECTOR


def read_crd_schema(kube):
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}", f"CRD {CRD_NAME}")
    if crd is None:
        raise FleetError(f"the HarborCluster CRD ({CRD_NAME}) is not installed in this cluster: install the "
                         "Harbor Operator (or its CRDs) first")
    return CrdSchema(crd)


def list_clusters(kube, namespace=None, label_selector=None):
    path = cluster_path(namespace) if namespace else f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    return kube.list(path, f"list {PLURAL}", label_selector)


# --------------------------------------------------------------------------- the converge backend

class TenantState:
    """What the bulk read found for one tenant, and what the comparison decided."""

    __slots__ = ("key", "namespace", "secrets", "cluster", "error", "skipped", "manifest", "dropped",
                 "cluster_changes", "removals", "validation")

    def __init__(self, key):
        self.key = key
        self.namespace = None
        self.secrets = {}
        self.cluster = None
        self.error = None
        self.skipped = False
        self.manifest = None
        self.dropped = []
        self.cluster_changes = False
        self.removals = []
        self.validation = None


class HarborClusterBackend:
    """read → plan for ``FleetModule.converge``; one client, one CRD read and one LIST per kind per run."""

    record_key = "calls"
    describe_error = staticmethod(describe_error)

    def __init__(self, kube, check_mode=False, force_conflicts=False, wait=False, wait_timeout=600,
                 concurrency=8, return_spec=False, warn=None):
        self.kube = kube
        self.check_mode = check_mode
        self.force = force_conflicts
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.concurrency = concurrency
        self.return_spec = return_spec
        self.warn = warn or (lambda msg: None)
        self.schema = None
        self.states = {}
        self.timings = {}

    # ------------------------------------------------------------------ read
    def read(self, specs):
        started = time.monotonic()
        self.states = {spec.key: TenantState(spec.key) for spec in specs}
        ids = [spec.key for spec in specs]
        present = [spec for spec in specs if spec.state == "present"]
        if present:
            self.schema = read_crd_schema(self.kube)
        selector = tenant_selector(ids)
        wanted_ns = {spec.namespace: spec for spec in specs}
        for ns in self.kube.list("/api/v1/namespaces", "list namespaces", selector):
            spec = wanted_ns.get(ns["metadata"]["name"])
            if spec is not None and (ns["metadata"].get("labels") or {}).get(TENANT_LABEL) == spec.key:
                self.states[spec.key].namespace = ns
        if present:
            wanted_secrets = {(spec.namespace, spec.tenant.secret_name(p)): (spec, p)
                              for spec in present for p in SECRET_KEYS}
            for secret in self.kube.list("/api/v1/secrets", "list secrets", selector):
                found = wanted_secrets.get((secret["metadata"].get("namespace"), secret["metadata"]["name"]))
                if found is not None:
                    self.states[found[0].key].secrets[found[1]] = secret
        self._read_clusters(specs)
        self.timings["read"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        for spec in present:
            state = self.states[spec.key]
            try:
                self._compare(spec, state)
            except Exception as exc:  # pylint: disable=broad-except
                state.error = exc
        dropped = sorted({field for state in self.states.values() for field in state.dropped})
        if dropped:
            count = sum(1 for state in self.states.values() if state.dropped)
            self.warn(f"the installed {CRD_NAME} has no {', '.join(dropped)}: left out for {count} tenant(s)")
        if self.check_mode:
            self._validate_by_dry_run([spec for spec in present if self.states[spec.key].cluster_changes
                                       and self.states[spec.key].error is None])
        self.timings["compare"] = round(time.monotonic() - started, 3)
        return self.states

    def _read_clusters(self, specs):
        if len(specs) <= 5:  # a GET each is cheaper than listing a large fleet
            for spec in specs:
                self.states[spec.key].cluster = self.kube.get(cluster_path(spec.namespace, spec.name),
                                                              f"get {KIND} {spec.namespace}/{spec.name}")
            return
        wanted = {(spec.namespace, spec.name): spec for spec in specs}
        for obj in list_clusters(self.kube):
            meta = obj["metadata"]
            spec = wanted.get((meta.get("namespace"), meta.get("name")))
            if spec is not None:
                self.states[spec.key].cluster = obj

    def _compare(self, spec, state):
        manifest, override_paths = build_cluster(spec)
        state.dropped = fit_to_schema(manifest, override_paths, self.schema)
        state.manifest = manifest
        live = state.cluster
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            raise FleetError(f"{KIND} {spec.namespace}/{spec.name} is being deleted (finalizers: "
                             f"{', '.join(live['metadata'].get('finalizers') or []) or 'none'}); "
                             "wait for it to go before creating it again")
        state.cluster_changes = not matches(live, manifest)
        state.removals = pending_removals(live, manifest) if live is not None else []

    def _validate_by_dry_run(self, specs):
        """Check mode: let the API server validate (and detect conflicts for) every cluster that would change."""
        def work(item, _resource):
            spec = by_key[item.key]
            state = self.states[item.key]
            if state.namespace is not None:
                self.kube.apply(state.manifest, force=self.force, dry_run=True)
                state.validation = "server-side apply dry run"
            else:
                try:
                    self.kube.create_dry_run(state.manifest, "default")
                    state.validation = "dry-run create (namespace not created yet)"
                except KubeApiError as exc:
                    if exc.status not in (403, 404):
                        raise
                    state.validation = f"not validated: namespace {spec.namespace} does not exist yet"

        by_key = {spec.key: spec for spec in specs}
        items = [self.states[spec.key] for spec in specs]
        run_batch(items, work, concurrency=self.concurrency, describe_error=lambda exc: exc)
        for item in items:
            if item.error is not None and not isinstance(item.error, BaseException):
                item.error = FleetError(str(item.error))

    # ------------------------------------------------------------------ plan
    def plan(self, spec, state):
        if state.error is not None:
            raise state.error
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result.update(namespace=spec.namespace, name=spec.name)
        if spec.state == "absent":
            self._plan_absent(spec, state, plan)
        else:
            self._plan_present(spec, state, plan)
        return plan

    def _add_apply(self, plan, action, manifest):
        force = self.force

        def apply(_resource):
            self.kube.apply(manifest, force=force)

        plan.add(action, apply, f"server-side apply {describe_object(manifest)} (field manager {FIELD_MANAGER}"
                                f"{', force' if force else ''})")

    def _plan_present(self, spec, state, plan):
        namespace = build_namespace(spec)
        ns_live = state.namespace
        if ns_live is not None and ns_live["metadata"].get("deletionTimestamp"):
            raise FleetError(f"namespace {spec.namespace} is being deleted (Terminating); nothing can be created in "
                             "it until it is gone")
        plan.before["namespace"] = None if ns_live is None else {"labels": (ns_live["metadata"].get("labels") or {})}
        plan.after["namespace"] = {"labels": dict((plan.before["namespace"] or {}).get("labels") or {},
                                                  **namespace["metadata"]["labels"])}
        if ns_live is None or not matches(ns_live, namespace):
            self._add_apply(plan, f"{'create' if ns_live is None else 'update'} namespace {spec.namespace}",
                            namespace)

        secret_states = {}
        plan.before["secrets"], plan.after["secrets"] = {}, {}
        for purpose in spec.secret_purposes:
            secret_states[purpose] = self._plan_secret(spec, state, plan, purpose)
        plan.result["secrets"] = secret_states

        live = state.cluster
        manifest = state.manifest
        plan.before["cluster"] = None if live is None else _cluster_view(live)
        plan.after["cluster"] = _predict(live, manifest, state.removals) if state.cluster_changes \
            else plan.before["cluster"]
        if state.cluster_changes:
            verb = "create" if live is None else "update"
            self._add_apply(plan, f"{verb} {KIND} {spec.namespace}/{spec.name}", manifest)
        if state.removals:
            plan.result["removed_fields"] = state.removals
        if state.dropped:
            plan.result["dropped_fields"] = state.dropped
        if state.validation:
            plan.result["validation"] = state.validation
        ready = readiness(live) if live is not None and not state.cluster_changes else None
        plan.result["status"] = ready["status"] if ready else None
        plan.result["ready"] = bool(ready and ready["ready"])
        if self.return_spec:
            plan.result["spec"] = manifest["spec"]

    def _plan_secret(self, spec, state, plan, purpose):
        name = spec.tenant.secret_name(purpose)
        live = state.secrets.get(purpose)
        value = spec.passwords.get(purpose)
        if live is None and value is None:
            live = self.kube.get(f"/api/v1/namespaces/{spec.namespace}/secrets/{name}", f"get Secret {name}") \
                if state.namespace is not None else None  # not labelled by us: look before asking for a value
        keys = SECRET_KEYS[purpose]
        live_data = (live or {}).get("data") or {}
        if value is None:
            if live is None:
                if purpose != "admin":
                    raise TenantInputError(SECRET_OPTIONS[purpose], f"is required to create Secret "
                                                                    f"{spec.namespace}/{name}")
                value = generate_password()
            else:
                missing = [key for key in keys if key not in live_data]
                if missing:
                    raise TenantInputError(SECRET_OPTIONS[purpose], f"Secret {spec.namespace}/{name} has no "
                                                                    f"{', '.join(missing)}; give the value to write it")
                view = {key: "unchanged" for key in keys}
                plan.before["secrets"][name] = dict(view)
                plan.after["secrets"][name] = view
                return "unchanged"
        manifest = build_secret(spec, purpose, value, (live or {}).get("type"))
        if live is None:
            plan.before["secrets"][name] = None
            plan.after["secrets"][name] = {key: "created" for key in keys}
            self._add_apply(plan, f"create Secret {spec.namespace}/{name}"
                                  f"{' (generated password)' if purpose == 'admin' else ''}", manifest)
            return "created"
        key_states = {key: "unchanged" if live_data.get(key) == manifest["data"][key] else "changed" for key in keys}
        plan.before["secrets"][name] = {key: "unchanged" if s == "unchanged" else "(previous value)"
                                        for key, s in key_states.items()}
        plan.after["secrets"][name] = key_states
        if not matches(live, manifest):
            self._add_apply(plan, f"update Secret {spec.namespace}/{name}", manifest)
            return "changed" if "changed" in key_states.values() else "unchanged"
        return "unchanged"

    def _plan_absent(self, spec, state, plan):
        live = state.cluster
        plan.before = {"cluster": None if live is None else _cluster_view(live),
                       "namespace": None if state.namespace is None else {"name": spec.namespace}}
        plan.after = {"cluster": None,
                      "namespace": None if spec.delete_namespace or state.namespace is None else {"name": spec.namespace}}
        if live is not None:
            path = cluster_path(spec.namespace, spec.name)
            what = f"{KIND} {spec.namespace}/{spec.name}"
            uid = live["metadata"].get("uid")

            def delete(_resource):
                self.kube.delete(path, f"delete {what}")
                self._wait_gone(path, what, uid)

            plan.add(f"delete {what}", delete, f"DELETE {path} and wait for removal")
        ns_live = state.namespace
        if spec.delete_namespace and ns_live is not None and not ns_live["metadata"].get("deletionTimestamp"):
            ns_path = f"/api/v1/namespaces/{spec.namespace}"
            plan.add(f"delete namespace {spec.namespace}",
                     lambda _r: self.kube.delete(ns_path, f"delete namespace {spec.namespace}"), f"DELETE {ns_path}")

    def _wait_gone(self, path, what, uid):
        def fetch():
            return self.kube.get(path, f"get {what}")

        gone, last = poll(fetch, lambda obj: obj is None or obj["metadata"].get("uid") != uid, self.wait_timeout)
        if not gone:
            meta = last["metadata"]
            raise FleetError(f"{what} still exists after {self.wait_timeout}s (deletionTimestamp "
                             f"{meta.get('deletionTimestamp')}, finalizers: "
                             f"{', '.join(meta.get('finalizers') or []) or 'none'})")

    # ------------------------------------------------------------------ finalize (wait)
    def finalize(self, plan, _resource):
        """After a real apply: wait for the readiness rule (``wait: true``); failures show every condition."""
        spec_state = self.states.get(plan.key)
        if not self.wait or spec_state is None or spec_state.manifest is None:
            return
        if not plan.changed and plan.result.get("ready"):
            return
        meta = spec_state.manifest["metadata"]
        path = cluster_path(meta["namespace"], meta["name"])
        what = f"{KIND} {meta['namespace']}/{meta['name']}"
        ready, last = poll(lambda: self.kube.get(path, f"get {what}"),
                           lambda obj: obj is not None and readiness(obj)["ready"], self.wait_timeout)
        verdict = readiness(last) if last is not None else None
        plan.result["status"] = verdict["status"] if verdict else None
        plan.result["ready"] = ready
        if verdict:
            plan.result["conditions"] = verdict["conditions"]
        if not ready:
            if verdict is None:
                raise FleetError(f"{what} does not exist after {self.wait_timeout}s")
            raise FleetError(f"{what} is not ready after {self.wait_timeout}s: status {verdict['status']}, "
                             f"observedGeneration {verdict['observed_generation']} of generation "
                             f"{verdict['generation']}; conditions: {format_conditions(verdict['conditions'])}")


def _cluster_view(obj):
    meta = obj.get("metadata") or {}
    view = {"labels": meta.get("labels") or {}, "spec": obj.get("spec") or {}}
    if meta.get("annotations"):
        view["annotations"] = meta["annotations"]
    return view


def _predict(live, manifest, removals):
    """The cluster after the apply, as far as we can tell without the server's defaults (for --diff)."""
    after = _cluster_view(live) if live is not None else {"labels": {}, "spec": {}}
    after = copy.deepcopy(after)
    for dotted in removals:
        path = dotted.split(".")
        node = {"spec": after["spec"], "metadata": {"labels": after["labels"],
                                                    "annotations": after.get("annotations", {})}}
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    after["labels"] = dict(after["labels"], **manifest["metadata"].get("labels", {}))
    annotations = dict(after.get("annotations") or {}, **manifest["metadata"].get("annotations", {}))
    if annotations:
        after["annotations"] = annotations
    after["spec"] = deep_merge(after["spec"], manifest["spec"])
    return after


# --------------------------------------------------------------------------- info

def summarize_cluster(obj):
    """What ``harbor_cluster_info`` returns for one HarborCluster: identity, readiness and a spec summary."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    verdict = readiness(obj)
    database = ((spec.get("database") or {}).get("spec") or {}).get("postgresql") or {}
    hosts = database.get("hosts") or [{}]
    redis = ((spec.get("cache") or {}).get("spec") or {}).get("redis") or {}
    s3 = ((spec.get("storage") or {}).get("spec") or {}).get("s3") or {}
    ingress = (((spec.get("expose") or {}).get("core") or {}).get("ingress") or {})
    return {
        "tenant": (meta.get("labels") or {}).get(TENANT_LABEL),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "version": spec.get("version"),
        "external_url": spec.get("externalURL"),
        "harbor_class": (meta.get("annotations") or {}).get(HARBOR_CLASS_ANNOTATION),
        "status": verdict["status"],
        "ready": verdict["ready"],
        "reasons": verdict["reasons"],
        "generation": verdict["generation"],
        "observed_generation": verdict["observed_generation"],
        "conditions": verdict["conditions"],
        "deleting": bool(meta.get("deletionTimestamp")),
        "created": meta.get("creationTimestamp"),
        "spec": {
            "database": {"kind": (spec.get("database") or {}).get("kind"), "host": hosts[0].get("host"),
                         "port": hosts[0].get("port"), "username": database.get("username"),
                         "prefix": database.get("prefix"), "ssl_mode": database.get("sslMode")},
            "cache": {"kind": (spec.get("cache") or {}).get("kind"), "host": redis.get("host"),
                      "port": redis.get("port"), "master_set": redis.get("sentinelMasterSet")},
            "storage": {"kind": (spec.get("storage") or {}).get("kind"), "bucket": s3.get("bucket"),
                        "region": s3.get("region"), "endpoint": s3.get("regionendpoint"),
                        "access_key": s3.get("accesskey")},
            "expose": {"host": ingress.get("host"), "ingress_class_name": ingress.get("ingressClassName")},
            "components": {name: name in spec for name in ("trivy", "notary", "chartmuseum")},
            "log_level": spec.get("logLevel"),
        },
    }


def fleet_counts(summaries):
    counts = {"total": len(summaries), "ready": 0, "by_status": {}, "by_version": {}}
    for item in summaries:
        counts["ready"] += 1 if item["ready"] else 0
        counts["by_status"][item["status"]] = counts["by_status"].get(item["status"], 0) + 1
        version = item["version"] or "unknown"
        counts["by_version"][version] = counts["by_version"].get(version, 0) + 1
    return counts


# --------------------------------------------------------------------------- list-form option merging

def merge_tenant_items(items, params, dict_options, deep_options=()):
    """Per-item dict options merged over the top-level ones (the core replaces a dict option as a whole).

    ``dict_options`` merge key by key (an item's unset sub-option keeps the top-level value); ``deep_options``
    (free-form dicts such as ``spec_overrides``) merge recursively.
    """
    raw_items = params.get("tenants")
    if raw_items is None:
        return items
    for merged, raw in zip(items, raw_items):
        for name in tuple(dict_options) + tuple(deep_options):
            top, own = params.get(name), raw.get(name)
            if top is None or own is None:
                continue
            if name in deep_options:
                merged[name] = deep_merge(top, own)
            else:
                merged[name] = dict(top, **{k: v for k, v in own.items() if v is not None})
    return items


def refuse_shared_secrets(params, nested):
    """Passwords inside dict options may not be set at the top level together with ``tenants``."""
    if params.get("tenants") is None:
        return
    for option, sub in nested:
        if (params.get(option) or {}).get(sub) is not None:
            raise TenantInputError(f"{option}.{sub}", "set it on each item of tenants, not at the top level "
                                                      "(one value would be shared by every tenant)")


# --------------------------------------------------------------------------- tenant secrets (the source of truth)

SECRET_PURPOSES = tuple(SECRET_KEYS)


class TenantSecretsSpec:
    """Which of a tenant's Secrets must exist, which values to write, and which to regenerate."""

    def __init__(self, params):
        self.tenant = Tenant(params["tenant"])
        self.key = self.tenant.id
        self.namespace = self.tenant.namespace
        self.labels = dict(self.tenant.labels)
        self.ensure = list(params.get("ensure") or ())
        self.values = {}
        for purpose, value in (params.get("values") or {}).items():
            if purpose not in SECRET_PURPOSES:
                raise TenantInputError("values", f"unknown Secret {purpose!r} (one of {', '.join(SECRET_PURPOSES)})")
            if not isinstance(value, str) or not value:
                raise TenantInputError(f"values.{purpose}", "must be a non-empty string")
            self.values[purpose] = value
        self.rotate = list(params.get("rotate") or ())
        for purpose in self.ensure + self.rotate:
            if purpose not in SECRET_PURPOSES:
                raise TenantInputError("ensure", f"unknown Secret {purpose!r} (one of {', '.join(SECRET_PURPOSES)})")
        if "storage" in self.ensure or "storage" in self.rotate:
            raise TenantInputError("ensure", "the storage secret key comes from the object store: pass it in "
                                             "values.storage, it cannot be generated")
        both = sorted(set(self.rotate) & set(self.values))
        if both:
            raise TenantInputError("rotate", f"{', '.join(both)} is both given in values and to be rotated")
        if "cache" in self.values and not is_url_safe_password(self.values["cache"]):
            raise TenantInputError("values.cache", "must be letters and digits only: the operator breaks on "
                                                   "URL-special characters in Redis passwords (operator issue #1054)")


def _decoded(secret, purpose):
    """The value a Secret holds for ``purpose`` (its first data key wins when the keys disagree), or None."""
    data = (secret or {}).get("data") or {}
    for key in SECRET_KEYS[purpose]:
        if data.get(key):
            return base64.b64decode(data[key]).decode("utf-8")
    return None


class TenantSecretsBackend:
    """Ensure each tenant's namespace and Secrets exist, generating missing passwords once, and return the values.

    The Kubernetes Secret is the source of truth for a tenant's passwords: the first run generates them (URL-safe),
    later runs read them back, so PostgreSQL, Redis and the HarborCluster always agree. One LIST of namespaces and
    one LIST of Secrets per run.
    """

    record_key = "calls"
    describe_error = staticmethod(describe_error)

    def __init__(self, kube):
        self.kube = kube

    def read(self, specs):
        selector = tenant_selector([spec.key for spec in specs])
        namespaces = {ns["metadata"]["name"]: ns for ns in self.kube.list("/api/v1/namespaces", "list namespaces",
                                                                          selector)}
        wanted = {(spec.namespace, spec.tenant.secret_name(p)): (spec.key, p) for spec in specs for p in SECRET_KEYS}
        found = {spec.key: {"namespace": namespaces.get(spec.namespace), "secrets": {}} for spec in specs}
        for secret in self.kube.list("/api/v1/secrets", "list secrets", selector):
            hit = wanted.get((secret["metadata"].get("namespace"), secret["metadata"]["name"]))
            if hit is not None:
                found[hit[0]]["secrets"][hit[1]] = secret
        return found

    def plan(self, spec, state):
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result["namespace"] = spec.namespace
        namespace = {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": spec.namespace, "labels": spec.labels}}
        if state["namespace"] is None or not matches(state["namespace"], namespace):
            self._apply(plan, f"{'create' if state['namespace'] is None else 'label'} namespace {spec.namespace}",
                        namespace)
        states = {}
        for purpose in dict.fromkeys(spec.ensure + list(spec.values) + spec.rotate):
            live = state["secrets"].get(purpose)
            current = _decoded(live, purpose)
            if purpose in spec.values:
                value = spec.values[purpose]
            elif purpose in spec.rotate or current is None:
                value = generate_password()
            else:
                value = current
            name = spec.tenant.secret_name(purpose)
            manifest = build_secret(spec, purpose, value, (live or {}).get("type"))
            if live is None:
                states[purpose] = "created"
                self._apply(plan, f"create Secret {spec.namespace}/{name}", manifest)
            elif not matches(live, manifest):
                states[purpose] = "unchanged" if value == current else "changed"
                self._apply(plan, f"update Secret {spec.namespace}/{name}", manifest)
            else:
                states[purpose] = "unchanged"
        plan.before = {"secrets": {p: None if state["secrets"].get(p) is None else "(current value)" for p in states}}
        plan.after = {"secrets": dict(states)}
        plan.result["secrets"] = states
        # References, never values: Ansible shows a list-form result's items even for a no_log task.
        plan.result["refs"] = {purpose: {"name": spec.tenant.secret_name(purpose), "keys": list(SECRET_KEYS[purpose])}
                               for purpose in SECRET_PURPOSES
                               if purpose in states or state["secrets"].get(purpose) is not None}
        return plan

    def _apply(self, plan, action, manifest):
        plan.add(action, lambda _resource: self.kube.apply(manifest),
                 f"server-side apply {describe_object(manifest)} (field manager {FIELD_MANAGER})")


def read_tenant_passwords(kube, tenant_ids):
    """{tenant: {purpose: value}} for the Secrets that exist, from one LIST of namespaces and one of Secrets.

    For controller-side consumers only (a lookup feeding templates): no module ever returns these values.
    """
    specs = [TenantSecretsSpec({"tenant": tid}) for tid in tenant_ids]
    found = TenantSecretsBackend(kube).read(specs)
    return {spec.key: {purpose: _decoded(secret, purpose) for purpose, secret in found[spec.key]["secrets"].items()
                       if _decoded(secret, purpose) is not None}
            for spec in specs}


def store_tenant_secret(kube, tenant_id, purpose, value):
    """Write one value into a tenant's Secret (namespace created when missing); returns "<namespace>/<name>"."""
    spec = TenantSecretsSpec({"tenant": tenant_id, "ensure": [], "values": {purpose: value}})
    backend = TenantSecretsBackend(kube)
    apply_plan(backend.plan(spec, backend.read([spec])[spec.key]), None)
    return f"{spec.namespace}/{spec.tenant.secret_name(purpose)}"


class SecretStore:
    """``store(tenant, access key id, secret)`` for tenant_bucket: a new S3 key's secret goes into the tenant's
    storage Secret. The client is made on first use (most runs create no key) and shared by the worker threads."""

    def __init__(self, params):
        self.params = params
        self.kube = None
        self._lock = threading.Lock()

    def __call__(self, tenant_id, access_key_id, secret):
        if k8s_client is None:
            raise FleetError("secret_store needs the Python library kubernetes")
        with self._lock:
            if self.kube is None:
                self.kube = KubeClient(self.params)
        return store_tenant_secret(self.kube, tenant_id, "storage", secret)

    def close(self):
        if self.kube is not None:
            self.kube.close()


def fleet_status(tenant_ids, kubeconfig=None, context=None):
    """{tenant: {status, ready, version}} from one LIST of HarborClusters (for the inventory plugin)."""
    kube = KubeClient({"kubeconfig": kubeconfig, "context": context})
    wanted = set(tenant_ids)
    try:
        out = {}
        for obj in list_clusters(kube, label_selector=tenant_selector(sorted(wanted))):
            summary = summarize_cluster(obj)
            if summary["tenant"] in wanted and summary["namespace"] == Tenant(summary["tenant"]).namespace:
                out[summary["tenant"]] = {"status": summary["status"], "ready": summary["ready"],
                                          "version": summary["version"], "reasons": summary["reasons"]}
        return out
    finally:
        kube.close()
