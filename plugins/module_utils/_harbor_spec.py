# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HarborCluster spec: validated inputs (``HarborClusterSpec``), the manifest they make (``build_cluster``) and its
fit to the CRD the cluster has installed (``CrdSchema``). Pure functions only: nothing here calls the API.
"""

from __future__ import annotations

import json
import re

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    PEM_CERT_RE, FleetError, TenantInputError, deep_merge, read_ca_bundle)
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import _leaf_paths
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    DEFAULT_PG_SSL_MODE, PG_SSL_MODES, Tenant, check_spec_overrides, is_url_safe_password, validate_bucket_name,
    validate_db_prefix, validate_dns_label, validate_master_set)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import SECRET_OPTIONS

GROUP = "goharbor.io"
VERSION = "v1beta1"
KIND = "HarborCluster"
PLURAL = "harborclusters"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"
HARBOR_CLASS_ANNOTATION = "goharbor.io/harbor-class"
# Per-plan fields only some CRD releases have: dropped (with a warning) when the installed CRD lacks them.
DROPPABLE_FIELDS = {("spec", "core", "maxIdleConnections"): "core_max_idle_connections",
                    ("spec", "core", "maxOpenConnections"): "core_max_open_connections"}
# Option that produced each top-level spec field, to name it in errors.
OPTION_OF_SPEC_FIELD = {"core": "token_issuer", "expose": "expose", "database": "database", "cache": "cache",
                        "storage": "storage", "trivy": "trivy", "notary": "notary", "chartmuseum": "chartmuseum",
                        "imageSource": "image_source", "logLevel": "log_level", "externalURL": "external_url",
                        "version": "version", "harborAdminPasswordRef": "admin_password"}
REPLICA_COMPONENTS = ("core", "portal", "registry", "registryctl", "jobservice")
# The components that connect to PostgreSQL (core, jobservice) or S3 (registry) and so trust the CAs that sign
# their certificates (certificateRefs)
STORE_CLIENTS = {"database": ("core", "jobservice"), "storage": ("registry",)}
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
URL_RE = re.compile(r"https?://[^\s/]+(/\S*)?")


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
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TenantInputError(field, f"{value!r} is not a whole number")
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
        if extra is not None and not isinstance(extra, dict):
            raise TenantInputError("labels", "must be a dictionary")
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
        if not isinstance(self.version, str) or not VERSION_RE.fullmatch(self.version):
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
        if not isinstance(self.external_url, str) or not URL_RE.fullmatch(self.external_url):
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
        ssl_mode = db.get("ssl_mode") or DEFAULT_PG_SSL_MODE
        if ssl_mode not in PG_SSL_MODES:
            raise TenantInputError("database.ssl_mode", f"{ssl_mode!r} is not one of {', '.join(PG_SSL_MODES)}")
        self.db = {
            "host": db["host"], "port": 5432 if db.get("port") is None else db["port"], "ssl_mode": ssl_mode,
            "username": _validate_username(db.get("username") or t.db_role),
            "prefix": validate_db_prefix(db.get("prefix") or t.db_prefix, "database.prefix"),
        }
        _int_at_least(self.db["port"], "database.port", 1)
        self._password("database", db.get("password"))
        self.trusted_by = {}  # store -> its CA certificates (PEM)
        if db.get("ca_cert"):
            self.trusted_by["database"] = read_ca_bundle(db["ca_cert"], "database.ca_cert")

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
        if self.storage.pop("ca_cert", None):
            self.trusted_by["storage"] = read_ca_bundle(storage["ca_cert"], "storage.ca_cert")
        if self.trusted_by:  # one Secret for both stores' CAs, each certificate once (public, but written by the
            # same code path as the passwords' Secrets)
            certs = [cert for pem in self.trusted_by.values() for cert in PEM_CERT_RE.findall(pem)]
            self.passwords["trust"] = "\n".join(dict.fromkeys(certs)) + "\n"

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
        for component, value in self._section(params, "replicas").items():
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
        self.spec_overrides = check_spec_overrides(params.get("spec_overrides"))

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
        """The Secrets the cluster references (storage only with an access key, trust only with a CA)."""
        return ("database", "cache", "admin") + (("storage",) if self.storage.get("access_key") else ()) \
            + (("trust",) if "trust" in self.passwords else ())


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
    if "trust" in spec.passwords:  # added to any certificateRefs the overrides give
        trust = t.secret_name("trust")
        for component in sorted({c for store in spec.trusted_by for c in STORE_CLIENTS[store]}):
            refs = list((out.get(component) or {}).get("certificateRefs") or [])
            out.setdefault(component, {})["certificateRefs"] = refs + ([trust] if trust not in refs else [])
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

    def invalid_values(self, obj):
        """What the API server would refuse in ``obj``'s values (types, enums, bounds, patterns, required fields),
        phrased like its own messages. For check mode where no server-side dry run can be made without writing
        outside the tenant's namespace (it does not exist yet); CEL rules are left to the server."""
        found = []
        self._check(obj.get("spec"), (self.root.get("properties") or {}).get("spec") or {}, "spec", found)
        return found

    def _check(self, value, node, path, found):
        if not node or value is None:
            return
        kind = node.get("type")
        if node.get("x-kubernetes-int-or-string"):
            wanted = (int, str)
        else:
            wanted = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
                      "boolean": bool}.get(kind)
        if wanted is not None and (not isinstance(value, wanted) or (isinstance(value, bool) and kind != "boolean")):
            found.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body must be of type {kind}")
            return
        if "enum" in node and value not in node["enum"]:
            found.append(f"{path}: Unsupported value: {json.dumps(value)}: supported values: "
                         + ", ".join(json.dumps(v) for v in node["enum"]))
        bounds = (("minimum", lambda v, b: v >= b, "greater than or equal to"),
                  ("maximum", lambda v, b: v <= b, "less than or equal to"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for key, holds, words in bounds:
                if key in node and not holds(value, node[key]):
                    found.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be {words} "
                                 f"{node[key]}")
        if isinstance(value, str):
            if "minLength" in node and len(value) < node["minLength"]:
                found.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be at least "
                             f"{node['minLength']} chars long")
            if "maxLength" in node and len(value) > node["maxLength"]:
                found.append(f"{path}: Too long: may not be longer than {node['maxLength']}")
            if "pattern" in node and not _matches(node["pattern"], value):
                found.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body should match "
                             f"'{node['pattern']}'")
        if isinstance(value, list):
            if "minItems" in node and len(value) < node["minItems"]:
                found.append(f"{path}: Invalid value: {len(value)}: {path} in body should have at least "
                             f"{node['minItems']} items")
            for index, item in enumerate(value):
                self._check(item, node.get("items") or {}, f"{path}[{index}]", found)
        if isinstance(value, dict):
            for required in node.get("required") or []:
                if required not in value:
                    found.append(f"{path}.{required}: Required value")
            props, extra = node.get("properties") or {}, node.get("additionalProperties")
            for key, sub in value.items():
                child = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
                self._check(sub, child, f"{path}.{key}", found)

    def has(self, path):
        node = self.root
        for key in path:
            props = node.get("properties") or {}
            if key not in props:
                return False
            node = props[key]
        return True


def _matches(pattern, value):
    try:
        return re.search(pattern, value) is not None
    except re.error:  # a pattern Python cannot read: the server checks it
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
