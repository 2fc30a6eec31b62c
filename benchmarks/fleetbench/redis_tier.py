"""The benchmark's own Redis tier: throwaway sentinel groups and real tenant Redis masters.

One sentinel group of 3 sentinels per ``per_group`` tenants (a group slows down sharply past a few hundred master
sets, see docs/redis-sizing.md), and ``instances`` idle Redis masters (hz 1, no persistence, each with its own
password). With fewer instances than tenants, tenant i uses instance i % instances (a shared pool; the report
says so). Every process is a child of the benchmark, in its own temporary directory and on its own ports (from
``port_base``, below the kernel's ephemeral range and away from the lab's), and is stopped by PID.
"""

import os
import shutil
import subprocess
import tempfile
import time

from .common import LOOPBACK, BenchError, password, port_open

import lab  # lab/lab.py, put on the path by .common  # pylint: disable=wrong-import-order

SENTINELS_PER_GROUP = 3


class RedisTier:
    def __init__(self, sentinel_password, port_base=20000):
        self.sentinel_password = sentinel_password
        self.port_base = port_base
        self.home = None
        self.children = []
        self.groups = {}        # name -> ["127.0.0.1:port", ...]
        self.instances = []     # [(port, password)]
        self.per_group = 0
        self.taken = set()

    # ------------------------------------------------------------------ layout
    def group_of(self, index):
        return f"g{index // self.per_group:02d}"

    def instance_of(self, index):
        return self.instances[index % len(self.instances)]

    @property
    def pids(self):
        return [proc.pid for proc in self.children if proc.poll() is None]

    def describe(self, tenants):
        groups = sorted({self.group_of(i) for i in range(tenants)})
        shared = len(self.instances) < tenants
        return {"sentinel_groups": len(groups), "sentinels": len(groups) * SENTINELS_PER_GROUP,
                "tenants_per_group": self.per_group, "real_redis_instances": min(len(self.instances), tenants),
                "instances_shared": shared,
                "note": (f"{tenants} master sets on {len(groups)} throwaway sentinel groups of "
                         f"{SENTINELS_PER_GROUP}; " + (
                             f"they point at {len(self.instances)} real Redis masters shared round-robin"
                             if shared else "each points at its own real Redis master"))}

    # ------------------------------------------------------------------ processes
    def _free_ports(self, start, count):
        ports, port = [], start
        while len(ports) < count:
            if port >= 32768:
                raise BenchError(f"no free ports left below 32768 from {start}")
            if port not in self.taken and not port_open(port):
                ports.append(port)
                self.taken.add(port)
            port += 1
        return ports

    def _start(self, binary, name, settings):
        conf = os.path.join(self.home, f"{name}.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            for key, value in settings.items():
                for item in value if isinstance(value, list) else [value]:
                    handle.write(f"{key} {item}\n")
        os.chmod(conf, 0o600)
        with open(os.path.join(self.home, f"{name}.log"), "ab") as log:
            proc = subprocess.Popen([binary, conf], stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(proc)
        return proc

    def start(self, tenants, per_group, instances):
        """Start the groups ``tenants`` needs and ``instances`` Redis masters; waits until all listen."""
        self.per_group = per_group
        self.home = tempfile.mkdtemp(prefix="hf-bench-redis-")
        os.chmod(self.home, 0o700)
        group_count = -(-tenants // per_group)
        master_ports = self._free_ports(self.port_base, instances)
        sentinel_ports = self._free_ports(self.port_base + 2000, group_count * SENTINELS_PER_GROUP)
        for port in master_ports:
            pw = password()
            self._start("redis-server", f"redis-{port}", {
                "port": port, "bind": LOOPBACK, "dir": self.home, "dbfilename": f"redis-{port}.rdb", "save": '""',
                "appendonly": "no", "hz": 1, "dynamic-hz": "yes", "requirepass": pw, "masterauth": pw,
                "protected-mode": "no", "loglevel": "warning", "maxmemory": "32mb"})
            self.instances.append((port, pw))
        for index in range(group_count):
            ports = sentinel_ports[index * SENTINELS_PER_GROUP:(index + 1) * SENTINELS_PER_GROUP]
            name = f"g{index:02d}"
            for port in ports:
                # Sentinel rewrites its own file: a fresh one per start, in a directory of its own.
                self._start("redis-sentinel", f"sentinel-{name}-{port}", {
                    "port": port, "bind": LOOPBACK, "dir": self.home, "requirepass": self.sentinel_password,
                    "sentinel": [f"sentinel-pass {self.sentinel_password}", "resolve-hostnames no"],
                    "protected-mode": "no", "loglevel": "warning"})
            self.groups[name] = [f"{LOOPBACK}:{port}" for port in ports]
        deadline = time.monotonic() + 60
        waiting = master_ports + sentinel_ports
        while waiting:
            waiting = [port for port in waiting if not port_open(port)]
            dead = [proc.args[1] for proc in self.children if proc.poll() is not None]
            if dead:
                raise BenchError(f"Redis tier: {len(dead)} processes exited at start, e.g. {dead[0]} "
                                 f"(logs in {self.home})")
            if waiting and time.monotonic() > deadline:
                raise BenchError(f"Redis tier: ports {waiting[:5]} did not open within 60s (logs in {self.home})")
            if waiting:
                time.sleep(0.1)
        return self

    def memory_mib(self):
        """Resident memory of the tier (private pages only, so shared binaries count once)."""
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                    total += next(int(line.split()[1]) for line in handle if line.startswith("RssAnon:"))
            except (OSError, StopIteration):
                pass
        return round(total / 1024, 1)

    def stop(self):
        """Stop every process this tier started, by PID (all signalled first, then reaped), and delete its files."""
        lab.stop_children(self.children, timeout=15)
        self.children = []
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None
