"""sentinel_master against real redis-sentinel + redis-server: the lab's sentinels, plus throwaway groups of three
sentinels of our own (on free ports, stopped by PID) for the tests that stop a sentinel or fill a group."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import redis
from redis.sentinel import Sentinel

from conftest import lab_module

MODULE = "sentinel_master"
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "output", "sentinel_master.json")


# --------------------------------------------------------------------------- helpers

def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def record(name, value):
    """Measurements (never asserted on) go to tests/output/sentinel_master.json and the test log."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    data = {}
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as handle:
            data = json.load(handle)
    data[name] = value
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    print(f"{name}: {value}")


def free_port(start, taken=()):
    for port in range(start, start + 400):
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Group:
    """Sentinels as the module sees them, with direct clients for checks and tampering."""

    def __init__(self, addresses, password):
        self.addresses = list(addresses)
        self.password = password

    @property
    def login(self):
        return {"sentinels": [f"{h}:{p}" for h, p in self.addresses], "sentinel_password": self.password}

    def client(self, index):
        host, port = self.addresses[index]
        return redis.Redis(host=host, port=port, password=self.password, decode_responses=True, socket_timeout=3)

    def masters(self, index):
        return {m["name"]: m for m in self.client(index).execute_command("SENTINEL", "MASTERS")}

    def view(self, index, name):
        return self.masters(index).get(name)

    def wait_discovered(self, name, replicas, indexes=None):
        """Sentinels find each other (and the replicas) through the master's hello channel and INFO."""
        indexes = range(len(self.addresses)) if indexes is None else indexes

        def done():
            views = [self.view(i, name) for i in indexes]
            return all(v and int(v["num-other-sentinels"]) == len(self.addresses) - 1
                       and int(v["num-slaves"]) >= replicas for v in views)
        wait_for(done, 20, f"sentinels discovering each other and {replicas} replica(s) of {name}")

    def sentinel_client(self):
        return Sentinel(self.addresses, sentinel_kwargs={"password": self.password}, socket_timeout=2)


class OwnSentinels(Group):
    """Three throwaway sentinels in the foreground (children of pytest): stopped by PID, restarted from the
    configuration they rewrote, like a sentinel coming back."""

    PASSWORD = "OwnSentinelsPassw0rd"

    def __init__(self, home):
        self.home = home
        ports = []
        for _index in range(3):
            ports.append(free_port(lab_module.shift(31600), ports))
        super().__init__([("127.0.0.1", p) for p in ports], self.PASSWORD)
        self.procs = [None] * 3

    def conf(self, index):
        return os.path.join(self.home, f"sentinel-{index}.conf")

    def start(self, index):
        port = self.addresses[index][1]
        if not os.path.exists(self.conf(index)):
            with open(self.conf(index), "w", encoding="utf-8") as handle:
                handle.write(f"port {port}\nbind 127.0.0.1\ndir {self.home}\nrequirepass {self.PASSWORD}\n"
                             "protected-mode no\nsentinel resolve-hostnames no\n")
        log = open(os.path.join(self.home, f"sentinel-{index}.log"), "ab")  # pylint: disable=consider-using-with
        self.procs[index] = subprocess.Popen(["redis-sentinel", self.conf(index)], stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        wait_for(lambda: self.client(index).ping(), 10, f"sentinel {port} starting")

    def stop(self, index):
        lab_module.stop_children([self.procs[index]])
        self.procs[index] = None


@pytest.fixture
def lab_group(lab_env, sentinel_addresses):
    return Group(sentinel_addresses, lab_env["LAB_SENTINEL_PASSWORD"])


@pytest.fixture
def own_group(tmp_path):
    group = OwnSentinels(str(tmp_path))
    try:
        for index in range(3):
            group.start(index)
        yield group
    finally:
        for index in range(3):
            group.stop(index)


@pytest.fixture
def tenants(lab, run_module):
    """Starts tenants' Redis instances with the lab helper; at the end removes their master sets from the groups
    they were registered on and stops the instances, whatever happened."""
    started, registered = [], []

    def start(tenant, password, replicas=1):
        state = lab.redis_tenant_start(tenant, password, replicas=replicas)
        started.append(tenant)
        return state["instances"]

    def registered_on(group, tenant):
        registered.append((group, tenant))

    start.registered_on = registered_on
    yield start
    for group, tenant in registered:
        try:
            run_module(MODULE, dict(group.login, tenant=tenant, state="absent"))
        except AssertionError:
            pass  # the group may be gone already
    for tenant in started:
        lab.redis_tenant_stop(tenant)


def master_args(group, tenant, instance, password, **extra):
    args = dict(group.login, tenant=tenant, master_host=instance["host"], master_port=instance["port"],
                password=password, down_after_milliseconds=1000, failover_timeout=3000)
    args.update(extra)
    return args


def password(lab):
    return lab.url_safe_password(40)


# --------------------------------------------------------------------------- tests

def test_register_check_mode_idempotence_settings_and_removal(lab, lab_group, run_module, tenants, unique):
    tenant = f"sm-{unique}"
    name = f"harbor-{tenant}"
    secret = password(lab)
    instances = tenants(tenant, secret)
    tenants.registered_on(lab_group, tenant)
    args = master_args(lab_group, tenant, instances[0], secret)

    predicted = run_module(MODULE, args, check=True, diff=True)
    assert predicted["changed"] is True
    assert all(lab_group.view(i, name) is None for i in range(3))  # check mode wrote nothing
    assert predicted["diff"]["before"]["sentinels"] == {s: None for s in args["sentinels"]}
    assert predicted["sentinels"] == {s: "added" for s in args["sentinels"]}

    real = run_module(MODULE, args, diff=True)
    assert real["changed"] is True and real["actions"] == predicted["actions"]
    assert real["master_set"] == name and real["password"] == "set"
    assert real["master_address"] == f"127.0.0.1:{instances[0]['port']}" and real["failed_over"] is False
    assert not any(secret in call for call in real["calls"])
    assert any("auth-pass ********" in call for call in real["calls"])
    for index in range(3):
        view = lab_group.view(index, name)
        assert (view["ip"], int(view["port"])) == ("127.0.0.1", instances[0]["port"])
        assert (int(view["quorum"]), int(view["down-after-milliseconds"]), int(view["failover-timeout"]),
                int(view["parallel-syncs"])) == (2, 1000, 3000, 1)

    again = run_module(MODULE, args, diff=True)
    assert again["changed"] is False and again["calls"] == [] and again["password"] == "unchanged"
    assert again["diff"]["before"] == again["diff"]["after"]

    changed = run_module(MODULE, dict(args, down_after_milliseconds=2000, quorum=3), diff=True)
    assert changed["changed"] is True
    assert changed["calls"] == [f"{s}: SENTINEL SET {name} quorum 3 down-after-milliseconds 2000"
                                for s in args["sentinels"]]
    assert all(int(lab_group.view(i, name)["quorum"]) == 3 for i in range(3))

    removal = dict(lab_group.login, tenant=tenant, state="absent")
    assert run_module(MODULE, removal, check=True)["changed"] is True
    assert all(lab_group.view(i, name) is not None for i in range(3))
    removed = run_module(MODULE, removal)
    assert removed["changed"] is True and removed["sentinels"] == {s: "removed" for s in args["sentinels"]}
    assert all(lab_group.view(i, name) is None for i in range(3))
    assert run_module(MODULE, removal)["changed"] is False


def test_clients_through_sentinel_and_tenant_isolation(lab, lab_group, run_module, tenants, unique):
    a, b = f"iso-a-{unique}", f"iso-b-{unique}"
    secret_a, secret_b = password(lab), password(lab)
    inst_a, inst_b = tenants(a, secret_a), tenants(b, secret_b)
    tenants.registered_on(lab_group, a)
    tenants.registered_on(lab_group, b)
    result = run_module(MODULE, dict(lab_group.login, down_after_milliseconds=1000, failover_timeout=3000, tenants=[
        {"tenant": a, "master_host": "127.0.0.1", "master_port": inst_a[0]["port"], "password": secret_a},
        {"tenant": b, "master_host": "127.0.0.1", "master_port": inst_b[0]["port"], "password": secret_b}]))
    assert result["changed"] is True and result["summary"]["changed"] == 2 and result["failed_tenants"] == []
    lab_group.wait_discovered(f"harbor-{a}", replicas=1)

    sentinel = lab_group.sentinel_client()
    client_a = sentinel.master_for(f"harbor-{a}", password=secret_a, socket_timeout=2)
    assert client_a.set("harbor:probe", "a") and client_a.get("harbor:probe") == b"a"
    replica_a = sentinel.slave_for(f"harbor-{a}", password=secret_a, socket_timeout=2)
    wait_for(lambda: replica_a.get("harbor:probe") == b"a", 10, "the write reaching tenant a's replica")

    with pytest.raises(redis.AuthenticationError):
        sentinel.master_for(f"harbor-{a}", password="wrong-password", socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):  # tenant a's password does not open tenant b's master
        sentinel.master_for(f"harbor-{b}", password=secret_a, socket_timeout=2).ping()
    client_b = sentinel.master_for(f"harbor-{b}", password=secret_b, socket_timeout=2)
    assert client_b.get("harbor:probe") is None  # and b does not see a's data


@pytest.mark.reliability
def test_failover_keeps_clients_working_and_is_not_undone(lab, lab_group, run_module, tenants, unique, reliability):
    tenant = f"fo-{unique}"
    name = f"harbor-{tenant}"
    secret = password(lab)
    instances = tenants(tenant, secret)
    tenants.registered_on(lab_group, tenant)
    master, replica = instances
    args = master_args(lab_group, tenant, master, secret)
    assert run_module(MODULE, args)["changed"] is True
    lab_group.wait_discovered(name, replicas=1)

    client = lab_group.sentinel_client().master_for(name, password=secret, socket_timeout=1)
    assert client.set("before", "1")
    started = time.monotonic()
    os.kill(master["pid"], signal.SIGKILL)
    replica_address = ("127.0.0.1", str(replica["port"]))
    wait_for(lambda: all(tuple(map(str, lab_group.client(i).sentinel_get_master_addr_by_name(name))) == replica_address
                         for i in range(3)), 30, "the sentinels promoting the replica")
    failover_seconds = round(time.monotonic() - started, 2)

    def client_writes():
        try:
            return client.set("after", "2")
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            return False  # the client finds the new master through the sentinels on its next connection
    wait_for(client_writes, 15, "the sentinel client writing to the new master")
    client_seconds = round(time.monotonic() - started, 2)
    assert client.get("before") == b"1" and client.get("after") == b"2"
    record("failover_seconds_down_after_1000ms", failover_seconds)
    record("sentinel_client_writes_again_after_seconds", client_seconds)

    again = run_module(MODULE, args)  # the requested master is now a (down) replica: a failover, not drift
    assert again["changed"] is False
    assert again["failed_over"] is True and again["master_address"] == f"127.0.0.1:{replica['port']}"
    assert set(again["sentinels"].values()) == {"ok"}
    reliability("faults", "a tenant's Redis master SIGKILLed (failover)", 1,
                "data kept on the promoted replica; re-run changed=0, not undone")


def test_partial_and_drifted_state_is_repaired(lab, lab_group, run_module, tenants, unique):
    tenant = f"rep-{unique}"
    name = f"harbor-{tenant}"
    secret = password(lab)
    instances = tenants(tenant, secret)
    tenants.registered_on(lab_group, tenant)
    args = master_args(lab_group, tenant, instances[0], secret)
    run_module(MODULE, args)
    shown = args["sentinels"]

    lab_group.client(1).execute_command("SENTINEL", "REMOVE", name)  # registered on 2 of 3
    predicted = run_module(MODULE, args, check=True)
    assert predicted["sentinels"] == {shown[0]: "ok", shown[1]: "added", shown[2]: "ok"}
    assert lab_group.view(1, name) is None
    repaired = run_module(MODULE, args)
    assert repaired["changed"] is True and repaired["actions"] == predicted["actions"]
    assert lab_group.view(1, name)["port"] == str(instances[0]["port"])

    # monitored somewhere that is neither the master nor one of its replicas: registered again
    client = lab_group.client(2)
    client.execute_command("SENTINEL", "REMOVE", name)
    client.execute_command("SENTINEL", "MONITOR", name, "127.0.0.1", 9, 2)
    fixed = run_module(MODULE, args)
    assert fixed["sentinels"][shown[2]] == "re-registered"
    assert lab_group.view(2, name)["port"] == str(instances[0]["port"])

    # a sentinel holding a wrong auth-pass: its link fails, the module checks the password and sets it there
    client.execute_command("SENTINEL", "SET", name, "auth-pass", "notTheTenantPassword")
    wait_for(lambda: int(lab_group.view(2, name)["last-ok-ping-reply"]) > 3000 or
             "s_down" in lab_group.view(2, name)["flags"], 15, "the sentinel losing its link to the master")
    healed = run_module(MODULE, args)
    assert healed["changed"] is True and healed["password"] == "set"
    assert healed["sentinels"] == {shown[0]: "ok", shown[1]: "ok", shown[2]: "updated"}
    wait_for(lambda: int(lab_group.view(2, name)["last-ok-ping-reply"]) < 1500 and
             "s_down" not in lab_group.view(2, name)["flags"], 15, "the sentinel's link recovering")
    final = run_module(MODULE, args)
    assert final["changed"] is False


def test_bad_input_fails_before_anything_changes(lab, lab_group, run_module, tenants, unique):
    tenant = f"bad-{unique}"
    secret = password(lab)
    instances = tenants(tenant, secret)
    tenants.registered_on(lab_group, tenant)
    base = master_args(lab_group, tenant, instances[0], secret)
    for args, field in [
        (dict(base, tenant="Not_A_Tenant"), "tenant"),
        (dict(base, password="with#special&chars"), "password"),
        (dict(base, quorum=4), "quorum"),
        (dict(base, master_set="bad name"), "master_set"),
        (dict(base, master_port=70000), "master_port"),
        (dict(base, sentinels=["127.0.0.1"]), "sentinels"),
        (dict(base, password=secret[::-1]), "password"),  # refused by the master: checked before MONITOR
    ]:
        result = run_module(MODULE, args)
        assert result.get("failed") is True, args
        assert result["msg"].startswith(f"{field}:"), result["msg"]
    assert all(lab_group.view(i, f"harbor-{tenant}") is None for i in range(3))


@pytest.mark.reliability
def test_unreachable_sentinel_is_named_and_the_rerun_repairs(lab, own_group, run_module, tenants, unique, reliability):
    first, second = f"down-a-{unique}", f"down-b-{unique}"
    secrets = {first: password(lab), second: password(lab)}
    inst = {first: tenants(first, secrets[first]), second: tenants(second, secrets[second])}
    tenants.registered_on(own_group, first)
    tenants.registered_on(own_group, second)
    assert run_module(MODULE, master_args(own_group, first, inst[first][0], secrets[first]))["changed"] is True
    down = own_group.login["sentinels"][1]
    own_group.stop(1)

    args = dict(own_group.login, down_after_milliseconds=1000, failover_timeout=3000, tenants=[
        {"tenant": t, "master_host": "127.0.0.1", "master_port": inst[t][0]["port"], "password": secrets[t]}
        for t in (first, second)])
    predicted = run_module(MODULE, args, check=True)
    assert predicted.get("failed") is True and own_group.view(0, f"harbor-{second}") is None
    result = run_module(MODULE, args)
    assert result.get("failed") is True
    message = result["results"][1]["msg"]
    assert down in message and "connection refused" in message and "2 of 3 sentinels are reachable, a majority" \
        in message, message
    assert result["results"][1]["sentinels"][down] == "unreachable"
    assert result["results"][1]["actions"] == predicted["results"][1]["actions"]
    assert all(own_group.view(i, f"harbor-{second}") is not None for i in (0, 2))  # converged where reachable

    own_group.stop(2)
    worse = run_module(MODULE, args)
    assert "only 1 of 3 sentinels are reachable" in worse["results"][0]["msg"]
    own_group.start(2)

    own_group.start(1)  # back, from the configuration it rewrote: knows first, not second
    repaired = run_module(MODULE, args)
    assert repaired.get("failed") is not True, repaired
    assert repaired["results"][0]["changed"] is False
    assert repaired["results"][1]["sentinels"] == {s: ("added" if s == down else "ok")
                                                   for s in own_group.login["sentinels"]}
    assert run_module(MODULE, args)["changed"] is False
    reliability("faults", "a sentinel (then two) stopped during registration", 1,
                "failed naming it; converged where reachable; re-run repaired, then changed=0")


def test_capacity_refuses_to_overfill_a_group(lab, own_group, run_module, tenants, unique):
    names = [f"cap-{i}-{unique}" for i in range(3)]
    secret = password(lab)
    items = []
    for tenant in names:
        instances = tenants(tenant, secret, replicas=0)
        tenants.registered_on(own_group, tenant)
        items.append({"tenant": tenant, "master_host": "127.0.0.1", "master_port": instances[0]["port"],
                      "password": secret})
    assert run_module(MODULE, dict(own_group.login, capacity=2, tenants=items[:1]))["changed"] is True
    refused = run_module(MODULE, dict(own_group.login, capacity=2, sentinel_group="eu-1", tenants=items))
    assert refused.get("failed") is True
    assert "sentinel group 'eu-1' monitors 1 master sets and has a capacity of 2" in refused["msg"]
    assert len(own_group.masters(0)) == 1  # nothing registered
    assert run_module(MODULE, dict(own_group.login, capacity=2, tenants=items[:2]))["changed"] is True


def test_no_secret_in_output_even_at_vvvv(lab, lab_group, run_module, tenants, unique):
    tenant = f"leak-{unique}"
    secret = password(lab)
    instances = tenants(tenant, secret, replicas=0)
    tenants.registered_on(lab_group, tenant)
    args = master_args(lab_group, tenant, instances[0], secret, update_password="always")
    for check in (True, False):
        rc, text = run_module(MODULE, args, check=check, diff=True, verbosity=4, raw=True)
        assert rc == 0, text
        assert secret not in text and lab_group.password not in text
        assert "auth-pass ********" in text
    rc, text = run_module(MODULE, dict(args, password=secret[::-1]), diff=True, verbosity=4, raw=True)
    assert rc != 0 and secret[::-1] not in text and lab_group.password not in text


def test_tls_connection_to_the_sentinels(tmp_path, run_module, unique):
    """A sentinel that only speaks TLS: the module reads and writes through it with tls + tls_ca_cert."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", "server.crt")
    port = free_port(lab_module.shift(31700))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {tmp_path}\nrequirepass {OwnSentinels.PASSWORD}\n"
                    f"tls-cert-file {tmp_path / 'server.crt'}\ntls-key-file {tmp_path / 'server.key'}\n"
                    f"tls-ca-cert-file {tmp_path / 'ca.crt'}\ntls-auth-clients no\n"
                    "sentinel resolve-hostnames no\n")
    with open(tmp_path / "sentinel.log", "ab") as log:
        proc = subprocess.Popen(["redis-sentinel", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        tls = redis.Redis(host="127.0.0.1", port=port, password=OwnSentinels.PASSWORD, ssl=True,
                          ssl_ca_certs=str(tmp_path / "ca.crt"))
        wait_for(tls.ping, 10, "the TLS sentinel starting")
        args = dict(sentinels=[f"127.0.0.1:{port}"], sentinel_password=OwnSentinels.PASSWORD, tls=True,
                    tls_ca_cert=str(tmp_path / "ca.crt"), tenant=f"tls-{unique}", master_host="127.0.0.1",
                    master_port=9, password="TlsTenantPassw0rd")  # no master there: registration still works
        created = run_module(MODULE, args)
        assert created["changed"] is True and created["password"] == "set"
        assert run_module(MODULE, args)["changed"] is False
        plain = run_module(MODULE, dict(args, tls=False))
        assert plain.get("failed") is True and f"127.0.0.1:{port}" in plain["msg"]
        assert run_module(MODULE, dict(args, state="absent"))["changed"] is True
    finally:
        lab_module.stop_children([proc])
