"""FleetModule: the single and list forms, check mode, failures, with a fake backend."""
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetError, FleetModule
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import Tenant

TENANT_SPEC = dict(size=dict(type="int", default=1), secret=dict(type="str", no_log=True))


class Spec:
    def __init__(self, params):
        self.tenant = Tenant(params["tenant"])
        self.key = self.tenant.id
        self.size = params["size"]
        self.secret = params["secret"]


class FakeBackend:
    """Actual state: a dict of tenant -> size. Tenants named 'broken*' fail while applying."""

    def __init__(self, actual):
        self.actual = actual
        self.applied = []
        self.read_calls = 0

    def read(self, specs):
        self.read_calls += 1
        return {spec.key: self.actual.get(spec.key) for spec in specs}

    def plan(self, spec, actual):
        if spec.key.startswith("unplannable"):
            raise FleetError("cannot plan this one")
        plan = Plan(spec.key, before={"size": actual}, after={"size": spec.size})
        if actual != spec.size:
            def apply(_resource, key=spec.key, size=spec.size):
                if key.startswith("broken"):
                    raise FleetError(f"{key} refused")
                self.applied.append(key)
                self.actual[key] = size
            plan.add(f"set size {spec.size}", apply, f"SET {spec.key} {spec.size}")
        return plan


def run(args, backend, capsys):
    with patch_module_args(args):
        fm = FleetModule({}, TENANT_SPEC, per_tenant_only=("secret",))
        specs = fm.guard(lambda: [Spec(p) for p in fm.tenant_params()])
        with pytest.raises(SystemExit):
            fm.converge(backend, specs)
    return json.loads(capsys.readouterr().out)


def run_expecting_exit(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            fm = FleetModule({}, TENANT_SPEC, per_tenant_only=("secret",))
            fm.guard(lambda: [Spec(p) for p in fm.tenant_params()])
    return json.loads(capsys.readouterr().out)


def test_single_form_changes_then_is_idempotent(capsys):
    backend = FakeBackend({})
    result = run({"tenant": "acme", "size": 3}, backend, capsys)
    assert result["changed"] is True and result["tenant"] == "acme" and result["calls"] == ["SET acme 3"]
    assert backend.applied == ["acme"]
    again = run({"tenant": "acme", "size": 3}, backend, capsys)
    assert again["changed"] is False and again["actions"] == []


def test_check_mode_reports_the_same_plan_and_writes_nothing(capsys):
    backend = FakeBackend({"acme": 1})
    result = run({"tenant": "acme", "size": 5, "_ansible_check_mode": True, "_ansible_diff": True}, backend, capsys)
    assert result["changed"] is True and result["actions"] == ["set size 5"]
    assert result["diff"]["before"] == {"size": 1} and result["diff"]["after"] == {"size": 5}
    assert backend.applied == [] and backend.actual == {"acme": 1}


def test_list_form_uses_top_level_values_as_defaults(capsys):
    backend = FakeBackend({"b": 2})
    result = run({"size": 2, "tenants": [{"tenant": "a"}, {"tenant": "b"}, {"tenant": "c", "size": 7}]},
                 backend, capsys)
    assert backend.read_calls == 1
    assert sorted(backend.applied) == ["a", "c"]
    assert backend.actual == {"a": 2, "b": 2, "c": 7}
    assert result["summary"] == {"total": 3, "changed": 2, "failed": 0, "skipped": 0}
    assert [r["tenant"] for r in result["results"]] == ["a", "b", "c"]


def test_list_form_reports_failures_at_the_end(capsys):
    backend = FakeBackend({})
    tenants = [{"tenant": f"t{i}"} for i in range(10)] + [{"tenant": "broken-one"}, {"tenant": "unplannable"}]
    result = run({"size": 1, "tenants": tenants}, backend, capsys)
    assert result["failed"] is True
    assert result["failed_tenants"] == ["broken-one", "unplannable"]
    assert result["msg"] == "2 of 12 tenants failed: broken-one, unplannable"
    assert len(backend.applied) == 10
    by_tenant = {r["tenant"]: r for r in result["results"]}
    assert by_tenant["broken-one"]["msg"] == "broken-one refused"
    assert by_tenant["unplannable"]["msg"] == "cannot plan this one"


def test_fail_fast_with_a_planning_failure_changes_nothing_and_says_so(capsys):
    backend = FakeBackend({})
    result = run({"fail_fast": True, "tenants": [{"tenant": "a"}, {"tenant": "unplannable"}]}, backend, capsys)
    assert result["failed"] is True and backend.applied == []
    assert result["changed"] is False and result["summary"]["changed"] == 0
    first = result["results"][0]
    assert first["changed"] is False and first["skipped"] is True and "fail_fast" in first["msg"]


def test_a_tenant_that_fails_part_way_reports_what_it_changed(capsys):
    class Backend(FakeBackend):
        def plan(self, spec, actual):
            plan = Plan(spec.key)
            plan.add("first step", lambda _r: None)
            if spec.key == "half":
                plan.add("second step", refuse)
            return plan

    def refuse(_resource):
        raise FleetError("second step refused")

    result = run({"tenants": [{"tenant": "half"}]}, Backend({}), capsys)
    assert result["results"][0]["failed"] is True and result["results"][0]["changed"] is True
    result = run({"tenant": "nothing"}, FakeBackend({"nothing": 1}), capsys)
    assert result["changed"] is False


def test_a_no_log_task_keeps_its_results_items_hidden(capsys):
    # Ansible shows a censored result's `results` list item by item unless each item is marked no_log itself.
    result = run({"_ansible_no_log": True, "tenants": [{"tenant": "a"}]}, FakeBackend({}), capsys)
    assert all(item["_ansible_no_log"] is True for item in result["results"])
    result = run({"tenants": [{"tenant": "a"}]}, FakeBackend({}), capsys)
    assert "_ansible_no_log" not in result["results"][0]


def test_per_tenant_only_options_are_refused_at_the_top_level(capsys):
    result = run_expecting_exit({"secret": "shared", "tenants": [{"tenant": "a"}]}, capsys)
    assert result["failed"] is True and result["field"] == "secret"
    assert "set it on each item of tenants" in result["msg"]


def test_duplicate_and_invalid_ids_fail_before_anything(capsys):
    result = run_expecting_exit({"tenants": [{"tenant": "a"}, {"tenant": "a"}]}, capsys)
    assert "listed more than once" in result["msg"]
    result = run_expecting_exit({"tenant": "Robert'); DROP TABLE tenants;--"}, capsys)
    assert result["field"] == "tenant" and "not a valid tenant id" in result["msg"]
    result = run_expecting_exit({"tenant": "acme\n"}, capsys)
    assert result["field"] == "tenant" and "not a valid tenant id" in result["msg"]
    assert "changed" not in result or result["changed"] is False


def test_secrets_are_masked_in_results(capsys):
    backend = FakeBackend({})
    result = run({"tenants": [{"tenant": "a", "secret": "hunter2hunter2"}]}, backend, capsys)
    assert "hunter2hunter2" not in json.dumps(result)


def test_tenant_and_tenants_are_exclusive(capsys):
    result = run_expecting_exit({"tenant": "a", "tenants": [{"tenant": "b"}]}, capsys)
    assert "mutually exclusive" in result["msg"]
