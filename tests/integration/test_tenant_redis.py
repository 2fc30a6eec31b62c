"""tenant_redis with real redis-server processes: one call converges a host's instances, a re-run changes
nothing, changed settings restart without touching replication, isolation is Redis's own denial, a taken port
fails its tenant only, absent removes."""
import os
import socket
import subprocess

import pytest

from conftest import lab_module, wait_for

PASSWORDS = {"ra": "RedisTenantA" * 3, "rb": "RedisTenantB" * 3}


def free_ports(count, start):
    ports = []
    for port in range(start, start + 300):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports")


def cli(port, password, *command):
    env = dict(os.environ, REDISCLI_AUTH=password)
    proc = subprocess.run(["redis-cli", "-e", "--no-auth-warning", "-h", "127.0.0.1", "-p", str(port), *command],
                          capture_output=True, text=True, env=env, check=False, timeout=10)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


@pytest.fixture
def host(tmp_path, run_module):
    """The module's options for a throwaway host layout, and the instances stopped at the end."""
    ports = free_ports(3, lab_module.shift(31500))
    base = {"config_dir": str(tmp_path / "etc"), "data_dir": str(tmp_path / "data"), "run_dir": str(tmp_path / "run"),
            "log_dir": str(tmp_path / "log"), "save": "", "hz": 1, "repl_diskless_sync_delay": 0,
            "maxmemory": "16mb", "wait_timeout": 10}
    yield base, ports
    run_module("tenant_redis", dict(base, tenants=[{"tenant": t, "state": "absent"} for t in PASSWORDS]))
    run_module("tenant_redis", dict(second_host(base), tenants=[{"tenant": "ra", "state": "absent"}]))


def second_host(base):
    """Another host's layout (the replica's), beside the first."""
    return dict(base, **{key: base[key] + "-2" for key in ("config_dir", "data_dir", "run_dir", "log_dir")})


@pytest.mark.reliability
def test_one_call_converges_the_hosts_instances_and_a_rerun_changes_nothing(host, run_module, reliability):
    base, (pa, pb, replica) = host
    tenants = [{"tenant": "ra", "port": pa, "password": PASSWORDS["ra"]},
               {"tenant": "rb", "port": pb, "password": PASSWORDS["rb"]}]
    checked = run_module("tenant_redis", dict(base, tenants=tenants), check=True)
    assert checked["changed"] and not os.path.exists(base["config_dir"])  # check mode wrote nothing
    first = run_module("tenant_redis", dict(base, tenants=tenants), diff=True)
    assert first["changed"] and first["summary"] == {"total": 2, "changed": 2, "failed": 0, "skipped": 0}
    assert os.stat(os.path.join(base["config_dir"], "redis-ra.base.conf")).st_mode & 0o777 == 0o640
    assert cli(pa, PASSWORDS["ra"], "PING") == (0, "PONG")
    # Redis (and a sentinel on failover) rewrites the live file: it stays private to the owner
    live = os.path.join(base["config_dir"], "redis-ra.conf")
    assert cli(pa, PASSWORDS["ra"], "CONFIG", "REWRITE") == (0, "OK")
    assert os.stat(live).st_mode & 0o077 == 0, oct(os.stat(live).st_mode)
    # the tenant's replica on another host: seeded with replicaof, replicating with the tenant's password
    other = run_module("tenant_redis", dict(second_host(base), tenants=[
        {"tenant": "ra", "port": replica, "password": PASSWORDS["ra"], "replicaof": f"127.0.0.1 {pa}"}]))
    assert other["changed"], other
    assert wait_for(lambda: "master_link_status:up" in cli(replica, PASSWORDS["ra"], "INFO", "replication")[1], 20)
    # isolation: the store's own denial, not a refused connection
    rc, out = cli(pb, PASSWORDS["ra"], "PING")
    assert rc != 0 and "WRONGPASS" in out
    reliability("isolation", "Redis: A's password on B's master", 1, "denied by Redis (WRONGPASS)")
    again = run_module("tenant_redis", dict(base, tenants=tenants))
    assert again["changed"] is False
    text = repr(first) + repr(again)
    assert all(password not in text for password in PASSWORDS.values())


def test_changed_settings_restart_and_a_taken_port_fails_only_its_tenant(host, run_module):
    base, (pa, pb, spare) = host
    tenants = [{"tenant": "ra", "port": pa, "password": PASSWORDS["ra"]}]
    assert run_module("tenant_redis", dict(base, tenants=tenants))["changed"]
    pid_before = open(os.path.join(base["run_dir"], "redis-ra.pid"), encoding="ascii").read()
    changed = run_module("tenant_redis", dict(base, maxmemory="32mb", tenants=tenants))
    assert changed["results"][0]["actions"][-1] == "restart redis-ra"
    assert cli(pa, PASSWORDS["ra"], "CONFIG", "GET", "maxmemory")[1].splitlines()[-1] == str(32 * 1024 * 1024)
    assert open(os.path.join(base["run_dir"], "redis-ra.pid"), encoding="ascii").read() != pid_before
    with socket.socket() as squatter:  # another process holds rb's port
        squatter.bind(("127.0.0.1", spare))
        squatter.listen()
        result = run_module("tenant_redis", dict(base, maxmemory="32mb", wait_timeout=3, tenants=tenants + [
            {"tenant": "rb", "port": spare, "password": PASSWORDS["rb"]}]))
    assert result["failed"] and result["failed_tenants"] == ["rb"]
    assert "port %d on 127.0.0.1 is held by another process" % spare in result["results"][1]["msg"]
    assert result["results"][0]["failed"] is False
    assert not os.path.exists(os.path.join(base["config_dir"], "redis-rb.base.conf"))  # nothing written for rb
    removed = run_module("tenant_redis", dict(base, tenants=[{"tenant": t, "state": "absent"} for t in PASSWORDS]))
    assert removed["changed"] and not os.path.exists(os.path.join(base["data_dir"], "redis-ra"))
    assert cli(pa, PASSWORDS["ra"], "PING")[0] != 0
