# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's namespace and Secrets: the source of truth for its passwords, written by one code path.

The Secrets carry the Harbor Operator's data keys. Passwords are generated once (URL-safe), read back on later runs,
written when given, rotated when asked. Values never leave this file in a result or a diff: plans say only whether
a Secret key is created, changed or unchanged, and results carry references (Secret names and keys).
"""

from __future__ import annotations

import base64
import threading

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, apply_plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, describe_error)
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    FIELD_MANAGER, TENANT_CLUSTER_ROLE, KubeClient, b64, describe_object, k8s_client, matches, tenant_selector)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, generate_password, is_url_safe_password)

# The operator's data keys (database: `postgres-password` on main, `postgresql-password` up to v1.4.0-rc1).
SECRET_KEYS = {
    "database": ("postgres-password", "postgresql-password"),
    "cache": ("redis-password",),
    "admin": ("secret",),
    "storage": ("secret",),
    "trust": ("ca.crt",),
}
SECRET_TYPES = {"database": "goharbor.io/postgresql", "cache": "goharbor.io/redis",
                "admin": "goharbor.io/single", "storage": "goharbor.io/single", "trust": "Opaque"}
# Which option holds the value written to each Secret (for error messages).
SECRET_OPTIONS = {"database": "database.password", "cache": "cache.password", "admin": "admin_password",
                  "storage": "storage.secret_key", "trust": "database.ca_cert"}


def build_namespace(tenant):
    """The tenant's namespace, labelled with its id (how every LIST finds the fleet's objects)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.namespace, "labels": tenant.labels}}


def build_secret(tenant, purpose, value, secret_type=None):
    """The Secret for ``purpose`` with the operator's data keys; ``secret_type`` keeps an existing (immutable) type."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": tenant.secret_name(purpose), "namespace": tenant.namespace, "labels": tenant.labels},
            "type": secret_type or SECRET_TYPES[purpose],
            "data": {key: b64(value) for key in SECRET_KEYS[purpose]}}


def plan_apply(plan, kube, action, manifest, force=False):
    """Add a server-side apply of ``manifest`` to ``plan`` (the record names the object, never its data)."""
    plan.add(action, lambda _resource: kube.apply(manifest, force=force),
             f"server-side apply {describe_object(manifest)} (field manager {FIELD_MANAGER}{', force' if force else ''})")


def plan_namespace(plan, kube, tenant, live, force=False):
    """Add the tenant's namespace to ``plan`` when it is missing or its labels differ. A namespace this run creates
    also gets the tenant ClusterRole bound to this identity when it has no cluster-wide access to Secrets."""
    manifest = build_namespace(tenant)
    if live is not None and matches(live, manifest):
        return
    if live is not None:
        plan_apply(plan, kube, f"label namespace {tenant.namespace}", manifest, force)
        return

    def create(_resource):
        kube.apply(manifest, force=force)
        kube.grant_tenant_role(tenant.namespace)
    plan.add(f"create namespace {tenant.namespace}", create,
             f"server-side apply {describe_object(manifest)} (field manager {FIELD_MANAGER}{', force' if force else ''})"
             f", then bind ClusterRole {TENANT_CLUSTER_ROLE} there if this identity needs it")


def plan_secret(plan, kube, tenant, purpose, value, live, note="", force=False):
    """The one code path that writes a tenant's Secret: add the apply of ``value`` to ``plan`` when ``live`` differs.

    Returns the Secret's state (created, changed or unchanged) and each data key's; never a value.
    """
    manifest = build_secret(tenant, purpose, value, (live or {}).get("type"))
    where = f"{tenant.namespace}/{tenant.secret_name(purpose)}"
    keys = SECRET_KEYS[purpose]
    if live is None:
        plan_apply(plan, kube, f"create Secret {where}{note}", manifest, force)
        return "created", {key: "created" for key in keys}
    live_data = live.get("data") or {}
    key_states = {key: "unchanged" if live_data.get(key) == manifest["data"][key] else "changed" for key in keys}
    if matches(live, manifest):
        return "unchanged", key_states
    plan_apply(plan, kube, f"update Secret {where}", manifest, force)
    return ("changed" if "changed" in key_states.values() else "unchanged"), key_states


# The Secrets holding passwords (trust holds public CA certificates, written by harbor_cluster).
SECRET_PURPOSES = ("database", "cache", "admin", "storage")


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
        wanted = {(spec.namespace, spec.tenant.secret_name(p)): (spec.key, p) for spec in specs for p in SECRET_PURPOSES}
        found = {spec.key: {"namespace": namespaces.get(spec.namespace), "secrets": {}} for spec in specs}
        existing = [spec.namespace for spec in specs if spec.namespace in namespaces]
        for secret in self.kube.list_across("v1", "Secret", "list secrets", selector, existing):
            hit = wanted.get((secret["metadata"].get("namespace"), secret["metadata"]["name"]))
            if hit is not None:
                found[hit[0]]["secrets"][hit[1]] = secret
        return found

    def plan(self, spec, state):
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result["namespace"] = spec.namespace
        plan_namespace(plan, self.kube, spec.tenant, state["namespace"])
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
            states[purpose] = plan_secret(plan, self.kube, spec.tenant, purpose, value, live)[0]
        plan.before = {"secrets": {p: None if state["secrets"].get(p) is None else "(current value)" for p in states}}
        plan.after = {"secrets": dict(states)}
        plan.result["secrets"] = states
        # References, never values: Ansible shows a list-form result's items even for a no_log task.
        plan.result["refs"] = {purpose: {"name": spec.tenant.secret_name(purpose), "keys": list(SECRET_KEYS[purpose])}
                               for purpose in SECRET_PURPOSES
                               if purpose in states or state["secrets"].get(purpose) is not None}
        return plan


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
