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
    MANAGED_BY_SELECTOR, KubeApiError)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import TENANT_LABEL, Tenant

PLACEMENT_ANNOTATION = "harborfleet.io/placement"
FLEET_LABEL = "harborfleet.io/fleet"
FIELD_MANAGER = "harborfleet-placement"
RECORD_KEYS = ("postgres", "sentinel_group", "redis_port", "s3")


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


def _wanted(placement):
    return {key: placement[key] for key in RECORD_KEYS if placement.get(key) is not None}


def record(kube, tenant_id, placement, fleet_name):
    """Record one tenant's placement unless the cluster already holds it; returns True when it wrote.

    A different placement recorded meanwhile (another run) is an error naming both; nothing is overwritten.
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
                if _wanted(recorded) != wanted:
                    raise FleetError(f"tenant {tenant_id!r} is already placed on {_wanted(recorded)} (recorded in the "
                                     f"cluster by another run), not {wanted}: re-read the inventory and run again")
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
            return True
        except KubeApiError as exc:
            if exc.status != 409:
                raise
    raise FleetError(f"tenant {tenant_id!r}: its namespace kept changing while the placement was recorded; run again")
