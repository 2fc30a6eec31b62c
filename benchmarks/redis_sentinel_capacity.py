#!/usr/bin/env python3
"""What one sentinel group costs as it grows: registration, no-op converge, idle CPU, memory, failover time.

Starts its own 3 sentinels and N idle tenant masters (redis-server, hz 1, no persistence) on free ports from
29900 / 30000 (below the kernel's ephemeral range, so no client socket holds them), registers master sets through
the collection's Sentinel backend (the code path of harborfleet.fleet.sentinel_master) in steps, and prints one JSON document. Every process it starts is a child of
this script and is stopped by PID at the end.

    .venv/bin/python benchmarks/redis_sentinel_capacity.py --steps 50,100,200
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))
sys.path.insert(0, os.path.join(ROOT, "lab"))

import redis  # noqa: E402  pylint: disable=wrong-import-position

import lab  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis as rd  # noqa: E402
from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import apply_plan, run_batch  # noqa: E402

LOOPBACK = lab.LOOPBACK
SENTINEL_PASSWORD = "benchSentinelPassw0rd"
TENANT_PASSWORD = "benchTenantPassw0rdbenchTenantPassw0rd"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(start, count, taken):
    ports, port = [], start
    while len(ports) < count:
        if port not in taken and not lab.port_open(port):
            ports.append(port)
            taken.add(port)
        port += 1
    return ports


class Processes:
    """Children started in the foreground (daemonize no): stopped by PID, reaped, no zombies."""

    def __init__(self, home):
        self.home = home
        self.children = []

    def start(self, binary, name, settings):
        conf = os.path.join(self.home, f"{name}.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write("\n".join(f"{k} {v}" for k, v in settings.items()) + "\n")
        log = open(os.path.join(self.home, f"{name}.log"), "ab")  # pylint: disable=consider-using-with
        proc = subprocess.Popen([binary, conf], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.children.append(proc)
        return proc

    @staticmethod
    def stop(proc):
        lab.stop_children([proc])

    def stop_all(self):
        lab.stop_children(self.children)


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def memory_kib(pid):
    """RSS, its private (anonymous) part, and PSS: shared pages (the binary, libraries) divided among sharers."""
    out = {"rss": rss_kib(pid)}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                out["anon"] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def backend(sentinels):
    params = dict(sentinels=[f"{LOOPBACK}:{p}" for p in sentinels], sentinel_password=SENTINEL_PASSWORD,
                  socket_timeout=10.0, sentinel_group="bench", capacity=0)
    return rd.SentinelBackend(params)


def spec(index, port, state="present", **extra):
    params = dict(tenant=f"bench-{index}", master_host=LOOPBACK, master_port=port, password=TENANT_PASSWORD,
                  update_password="verify", down_after_milliseconds=extra.get("down_after", 30000),
                  failover_timeout=extra.get("failover_timeout", 180000), parallel_syncs=1)
    return rd.MasterSetSpec(params, state, 3)


def converge(sentinels, specs, concurrency=8):
    """The module's path without Ansible: one bulk read, plans, apply over the shared batch runner."""
    be = backend(sentinels)
    try:
        started = time.monotonic()
        observed = be.read(specs)
        read_done = time.monotonic()
        plans = [be.plan(s, observed[s.key]) for s in specs]
        changed = [p for p in plans if p.changed]
        run_batch(changed, apply_plan, concurrency=concurrency)
        failed = [p.error for p in plans if p.error]
        if failed:
            raise RuntimeError(failed[:3])
        return {"seconds": round(time.monotonic() - started, 3), "read_ms": round((read_done - started) * 1000, 1),
                "changed": len(changed)}
    finally:
        be.close()


def idle_instances(procs, taken, count, seconds):
    """CPU and RSS of idle tenant instances at the default hz (10) and at hz 1 (dense hosts)."""
    result = {}
    for hz in (10, 1):
        ports = free_ports(31000, count, taken)
        group = [procs.start("redis-server", f"idle-{hz}-{port}", {
            "port": port, "bind": LOOPBACK, "dir": procs.home, "dbfilename": f"idle-{port}.rdb", "save": '""',
            "appendonly": "no", "hz": hz, "dynamic-hz": "yes", "requirepass": TENANT_PASSWORD}) for port in ports]
        for port in ports:
            wait_port(port)
        time.sleep(1)
        before = {p.pid: cpu_seconds(p.pid) for p in group}
        time.sleep(seconds)
        memory = [memory_kib(p.pid) for p in group]
        result[f"hz{hz}"] = {
            "instances": count,
            "cpu_cores_per_instance": round(sum(cpu_seconds(p.pid) - before[p.pid] for p in group) / count / seconds, 5),
            "kib_mean": {key: round(sum(m.get(key, 0) for m in memory) / count) for key in ("rss", "anon", "pss")}}
        for proc in group:
            procs.stop(proc)
    return result


def group_costs(procs, taken, steps, idle_seconds, out):
    """Registration, no-op converge, idle CPU and failover time of one group of 3 sentinels, per size."""
    sentinel_ports = free_ports(29900, 3, taken)
    sentinels = []
    for port in sentinel_ports:
        sentinels.append(procs.start("redis-sentinel", f"sentinel-{port}", {
            "port": port, "bind": LOOPBACK, "dir": procs.home, "requirepass": SENTINEL_PASSWORD,
            "protected-mode": "no", "sentinel": "resolve-hostnames no"}))
    master_ports = free_ports(30000, max(steps) + 10, taken)
    masters = []
    for port in master_ports:
        masters.append(procs.start("redis-server", f"redis-{port}", {
            "port": port, "bind": LOOPBACK, "dir": procs.home, "dbfilename": f"{port}.rdb", "save": '""',
            "appendonly": "no", "hz": 1, "requirepass": TENANT_PASSWORD, "masterauth": TENANT_PASSWORD}))
    for port in sentinel_ports + master_ports:
        wait_port(port)
    time.sleep(1)
    out["idle_kib"] = {"tenant_redis_hz1": memory_kib(masters[0].pid), "sentinel_empty": memory_kib(sentinels[0].pid)}

    registered = 0
    for size in steps:
        batch = [spec(i, master_ports[i]) for i in range(registered, size)]
        step = {"masters": size, "batch_register": converge(sentinel_ports, batch)}
        step["batch_register"]["ms_per_master_set"] = round(step["batch_register"]["seconds"] * 1000 / len(batch), 1)
        registered = size
        # ten more, one module call each (sequential), then removed again
        extra = [spec(size + i, master_ports[size + i]) for i in range(10)]
        started = time.monotonic()
        for item in extra:
            converge(sentinel_ports, [item], concurrency=1)
        step["single_register_ms"] = round((time.monotonic() - started) * 100, 1)
        started = time.monotonic()
        converge(sentinel_ports, [spec(size + i, master_ports[size + i], state="absent") for i in range(10)])
        step["remove_10_ms_each"] = round((time.monotonic() - started) * 100, 1)
        everything = [spec(i, master_ports[i]) for i in range(size)]
        step["noop_converge"] = converge(sentinel_ports, everything)
        assert step["noop_converge"]["changed"] == 0, step
        client = redis.Redis(port=sentinel_ports[0], password=SENTINEL_PASSWORD)
        started = time.monotonic()
        for _ in range(5):
            client.execute_command("SENTINEL", "MASTERS")
        step["sentinel_masters_ms"] = round((time.monotonic() - started) * 200, 1)
        client.close()
        before = {p.pid: cpu_seconds(p.pid) for p in sentinels}
        time.sleep(idle_seconds)
        step["idle_cpu_cores_per_sentinel"] = round(
            sum(cpu_seconds(p.pid) - before[p.pid] for p in sentinels) / len(sentinels) / idle_seconds, 4)
        step["sentinel_kib"] = memory_kib(sentinels[0].pid)
        out["steps"].append(step)
        print(json.dumps(step), file=sys.stderr, flush=True)

    # failover of a tenant with a replica while the group watches max(steps) master sets
    for index, down_after in enumerate((1000, 5000)):
        out[f"failover_seconds_down_after_{down_after}"] = failover(procs, taken, sentinel_ports, down_after,
                                                                    30000 + max(steps) + 20 + 2 * index)
    out["failover_group_size"] = max(steps) + 1


def failover(procs, taken, sentinel_ports, down_after, first_port):
    """Seconds from SIGKILL of a tenant's master until every sentinel names its replica as the master."""
    master_port, replica_port = free_ports(first_port, 2, taken)
    settings = {"bind": LOOPBACK, "dir": procs.home, "save": '""', "appendonly": "no", "hz": 1,
                "requirepass": TENANT_PASSWORD, "masterauth": TENANT_PASSWORD, "repl-diskless-sync": "yes",
                "repl-diskless-sync-delay": 0}
    master = procs.start("redis-server", f"fo-master-{master_port}", dict(settings, port=master_port,
                                                                          dbfilename=f"m{master_port}.rdb"))
    procs.start("redis-server", f"fo-replica-{replica_port}", dict(settings, port=replica_port,
                                                                   dbfilename=f"r{replica_port}.rdb",
                                                                   replicaof=f"{LOOPBACK} {master_port}"))
    wait_port(master_port)
    wait_port(replica_port)
    name_index = 90000 + down_after
    converge(sentinel_ports, [spec(name_index, master_port, down_after=down_after, failover_timeout=3 * down_after)])
    name = f"harbor-bench-{name_index}"
    clients = [redis.Redis(port=p, password=SENTINEL_PASSWORD, decode_responses=True) for p in sentinel_ports]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # replica and other sentinels discovered
        views = [c.sentinel_master(name) for c in clients]
        if all(v["num-slaves"] >= 1 and v["num-other-sentinels"] == 2 for v in views):
            break
        time.sleep(0.2)
    started = time.monotonic()
    os.kill(master.pid, signal.SIGKILL)
    master.wait()
    while time.monotonic() - started < 60:
        addresses = {tuple(c.sentinel_get_master_addr_by_name(name)) for c in clients}
        if addresses == {(LOOPBACK, replica_port)}:
            break
        time.sleep(0.05)
    seconds = round(time.monotonic() - started, 2)
    for conn in clients:
        conn.close()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,100,200")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--idle-instances", type=int, default=20, help="instances for the idle cost per hz")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    home = tempfile.mkdtemp(prefix="hf-sentinel-bench-")
    procs = Processes(home)
    taken = set()
    out = {"redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                   check=True).stdout.split()[2], "steps": []}
    try:
        out["idle_instance_cost"] = idle_instances(procs, taken, args.idle_instances, args.idle_seconds)
        print(json.dumps(out["idle_instance_cost"]), file=sys.stderr, flush=True)
        if steps:
            group_costs(procs, taken, steps, args.idle_seconds, out)
    finally:
        procs.stop_all()
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
