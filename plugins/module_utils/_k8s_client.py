# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes client every Kubernetes file uses: connection options, one API client per run, raw JSON calls with
retries for transient errors only, server-side apply with the ``harborfleet`` field manager, readable errors, and
the comparison that tells whether a live object already matches what would be applied.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

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

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import RETRY_ATTEMPTS, FleetError, retry_delay
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    MANAGED_BY_LABEL, MANAGER, TENANT_LABEL)

FIELD_MANAGER = MANAGER
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER}"
# The ClusterRole an identity without cluster-wide access to Secrets gets in each tenant namespace it creates (one
# RoleBinding named like it); the collection's RBAC manifests define it.
TENANT_CLUSTER_ROLE = "harborfleet-tenant"
NAMESPACE_PATH_RE = re.compile(r"^/api(?:s/[^/]+)?/v[^/]+/namespaces/([^/]+)/")
BINDING_SETTLE_SECONDS = 10  # how long a new RoleBinding may take to reach the API server's authorizer
SMALL_RUN = 100  # up to this many tenants, LISTs select them by id instead of the whole fleet
RETRY_STATUSES = (429, 502, 503, 504)

CONNECTION_SPEC = dict(
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    ca_cert=dict(type="path"),
    validate_certs=dict(type="bool"),
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


# --------------------------------------------------------------------------- comparing live and desired objects

def b64(value):
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


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


# --------------------------------------------------------------------------- the client

# Options unset in a task fall back to these, as kubernetes.core's do: what AWX's Kubernetes credential injects.
ENVIRONMENT = {"kubeconfig": "K8S_AUTH_KUBECONFIG", "context": "K8S_AUTH_CONTEXT", "host": "K8S_AUTH_HOST",
               "api_key": "K8S_AUTH_API_KEY", "ca_cert": "K8S_AUTH_SSL_CA_CERT", "validate_certs": "K8S_AUTH_VERIFY_SSL"}


def with_environment(params, environ=None):
    """``params`` with every unset connection option taken from its ``K8S_AUTH_*`` variable, unless ``params``
    name their cluster themselves (``host`` or ``kubeconfig``): a fleet's clusters each have their own connection,
    and one injected for another cluster must never redirect a tenant's calls."""
    environ = os.environ if environ is None else environ
    out = dict(params)
    if out.get("host") or out.get("kubeconfig"):
        return out
    for option, variable in ENVIRONMENT.items():
        value = environ.get(variable)
        if out.get(option) is None and value not in (None, ""):
            out[option] = value.strip().lower() not in ("false", "no", "0", "off") if option == "validate_certs" \
                else value
    return out


def new_api_client(params, pool_size=10):
    """One ApiClient from an explicit host + token, a kubeconfig (+ context) or the in-cluster service account;
    options left unset come from the ``K8S_AUTH_*`` environment variables."""
    params = with_environment(params)
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
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class KubeClient:
    """Raw-JSON access to the API server: one ApiClient (thread-safe connection pool) per module run."""

    def __init__(self, params, pool_size=10, api_client=None, sleep=time.sleep):
        self.api = api_client or new_api_client(params, pool_size)
        self.timeout = params.get("request_timeout") or 30
        self.sleep = sleep
        self.calls = 0
        self.allowed = {}   # (verb, group, resource) -> bool, from SelfSubjectAccessReviews
        self.user = None    # this identity's user name, from a SelfSubjectReview
        self.bound = {}     # namespace -> when this run bound TENANT_CLUSTER_ROLE there

    def close(self):
        try:
            self.api.close()
        except Exception:  # pylint: disable=broad-except
            pass  # best effort

    def request(self, method, path, what, query=None, body=None, content_type="application/json"):
        """One API call with retries for throttling and unavailable servers; returns parsed JSON."""
        attempt = 0
        while True:
            attempt += 1
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
                    self.sleep(_retry_after(exc, retry_delay(attempt)))
                    continue
                if exc.status == 403 and self._settling(path):
                    attempt -= 1  # the RoleBinding this run made is not in the authorizer yet (bounded in time)
                    self.sleep(0.2)
                    continue
                error = api_error(exc, what)
                if exc.status == 403 and NAMESPACE_PATH_RE.match(path):
                    error.args = (f"{error} (an identity without cluster-wide access to Secrets needs the ClusterRole "
                                  f"{TENANT_CLUSTER_ROLE} bound in each tenant namespace; the collection binds it in "
                                  "the namespaces it creates)",)
                raise error from None
            except Urllib3Error as exc:
                if attempt < RETRY_ATTEMPTS:
                    self.sleep(retry_delay(attempt))
                    continue
                raise FleetError(f"{what}: the Kubernetes API at {self.api.configuration.host} is unreachable: "
                                 f"{type(exc).__name__}") from None

    # reads
    def get(self, path, what):
        try:
            return self.request("GET", path, what)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            found = NAMESPACE_PATH_RE.match(path)
            if exc.status == 403 and found and self.get(f"/api/v1/namespaces/{found.group(1)}",
                                                        f"get namespace {found.group(1)}") is None:
                return None  # nothing exists in a namespace that does not (an identity bound per namespace is
                # refused there before the API server looks)
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

    # access: least privilege
    def may(self, verb, resource, group=""):
        """May this identity ``verb`` ``resource`` in every namespace? (A SelfSubjectAccessReview, cached.)"""
        key = (verb, group, resource)
        if key not in self.allowed:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource}}}
            answer = self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                  f"check access to {verb} {resource}", body=review)
            self.allowed[key] = bool((answer.get("status") or {}).get("allowed"))
        return self.allowed[key]

    def list_across(self, api_version, kind, what, label_selector=None, namespaces=None, unreadable=None):
        """The items of a namespaced kind in the tenants' namespaces: one cluster-wide LIST when this identity may,
        else one LIST per existing tenant namespace the label selector finds (only those in ``namespaces`` when
        given), a few at a time. So the collection never needs to read Secrets outside its tenants' namespaces.
        With ``unreadable`` (a list), namespaces this identity may not read (another fleet's) are skipped and
        appended to it; otherwise they are an error."""
        group = api_version.split("/")[0] if "/" in api_version else ""
        if self.may("list", f"{kind.lower()}s", group):
            return self.list(collection_path(api_version, kind), what, label_selector)
        if namespaces is not None and not namespaces:
            return []
        existing = {ns["metadata"]["name"] for ns in self.list("/api/v1/namespaces", "list namespaces",
                                                               label_selector or MANAGED_BY_SELECTOR)}
        namespaces = sorted(existing if namespaces is None else existing & set(namespaces))
        if not namespaces:
            return []

        def one(ns):
            try:
                return self.list(collection_path(api_version, kind, ns), f"{what} in {ns}", label_selector)
            except KubeApiError as exc:
                if exc.status != 403 or unreadable is None:
                    raise
                unreadable.append(ns)
                return []
        with ThreadPoolExecutor(max_workers=min(8, len(namespaces))) as pool:
            return [item for page in pool.map(one, namespaces) for item in page]

    def grant_tenant_role(self, namespace):
        """In a tenant namespace this run created: bind TENANT_CLUSTER_ROLE to this identity when it lacks
        cluster-wide access to Secrets (an administrator needs nothing). Returns whether it bound."""
        if self.may("create", "secrets"):
            return False
        if self.user is None:
            review = self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "find this identity",
                                  body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            self.user = ((review.get("status") or {}).get("userInfo") or {}).get("username")
            if not self.user:
                raise FleetError("the API server did not say who this identity is (SelfSubjectReview), so the "
                                 f"ClusterRole {TENANT_CLUSTER_ROLE} cannot be bound in new tenant namespaces")
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": TENANT_CLUSTER_ROLE, "namespace": namespace,
                                "labels": {MANAGED_BY_LABEL: MANAGER}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": TENANT_CLUSTER_ROLE},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": self.user}]}
        try:
            self.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
                         f"bind ClusterRole {TENANT_CLUSTER_ROLE} in namespace {namespace}", body=binding)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
        self.bound[namespace] = time.monotonic()
        return True

    def _settling(self, path):
        found = NAMESPACE_PATH_RE.match(path)
        since = self.bound.get(found.group(1)) if found else None
        return since is not None and time.monotonic() - since < BINDING_SETTLE_SECONDS

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


def collection_path(api_version, kind, namespace=None):
    """The REST path of a kind's objects (in a namespace): core kinds under /api, others under /apis; the plural is
    the lower-cased kind plus "s", which holds for every kind the collection writes."""
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{root}{scope}/{kind.lower()}s"


def object_path(manifest):
    meta = manifest["metadata"]
    return f"{collection_path(manifest['apiVersion'], manifest['kind'], meta.get('namespace'))}/{meta['name']}"


def describe_object(manifest):
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name")
    return f"{manifest['kind']} {where}"


def managed_by_us(obj, tenant_id):
    """Whether ``obj`` carries the labels the collection writes on what it creates for ``tenant_id``: the only
    objects it deletes."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGER and labels.get(TENANT_LABEL) == tenant_id


def tenant_selector(tenant_ids):
    """One label selector for a set of tenants (small runs) or the whole managed fleet."""
    if tenant_ids and len(tenant_ids) <= SMALL_RUN:
        return f"{TENANT_LABEL} in ({','.join(sorted(tenant_ids))})"
    return MANAGED_BY_SELECTOR
