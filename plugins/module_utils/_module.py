# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one wrapper around AnsibleModule.

Every tenant module has two forms that share one code path:

* single: ``tenant: acme`` plus per-tenant options at the top level;
* list: ``tenants: [{tenant: acme, ...}, ...]``, where each item may set any per-tenant option and the top-level
  value of an option is the default for items that leave it out.

The wrapper builds both argument specs from one description of the per-tenant options, turns parameters into one
dict per tenant, runs the backend's bulk read, plans, applies the plans with the shared batch runner (never in
check mode), and turns the outcome, or a typed error, into ``exit_json``/``fail_json`` once.
"""

from __future__ import annotations

import copy
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import (
    DEFAULT_CONCURRENCY, MAX_CONCURRENCY, apply_plan, plan_all, run_batch)
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, deep_merge, describe_error)


BATCH_OPTIONS = dict(
    tenants=dict(type="list", elements="dict"),
    concurrency=dict(type="int", default=DEFAULT_CONCURRENCY),
    fail_fast=dict(type="bool", default=False),
)


def _strip_defaults(spec):
    stripped = {}
    for name, option in spec.items():
        option = dict(option)
        option.pop("default", None)
        if "options" in option:
            option["options"] = _strip_defaults(option["options"])
        stripped[name] = option
    return stripped


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


def guard(module, func, *args, **kwargs):
    """Call ``func``; a typed error becomes ``fail_json`` naming the problem (and the ``field`` of bad input),
    anything else a one-line description plus the traceback. The one place errors turn into ``fail_json``."""
    return guard_with(module, describe_error, func, *args, **kwargs)


def guard_with(module, describe, func, *args, **kwargs):
    """``guard`` with the backend's own ``describe(exc)`` (one that names the server it talks to)."""
    try:
        return func(*args, **kwargs)
    except TenantInputError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except FleetError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg=describe(exc), exception=traceback.format_exc())
    return None  # not reached: fail_json exits


class FleetModule:
    """AnsibleModule plus the single/list tenant forms, dependency checks and one place for errors.

    ``argument_spec``: options shared by every tenant (connection, state...).
    ``tenant_spec``: per-tenant options; ``tenant`` is added. Names in ``per_tenant_only`` (e.g. a password or an
    explicit bucket name) cannot be set at the top level together with ``tenants``: sharing them across tenants is
    always a mistake.
    ``libraries``: {import name: (imported module or None, import traceback)} checked before anything runs.
    """

    def __init__(self, argument_spec, tenant_spec, per_tenant_only=(), libraries=None, **kwargs):
        tenant_spec = dict(tenant_spec)
        tenant_spec["tenant"] = dict(type="str")
        self.tenant_options = tuple(tenant_spec)
        self.per_tenant_only = tuple(per_tenant_only) + ("tenant",)
        spec = dict(copy.deepcopy(argument_spec))
        spec.update(copy.deepcopy(tenant_spec))
        spec.update(copy.deepcopy(BATCH_OPTIONS))
        item_spec = _strip_defaults(tenant_spec)
        item_spec["tenant"]["required"] = True
        spec["tenants"]["options"] = item_spec
        kwargs.setdefault("supports_check_mode", True)
        mutually_exclusive = list(kwargs.pop("mutually_exclusive", []))
        mutually_exclusive.append(["tenant", "tenants"])
        required_one_of = list(kwargs.pop("required_one_of", []))
        required_one_of.append(["tenant", "tenants"])
        self.module = AnsibleModule(argument_spec=spec, mutually_exclusive=mutually_exclusive,
                                    required_one_of=required_one_of, **kwargs)
        for name, (library, error) in (libraries or {}).items():
            if library is None:
                self.module.fail_json(msg=missing_required_lib(name), exception=error)

    @property
    def params(self):
        return self.module.params

    @property
    def check_mode(self):
        return self.module.check_mode

    @property
    def is_list_form(self):
        return self.params["tenants"] is not None

    def register_secret(self, value):
        """Mask a secret the module learned at run time (e.g. read from a server) in everything it returns."""
        if value:
            self.module.no_log_values.add(str(value))

    def tenant_params(self):
        """One dict of per-tenant options for each tenant, list items falling back to top-level values."""
        params = self.params
        self.concurrency()
        if not self.is_list_form:
            return [{name: params[name] for name in self.tenant_options}]
        for name in self.per_tenant_only:
            if params.get(name) is not None:
                raise TenantInputError(name, "set it on each item of tenants, not at the top level "
                                             "(one value would be shared by every tenant)")
        merged = []
        for item in params["tenants"]:
            merged.append({name: item[name] if item.get(name) is not None else params.get(name)
                           for name in self.tenant_options})
        seen = set()
        for item in merged:
            if item["tenant"] in seen:
                raise TenantInputError("tenants", f"tenant {item['tenant']!r} is listed more than once")
            seen.add(item["tenant"])
        return merged

    def concurrency(self):
        value = self.params["concurrency"]
        if value < 1 or value > MAX_CONCURRENCY:
            raise TenantInputError("concurrency", f"must be between 1 and {MAX_CONCURRENCY}")
        return value

    def guard(self, func, *args, **kwargs):
        """Call ``func``; errors become ``fail_json`` (see the module-level ``guard``)."""
        return guard(self.module, func, *args, **kwargs)

    def converge(self, backend, specs, finalize=None):
        """Bulk read, plan every tenant, apply (unless check mode), then report.

        ``backend`` provides ``read(specs)`` → {key: actual}, ``plan(spec, actual)`` → Plan, and optionally
        ``worker_resource()`` (a factory for per-worker resources) and ``describe_error(exc)``.
        ``finalize(plan, resource)`` runs after a real apply for every tenant that did not fail (e.g. a wait).
        """
        describe = getattr(backend, "describe_error", describe_error)
        plans = plan_all(backend, specs, guard_with(self.module, describe, backend.read, specs), describe)
        fail_fast = self.params["fail_fast"]
        runnable = [p for p in plans if not p.failed]
        if fail_fast and len(runnable) < len(plans):
            first = next(p.key for p in plans if p.failed)
            for plan in runnable:
                plan.skip(f"not attempted: tenant {first} could not be planned and fail_fast is set")
            runnable = []
        if not self.check_mode and runnable:
            def work(plan, resource):
                apply_plan(plan, resource)
                if finalize is not None:
                    finalize(plan, resource)

            factory = getattr(backend, "worker_resource", lambda: None)()
            self.guard(run_batch, [p for p in runnable if p.changed or finalize is not None], work,
                       concurrency=self.concurrency(), fail_fast=fail_fast, resource=factory,
                       describe_error=describe)
        self.finish(plans)

    def finish(self, plans):
        """exit_json/fail_json for a list of plans, shaped for the single or the list form."""
        diff_requested = self.module._diff  # pylint: disable=protected-access
        changed = any(p.reported_changed for p in plans)
        if not self.is_list_form:
            plan = plans[0]
            result = plan.as_result()
            result.pop("failed")
            if diff_requested:
                result["diff"] = plan.diff()
            if plan.failed:
                result.pop("msg", None)
                self.module.fail_json(msg=plan.error, **result)
            self.module.exit_json(**result)
        failed = [p.key for p in plans if p.failed]
        results = [p.as_result() for p in plans]
        if self.module.no_log:
            # Ansible hides a no_log task's result but shows its ``results`` list item by item, as if it came from
            # a loop, unless each item says it is no_log too.
            for item in results:
                item["_ansible_no_log"] = True
        result = dict(
            changed=changed,
            results=results,
            failed_tenants=failed,
            summary=dict(total=len(plans), changed=sum(1 for p in plans if p.changed and not p.failed),
                         failed=len(failed), skipped=sum(1 for p in plans if p.skipped)),
        )
        if diff_requested:
            result["diff"] = [p.diff() for p in plans if p.changed]
        if failed:
            shown = ", ".join(failed[:20]) + (" ..." if len(failed) > 20 else "")
            self.module.fail_json(msg=f"{len(failed)} of {len(plans)} tenants failed: {shown}", **result)
        self.module.exit_json(**result)
