# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement records in the cluster: where a tenant lives, kept on its own namespace, where every runner sees it.

The record is an annotation (JSON) on the tenant's namespace. It is read for the whole fleet with one LIST and
written with optimistic concurrency: a new namespace is created (the API refuses a second create), an existing one
is patched under its ``resourceVersion`` (the API refuses a patch of a namespace that changed since it was read).
Two runs placing one tenant at the same time therefore never both succeed with different placements: the loser
re-reads, and fails with a message naming both placements unless they agree. Deleting the namespace (removal)
deletes the record.
"""

from __future__ import annotations

import json

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    MANAGED_BY_SELECTOR, KubeApiError, KubeClient)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import TENANT_LABEL, Tenant

PLACEMENT_ANNOTATION = "harborfleet.io/placement"
FLEET_LABEL = "harborfleet.io/fleet"
FIELD_MANAGER = "harborfleet-placement"
RECORD_KEYS = ("kubernetes", "postgres", "sentinel_group", "redis_port", "s3")


def _record_of(namespace):
    text = ((namespace.get("metadata") or {}).get("annotations") or {}).get(PLACEMENT_ANNOTATION)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise FleetError(f"namespace {namespace['metadata']['name']}: annotation {PLACEMENT_ANNOTATION} is not a JSON "
                         "object; fix or remove it by hand")
    return record


def read_records(kube, fleet_name):
    """{tenant id: placement} from the annotations of the fleet's namespaces (one LIST)."""
    records = {}
    selector = f"{MANAGED_BY_SELECTOR},{FLEET_LABEL}={fleet_name}"
    for namespace in kube.list("/api/v1/namespaces", "list namespaces", selector):
        tid = ((namespace.get("metadata") or {}).get("labels") or {}).get(TENANT_LABEL)
        record = _record_of(namespace)
        if tid and record is not None and namespace["metadata"]["name"] == Tenant(tid, bucket_prefix="").namespace:
            records[tid] = record
    return records


def read_fleet_records(fleet_name, clusters, tiered=True):
    """The placement recorded in every cluster of a fleet (``[(member, connection)]``), one LIST each. With a
    kubernetes tier (``tiered``) a record names its cluster: the one it is found in for records from before the
    tier existed; a tenant recorded in two clusters, or in one while naming another, is an error naming both."""
    records, found_in = {}, {}
    for member, params in clusters:
        kube = KubeClient(params, pool_size=4)
        try:
            found = read_records(kube, fleet_name)
        except FleetError as exc:
            raise FleetError(f"cannot read the placement recorded in cluster {member['name']!r}: {exc}") from None
        finally:
            kube.close()
        for tid, chosen in found.items():
            if tiered:
                chosen.setdefault("kubernetes", member["name"])
                if chosen["kubernetes"] != member["name"] or tid in found_in:
                    other = found_in.get(tid, chosen["kubernetes"])
                    raise FleetError(f"tenant {tid!r} is recorded in cluster {member['name']!r} and in {other!r}: "
                                     "keep the namespace of one of them (a tenant is never moved)")
            found_in[tid] = member["name"]
            records[tid] = chosen
    return records


def _wanted(placement):
    return {key: placement[key] for key in RECORD_KEYS if placement.get(key) is not None}


def record(kube, tenant_id, placement, fleet_name):
    """Record one tenant's placement unless the cluster already holds it; returns True when it wrote.

    A different placement recorded meanwhile (another run) is an error naming both; nothing is overwritten. A record
    from before a tier was added gains that tier's member, and keeps the rest.
    """
    tenant = Tenant(tenant_id, bucket_prefix="")
    labels = dict(tenant.labels, **{FLEET_LABEL: fleet_name})
    wanted = _wanted(placement)
    body = json.dumps(wanted, sort_keys=True)
    path = f"/api/v1/namespaces/{tenant.namespace}"
    query = [("fieldManager", FIELD_MANAGER)]
    for _attempt in range(2):
        live = kube.get(path, f"get namespace {tenant.namespace}")
        if live is not None:
            recorded = _record_of(live)
            if recorded is not None:
                have = _wanted(recorded)
                if any(wanted.get(key) != value for key, value in have.items()):
                    raise FleetError(f"tenant {tenant_id!r} is already placed on {have} (recorded in the cluster by "
                                     f"another run), not {wanted}: re-read the inventory and run again")
                if have == wanted:
                    return False
            patch = {"metadata": {"resourceVersion": live["metadata"]["resourceVersion"],
                                  "labels": labels, "annotations": {PLACEMENT_ANNOTATION: body}}}
            try:
                kube.request("PATCH", path, f"record the placement of {tenant_id}", query, patch,
                             "application/merge-patch+json")
                return True
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
            continue  # changed since read: look again
        manifest = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": tenant.namespace, "labels": labels,
                                 "annotations": {PLACEMENT_ANNOTATION: body}}}
        try:
            kube.request("POST", "/api/v1/namespaces", f"record the placement of {tenant_id}", query, manifest)
            kube.grant_tenant_role(tenant.namespace)
            return True
        except KubeApiError as exc:
            if exc.status != 409:
                raise
    raise FleetError(f"tenant {tenant_id!r}: its namespace kept changing while the placement was recorded; run again")
