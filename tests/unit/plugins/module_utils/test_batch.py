"""The batch runner: order, bounded concurrency, per-worker resources, failures."""
import threading
import time

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, apply_plan, run_batch


def plans(count):
    return [Plan(f"t{i}") for i in range(count)]


def test_results_keep_input_order_and_every_item_runs():
    seen = []
    lock = threading.Lock()

    def work(plan, _resource):
        time.sleep(0.001 * (hash(plan.key) % 5))
        with lock:
            seen.append(plan.key)

    items = run_batch(plans(30), work, concurrency=6)
    assert [p.key for p in items] == [f"t{i}" for i in range(30)]
    assert sorted(seen) == sorted(p.key for p in items)


def test_concurrency_is_bounded():
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(_plan, _resource):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1

    run_batch(plans(40), work, concurrency=4)
    assert 1 <= peak[0] <= 4


def test_a_failure_does_not_stop_the_others():
    def work(plan, _resource):
        if plan.key == "t3":
            raise RuntimeError("boom")

    items = run_batch(plans(8), work, concurrency=3, describe_error=lambda exc: f"described: {exc}")
    assert [p.key for p in items if p.failed] == ["t3"]
    assert items[3].error == "described: boom"
    assert not any(p.skipped for p in items)


def test_fail_fast_skips_what_has_not_started():
    def work(plan, _resource):
        if plan.key == "t0":
            raise RuntimeError("boom")

    items = run_batch(plans(10), work, concurrency=1, fail_fast=True)
    assert items[0].failed and not items[0].skipped
    assert all(p.skipped and p.failed for p in items[1:])


def test_one_resource_per_worker_closed_at_the_end():
    created, closed = [], []

    class Conn:
        def __init__(self):
            created.append(self)

        def close(self):
            closed.append(self)

    used = {}

    def work(plan, conn):
        used[plan.key] = conn

    run_batch(plans(20), work, concurrency=3, resource=Conn)
    assert 1 <= len(created) <= 3
    assert set(map(id, used.values())) <= set(map(id, created))
    assert sorted(map(id, closed)) == sorted(map(id, created))


def test_apply_plan_runs_changes_in_order_and_stops_at_an_error():
    calls = []

    def refuse(_resource):
        raise ValueError("no")

    plan = Plan("t")
    plan.add("first", lambda r: calls.append("first"))
    plan.add("second", refuse)
    plan.add("third", lambda r: calls.append("third"))
    run_batch([plan], apply_plan)
    assert calls == ["first"] and "no" in plan.error


def test_plan_result_shape():
    plan = Plan("acme", record_key="queries")
    plan.add("create role", lambda r: None, "CREATE ROLE ...")
    plan.result["role"] = "harbor_acme"
    assert plan.as_result() == {"tenant": "acme", "changed": True, "failed": False, "actions": ["create role"],
                                "queries": ["CREATE ROLE ..."], "role": "harbor_acme"}
