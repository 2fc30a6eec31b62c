# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans and the one batch runner every module's list form uses.

A backend turns (desired state, actual state) into a ``Plan`` per tenant: the changes to make, a before/after
view for ``--diff`` and a record of each call (SQL with secrets redacted, API calls). Check mode reports the plan;
a real run executes the same plan, so the two cannot drift apart. ``run_batch`` applies plans over a bounded pool
of worker threads and keeps going past a failing tenant unless asked to stop.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64


class Change:
    """One step of a plan: a description, the record to return (never a secret), and the call that does it."""

    __slots__ = ("action", "record", "apply")

    def __init__(self, action, apply, record=None):
        self.action = action
        self.apply = apply
        self.record = record if record is not None else action

    def __repr__(self):
        return f"Change({self.action!r})"


class Plan:
    """What one tenant needs: ``changes`` in order, ``before``/``after`` for the diff, extra ``result`` values.

    ``record_key`` names the list of call records in the result (``queries`` for SQL, ``calls`` for APIs).
    """

    def __init__(self, key, before=None, after=None, record_key="calls"):
        self.key = key
        self.record_key = record_key
        self.before = before if before is not None else {}
        self.after = after if after is not None else {}
        self.changes = []
        self.result = {}
        self.error = None
        self.skipped = False
        self.applied = 0

    def add(self, action, apply, record=None):
        self.changes.append(Change(action, apply, record))

    @property
    def changed(self):
        return bool(self.changes)

    @property
    def failed(self):
        return self.error is not None

    @property
    def reported_changed(self):
        """What ``changed`` says: the planned changes (check mode, success), or, for a tenant that failed or was
        never attempted, whether any of its changes was made before it stopped."""
        return self.applied > 0 if self.failed else self.changed

    def skip(self, reason):
        """Never attempted (``fail_fast``): reported as failed with ``reason``, and as not changed."""
        self.skipped = True
        self.error = reason

    def diff(self):
        return {"before_header": self.key, "after_header": self.key, "before": self.before, "after": self.after}

    def as_result(self):
        out = {"tenant": self.key, "changed": self.reported_changed, "failed": self.failed,
               "actions": [c.action for c in self.changes], self.record_key: [c.record for c in self.changes]}
        if self.failed:
            out["msg"] = self.error
        if self.skipped:
            out["skipped"] = True
        out.update(self.result)
        return out


def plan_all(backend, specs, actual, describe=str):
    """A plan per spec from ``backend.plan(spec, actual[key])``. A spec whose planning raises gets a failed plan
    carrying ``describe(exc)`` (and, in ``result["field"]``, the option a ``TenantInputError`` names), so one bad
    tenant never stops the others from being planned."""
    plans = []
    for spec in specs:
        try:
            plans.append(backend.plan(spec, actual.get(spec.key)))
        except Exception as exc:  # pylint: disable=broad-except
            plan = Plan(spec.key, record_key=getattr(backend, "record_key", "calls"))
            plan.error = describe(exc)
            if isinstance(exc, TenantInputError):
                plan.result["field"] = exc.field
            plans.append(plan)
    return plans


class _WorkerResources:
    """Per-thread resources (e.g. one database connection per worker), created on first use, closed at the end."""

    def __init__(self, factory, closer):
        self._factory = factory
        self._closer = closer
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()

    def get(self):
        if self._factory is None:
            return None
        resource = getattr(self._local, "resource", None)
        if resource is None:
            resource = self._factory()
            self._local.resource = resource
            with self._lock:
                self._all.append(resource)
        return resource

    def close(self):
        for resource in self._all:
            try:
                self._closer(resource)
            except Exception:  # pylint: disable=broad-except
                pass  # closing is best effort; the work is done


def run_batch(items, work, concurrency=DEFAULT_CONCURRENCY, fail_fast=False, resource=None,
              close_resource=None, describe_error=str):
    """Run ``work(item, resource)`` for every item over at most ``concurrency`` threads.

    ``items`` are objects with ``key``, ``error`` and ``skipped`` attributes (normally ``Plan``). An exception
    from ``work`` is caught and stored on its item as ``describe_error(exc)``; with ``fail_fast`` the items not
    started yet are marked skipped. ``resource`` is a factory for a per-worker resource, e.g. a connection.
    Returns the items in their original order.
    """
    items = list(items)
    if not items:
        return items
    concurrency = max(1, min(int(concurrency or 1), MAX_CONCURRENCY, len(items)))
    resources = _WorkerResources(resource, close_resource or (lambda r: r.close()))
    stop = threading.Event()

    def one(item):
        if stop.is_set():
            item.skipped = True
            item.error = "not attempted: an earlier tenant failed and fail_fast is set"
            return
        try:
            work(item, resources.get())
        except Exception as exc:  # pylint: disable=broad-except
            item.error = describe_error(exc)
            if fail_fast:
                stop.set()

    try:
        if concurrency == 1:
            for item in items:
                one(item)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(one, items))
    finally:
        resources.close()
    return items


def apply_plan(plan, resource):
    """The usual ``work`` for ``run_batch``: execute a plan's changes in order."""
    for change in plan.changes:
        change.apply(resource)
        plan.applied += 1
