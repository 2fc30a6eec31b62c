"""Tenant Redis instances on a host: validation before anything changes, plans, files written with their mode."""
import os
import stat

import pytest

from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis_instance as ri
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

PASSWORD = "Abc123" * 6


def params(tmp_path, **overrides):
    out = {name: option.get("default") for name, option in ri.ARGUMENT_SPEC.items()}
    out.update(config_dir=str(tmp_path / "etc"), data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"),
               log_dir=str(tmp_path / "log"))
    out.update(overrides)
    return out


def item(tenant, **overrides):
    out = {name: option.get("default") for name, option in ri.TENANT_SPEC.items()}
    out.update(tenant=tenant, port=7000, password=PASSWORD)
    out.update(overrides)
    return out


class FakeRun:
    def __init__(self):
        self.calls = []
        self.umasks = []

    def __call__(self, argv, umask=None):
        self.calls.append(argv)
        self.umasks.append(umask)
        return 0, "", ""


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A backend whose daemons are fakes: started ones 'run' and 'listen'."""
    running = set()
    monkeypatch.setattr(ri, "_process_running", lambda pidfile: 4242 if pidfile in running else None)
    monkeypatch.setattr(ri, "_listening", lambda spec: False)
    run = FakeRun()
    p = params(tmp_path)
    backend = ri.InstanceBackend(p, run)
    monkeypatch.setattr(backend, "_wait_listening", lambda spec: None)
    real_start = backend._start

    def start(spec):
        real_start(spec)
        running.add(spec.pidfile)
    monkeypatch.setattr(backend, "_start", start)
    monkeypatch.setattr(backend, "_stop", lambda spec, remove=False: running.discard(spec.pidfile))
    ri.ensure_directories(p, backend, check_mode=False)
    return p, backend, run


def apply(backend, specs):
    plans = [backend.plan(spec, actual) for spec, actual in zip(specs, backend.read(specs).values())]
    for plan in plans:
        for change in plan.changes:
            change.apply(None)
    return plans


def test_a_new_instance_is_written_with_its_mode_seeded_started_and_a_rerun_changes_nothing(host):
    p, backend, run = host
    specs = ri.prepare(p, [item("acme"), item("globex", port=7001, replicaof="10.0.0.1 7001")])
    plans = apply(backend, specs)
    assert [c.action for c in plans[0].changes] == [
        f"create {specs[0].dir}", f"write {specs[0].base}", f"seed {specs[0].live}", "start redis-acme"]
    assert stat.S_IMODE(os.stat(specs[0].base).st_mode) == 0o640
    assert f"requirepass {PASSWORD}" in open(specs[0].base, encoding="utf-8").read()
    assert open(specs[1].live, encoding="utf-8").read().endswith("replicaof 10.0.0.1 7001\n")
    assert run.calls[0] == [p["server_binary"], specs[0].live]
    assert run.umasks[0] == 0o077  # Redis rewrites its live file with mode 0644 less its umask
    assert PASSWORD not in repr([plan.as_result() for plan in plans] + [plan.diff() for plan in plans])
    again = apply(backend, ri.prepare(p, [item("acme"), item("globex", port=7001, replicaof="10.0.0.1 7001")]))
    assert [plan.changes for plan in again] == [[], []]


def test_changed_settings_restart_and_drop_redis_copies_but_keep_replication(host):
    p, backend, _run = host
    spec = ri.prepare(p, [item("acme")])[0]
    apply(backend, [spec])
    with open(spec.live, "a", encoding="utf-8") as live:  # what CONFIG REWRITE leaves after a failover
        live.write("maxmemory 1gb\nreplicaof 10.0.0.9 7000\nsave \"\"\n")
    plans = apply(backend, ri.prepare(p, [item("acme", maxmemory="64mb")]))
    assert [c.action for c in plans[0].changes] == [f"write {spec.base}", "restart redis-acme"]
    assert plans[0].diff()["after"]["settings"] == "rewritten"
    live = open(spec.live, encoding="utf-8").read()
    assert "maxmemory 1gb" not in live and "save" not in live and "replicaof 10.0.0.9 7000" in live


SENTINEL = {"group": "eu-1", "port": 26379, "password": PASSWORD, "binary": "/usr/bin/redis-sentinel",
            "resolve_hostnames": False}


def test_the_sentinel_is_a_daemon_of_the_same_call_and_a_restart_keeps_its_monitor_state(host):
    p, backend, run = host
    p["sentinel"] = dict(SENTINEL)
    specs = ri.prepare(p, [item("acme")])
    assert [s.key for s in specs] == ["sentinel/eu-1", "acme"]  # "/" cannot be in a tenant id
    sentinel = specs[0]
    plans = apply(backend, specs)
    assert [c.action for c in plans[0].changes] == [
        f"create {sentinel.dir}", f"write {sentinel.base}", f"seed {sentinel.live}", "start sentinel-eu-1"]
    assert run.calls[0] == ["/usr/bin/redis-sentinel", sentinel.live] and run.umasks[0] == 0o077
    assert stat.S_IMODE(os.stat(sentinel.base).st_mode) == 0o640
    assert "port 26379\n" in open(sentinel.base, encoding="utf-8").read()
    assert PASSWORD not in repr([plan.as_result() for plan in plans] + [plan.diff() for plan in plans])
    assert [plan.changes for plan in apply(backend, ri.prepare(p, [item("acme")]))] == [[], []]
    with open(sentinel.live, "a", encoding="utf-8") as live:  # what Sentinel writes: its state and base copies
        live.write("sentinel monitor harbor-acme 127.0.0.1 7000 2\nport 26379\nsentinel resolve-hostnames no\n")
    p["sentinel"]["resolve_hostnames"] = True
    plans = apply(backend, ri.prepare(p, [item("acme")]))
    assert [c.action for c in plans[0].changes] == [f"write {sentinel.base}", "restart sentinel-eu-1"]
    live = open(sentinel.live, encoding="utf-8").read()
    assert "sentinel monitor harbor-acme" in live and "port 26379" not in live and "resolve-hostnames" not in live


@pytest.mark.parametrize("overrides, field", [
    ({"group": "bad group"}, "sentinel.group"), ({"port": 0}, "sentinel.port"),
    ({"password": "has:colon"}, "sentinel.password"), ({"port": 7000}, "port")])
def test_bad_sentinel_input_names_the_field(tmp_path, overrides, field):
    with pytest.raises(TenantInputError) as err:
        ri.prepare(params(tmp_path, sentinel=dict(SENTINEL, **overrides)), [item("acme")])
    assert err.value.field == field


def test_an_absent_instance_is_stopped_and_its_files_deleted(host):
    p, backend, _run = host
    spec = ri.prepare(p, [item("acme")])[0]
    apply(backend, [spec])
    plans = apply(backend, ri.prepare(p, [item("acme", state="absent", port=None, password=None)]))
    assert [c.action for c in plans[0].changes] == ["stop redis-acme", "delete the files of redis-acme"]
    assert not os.path.exists(spec.base) and not os.path.exists(spec.dir)


@pytest.mark.parametrize("overrides, field", [
    ({"tenant": "acme\n"}, "tenants.tenant"),
    ({"port": None}, "port"),
    ({"password": "p@ss/word"}, "password"),
    ({"replicaof": "10.0.0.1"}, "replicaof"),
    ({"maxmemory": "lots"}, "maxmemory"),
    ({"maxmemory_policy": "random"}, "maxmemory_policy"),
])
def test_bad_input_names_the_field_before_anything_changes(tmp_path, overrides, field):
    with pytest.raises(TenantInputError) as err:
        second = item(overrides.pop("tenant", "globex"), **dict({"port": 7001}, **overrides))
        ri.prepare(params(tmp_path), [item("acme"), second])
    assert err.value.field == field
    assert not (tmp_path / "etc").exists()


def test_two_tenants_on_one_port_and_directives_the_module_owns_are_refused(tmp_path):
    with pytest.raises(TenantInputError, match="'acme' and 'globex' both want port 7000"):
        ri.prepare(params(tmp_path), [item("acme"), item("globex")])
    with pytest.raises(TenantInputError, match="extra_config.requirepass"):
        ri.prepare(params(tmp_path, extra_config={"requirepass": "x"}), [item("acme")])


def test_systemd_instances_are_units_read_in_one_call(tmp_path):
    run = FakeRun()
    run_results = {"is-active": (3, "active\ninactive\n", "")}

    def fake(argv):
        run.calls.append(argv)
        return run_results.get(argv[1], (0, "", ""))
    p = params(tmp_path, service_manager="systemd")
    backend = ri.InstanceBackend(p, fake)
    specs = ri.prepare(p, [item("acme"), item("globex", port=7001)])
    actual = backend.read(specs)
    assert run.calls == [["systemctl", "is-active", "harborfleet-redis@acme.service",
                          "harborfleet-redis@globex.service"]]
    assert actual["acme"]["running"] is True and actual["globex"]["running"] is False
    assert "daemonize no" in specs[0].base_text


def test_ports_in_the_hosts_ephemeral_range_are_refused_unless_reserved(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "ip_local_port_range").write_text("32768\t60999\n")
    (proc / "ip_local_reserved_ports").write_text("41600-41602,50000\n")
    span, reserved = ri.ephemeral_ports(str(proc))
    assert span == (32768, 60999) and reserved == {41600, 41601, 41602, 50000}
    ri.check_ephemeral({7000: "acme", 41601: "globex", 50000: "initech"}, span, reserved)
    with pytest.raises(TenantInputError, match=r"globex \(41603\): inside this host's ephemeral port range 32768-60999"):
        ri.check_ephemeral({7000: "acme", 41603: "globex"}, span, reserved)
    assert ri.ephemeral_ports(str(tmp_path / "none")) == (None, set())


def test_prepare_checks_the_real_hosts_range(tmp_path):
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii").read().split()[0])
    with pytest.raises(TenantInputError) as err:
        ri.prepare(params(tmp_path), [item("acme", port=low + 1)])
    assert err.value.field == "port" and "ephemeral" in str(err.value)


def test_a_port_another_process_holds_fails_that_tenant_before_anything_changes(host, monkeypatch):
    p, backend, run = host
    monkeypatch.setattr(ri, "_listening", lambda spec: spec.port == 7001)
    specs = ri.prepare(p, [item("acme"), item("globex", port=7001)])
    actual = backend.read(specs)
    assert backend.plan(specs[0], actual["acme"]).changes
    with pytest.raises(ri.FleetError, match="port 7001 on 127.0.0.1 is held by another process while redis-globex"):
        backend.plan(specs[1], actual["globex"])
    assert run.calls == [] and not os.path.exists(specs[1].dir)
