# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HarborCluster deployer behind the small interface the README promises: read the fleet's clusters in bulk,
plan (server-side apply, dry runs in check mode), apply, wait for the operator's readiness rule, delete; plus the
summaries that harbor_cluster_info and the inventory's live status read.
"""

from __future__ import annotations

import copy
import time

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, run_batch
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, deep_merge, describe_error, poll)
from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_spec import (
    API_VERSION, CRD_NAME, HARBOR_CLASS_ANNOTATION, KIND, CrdSchema, build_cluster, fit_to_schema)
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    MANAGED_BY_SELECTOR, TENANT_LABEL, KubeClient, collection_path, managed_by_us, matches, pending_removals,
    tenant_selector)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    MANAGED_BY_LABEL, MANAGER, Tenant, generate_password)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import (
    SECRET_KEYS, SECRET_OPTIONS, build_namespace, plan_apply, plan_namespace, plan_secret)


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


def cluster_path(namespace, name=None):
    base = collection_path(API_VERSION, KIND, namespace)
    return f"{base}/{name}" if name else base


def read_crd_schema(kube):
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}", f"CRD {CRD_NAME}")
    if crd is None:
        raise FleetError(f"the HarborCluster CRD ({CRD_NAME}) is not installed in this cluster: install the "
                         "Harbor Operator (or its CRDs) first")
    return CrdSchema(crd)


def list_clusters(kube, namespace=None, label_selector=None, tenant_ids=None, unreadable=None):
    """One namespace's HarborClusters, or those of the tenant namespaces the label selector finds (of these
    tenants only, when given; ``unreadable`` collects the namespaces this identity may not read)."""
    if namespace:
        return kube.list(collection_path(API_VERSION, KIND, namespace), f"list {KIND}s", label_selector)
    namespaces = None if tenant_ids is None else [Tenant(tid, bucket_prefix="").namespace for tid in tenant_ids]
    return kube.list_across(API_VERSION, KIND, f"list {KIND}s", label_selector, namespaces, unreadable)


def read_clusters(kube, tenant=None, tenants=None, label_selector=None, namespace=None):
    """harbor_cluster_info's read: one tenant's cluster (a GET), or a LIST by tenant ids and/or a label selector
    (the managed fleet when none is given). Returns {cluster (one tenant only), clusters, counts}."""
    if tenant is not None:
        model = Tenant(tenant, bucket_prefix="")
        obj = kube.get(cluster_path(model.namespace, model.cluster_name),
                       f"get {KIND} {model.namespace}/{model.cluster_name}")
        clusters = [summarize_cluster(obj)] if obj is not None else []
        return dict(cluster=clusters[0] if clusters else None, clusters=clusters, counts=fleet_counts(clusters))
    selectors = [MANAGED_BY_SELECTOR] if label_selector is None else [label_selector] if label_selector else []
    wanted = None
    if tenants is not None:
        wanted = {Tenant(item, bucket_prefix="", field="tenants").id for item in tenants}
        if not wanted:
            return dict(clusters=[], counts=fleet_counts([]))
        selectors.append(tenant_selector(sorted(wanted)))
    unreadable = [] if wanted is None else None  # the whole managed fleet: other fleets' namespaces may be closed
    items = list_clusters(kube, namespace, ",".join(dict.fromkeys(selectors)) or None, wanted, unreadable)
    clusters = sorted((summarize_cluster(obj) for obj in items), key=lambda c: (c["namespace"] or "", c["name"] or ""))
    if wanted is not None:
        clusters = [c for c in clusters if c["tenant"] in wanted]
    out = dict(clusters=clusters, counts=fleet_counts(clusters))
    if unreadable:
        out["unreadable_namespaces"] = sorted(unreadable)
    return out


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
            found_ns = [spec.namespace for spec in present if self.states[spec.key].namespace is not None]
            for secret in self.kube.list_across("v1", "Secret", "list secrets", selector, found_ns):
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
                if self.states[spec.key].namespace is None:
                    continue  # no namespace, no cluster
                self.states[spec.key].cluster = self.kube.get(cluster_path(spec.namespace, spec.name),
                                                              f"get {KIND} {spec.namespace}/{spec.name}")
            return
        wanted = {(spec.namespace, spec.name): spec for spec in specs}
        found_ns = [spec.namespace for spec in specs if self.states[spec.key].namespace is not None]
        for obj in self.kube.list_across(API_VERSION, KIND, f"list {KIND}s", namespaces=found_ns):
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
        """Check mode: let the API server validate (and detect conflicts for) every cluster that would change, by a
        server-side apply dry run in the tenant's namespace. A new tenant's namespace does not exist yet, and check
        mode never sends anything, dry run or not, outside it: its cluster is checked against the installed CRD's
        schema instead."""
        def work(item, _resource):
            spec = by_key[item.key]
            state = self.states[item.key]
            if state.namespace is not None:
                self.kube.apply(state.manifest, force=self.force, dry_run=True)
                state.validation = "server-side apply dry run"
                return
            problems = self.schema.invalid_values(state.manifest)
            if problems:
                raise FleetError(f"{KIND} {spec.namespace}/{spec.name} is invalid: {'; '.join(problems)}")
            state.validation = (f"checked against the installed {self.schema.name} schema (namespace "
                                f"{spec.namespace} does not exist yet; the API server checks it when it is created)")

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
        plan_apply(plan, self.kube, action, manifest, self.force)

    def _plan_present(self, spec, state, plan):
        namespace = build_namespace(spec.tenant)
        ns_live = state.namespace
        if ns_live is not None and ns_live["metadata"].get("deletionTimestamp"):
            raise FleetError(f"namespace {spec.namespace} is being deleted (Terminating); nothing can be created in "
                             "it until it is gone")
        plan.before["namespace"] = None if ns_live is None else {"labels": (ns_live["metadata"].get("labels") or {})}
        plan.after["namespace"] = {"labels": dict((plan.before["namespace"] or {}).get("labels") or {},
                                                  **namespace["metadata"]["labels"])}
        plan_namespace(plan, self.kube, spec.tenant, ns_live, self.force)

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
        generated = False
        if value is None:
            if live is None:
                if purpose != "admin":
                    if self.check_mode:  # a real run would find it, written by tenant_secrets before
                        plan.before["secrets"][name] = plan.after["secrets"][name] = None
                        return "missing"
                    raise TenantInputError(SECRET_OPTIONS[purpose], f"is required to create Secret "
                                                                    f"{spec.namespace}/{name}")
                value, generated = generate_password(), True
            else:
                missing = [key for key in keys if key not in live_data]
                if missing:
                    raise TenantInputError(SECRET_OPTIONS[purpose], f"Secret {spec.namespace}/{name} has no "
                                                                    f"{', '.join(missing)}; give the value to write it")
                view = {key: "unchanged" for key in keys}
                plan.before["secrets"][name] = dict(view)
                plan.after["secrets"][name] = view
                return "unchanged"
        state_of, key_states = plan_secret(plan, self.kube, spec.tenant, purpose, value, live,
                                           " (generated password)" if generated else "", self.force)
        plan.before["secrets"][name] = None if live is None else {
            key: "unchanged" if s == "unchanged" else "(previous value)" for key, s in key_states.items()}
        plan.after["secrets"][name] = key_states
        return state_of

    def _plan_absent(self, spec, state, plan):
        live = state.cluster
        foreign = [f"{what} {name}" for what, name, obj in (
            (KIND, f"{spec.namespace}/{spec.name}", live),
            ("namespace", spec.namespace, state.namespace if spec.delete_namespace else None))
            if obj is not None and not managed_by_us(obj, spec.key)]
        if foreign:
            raise FleetError(f"{' and '.join(foreign)} of tenant {spec.key} lack the labels {MANAGED_BY_LABEL}="
                             f"{MANAGER} and {TENANT_LABEL}={spec.key} the collection puts on what it creates, so "
                             "it does not delete them: nothing was deleted for this tenant")
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


def fleet_status(tenant_ids, params):
    """{tenant: {status, ready, version}} from one LIST of HarborClusters of the cluster ``params`` connect to
    (for the inventory plugin)."""
    kube = KubeClient(params)
    wanted = set(tenant_ids)
    try:
        out = {}
        for obj in list_clusters(kube, label_selector=tenant_selector(sorted(wanted)), tenant_ids=wanted):
            summary = summarize_cluster(obj)
            if summary["tenant"] in wanted and summary["namespace"] == Tenant(summary["tenant"]).namespace:
                out[summary["tenant"]] = {"status": summary["status"], "ready": summary["ready"],
                                          "version": summary["version"], "reasons": summary["reasons"]}
        return out
    finally:
        kube.close()
