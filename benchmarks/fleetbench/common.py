"""Shared pieces: where things are, the lab's endpoints, tenants of a round, CPU accounting, the machine."""

import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
if os.path.join(ROOT, "lab") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "lab"))  # lab/lab.py: the lab's own helpers
LAB_DIR = os.environ.get("HARBORFLEET_LAB_DIR", os.path.join(ROOT, ".lab"))
ANSIBLE_DIR = os.path.join(BENCH, "plays")

# pylint: disable-next=wrong-import-position
from lab import LOOPBACK, port_open, url_safe_password  # noqa: E402,F401  (LOOPBACK, port_open: re-exported)

CLK_TCK = os.sysconf("SC_CLK_TCK")

# What every path converges for a tenant, besides its names (the object_storage role's bucket defaults).
HARBOR_VERSION = "2.6.4"
HARBOR_CLASS = "bench"
TOKEN_ISSUER = "harbor-issuer"
BUCKET_SETTINGS = {"versioning": "enabled", "encryption": True, "abort_incomplete_multipart_days": 7,
                   "noncurrent_version_expiration_days": 30}
SENTINEL_SETTINGS = {"down-after-milliseconds": 30000, "failover-timeout": 180000, "parallel-syncs": 1}


class BenchError(Exception):
    """Something the benchmark cannot go on without; the message says what to do."""


def password(length=40):
    return url_safe_password(length)


def import_collection():
    """Make ``ansible_collections.harborfleet.fleet`` importable (``make collection`` creates the link)."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "harborfleet", "fleet")
    if not os.path.exists(os.path.join(link, "plugins", "module_utils", "_tenant.py")):
        raise BenchError(f"{link} does not expose the collection: run `make collection` (or `make bench`)")
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


def lab_env():
    """The running lab's endpoints and credentials; an error that says `make lab-up` when it is not up."""
    path = os.path.join(LAB_DIR, "env.json")
    if not os.path.exists(path):
        raise BenchError(f"the lab is not up ({path} is missing): run `make lab-up` (or `make bench`)")
    with open(path, encoding="utf-8") as handle:
        env = json.load(handle)
    ports = {"PostgreSQL": int(env["LAB_PG_PORT"]), "S3": int(env["LAB_S3_ENDPOINT"].rsplit(":", 1)[1]),
             "kube-apiserver": kube_port(env)}
    ports.update({f"sentinel {s}": int(s.rsplit(":", 1)[1]) for s in env["LAB_SENTINELS"].split(",")})
    down = [name for name, port in ports.items() if not port_open(port)]
    if down:
        raise BenchError(f"lab services not answering: {', '.join(down)}; run `make lab-up`")
    return env


def kube_port(env):
    import yaml  # pylint: disable=import-outside-toplevel
    with open(env["LAB_KUBECONFIG"], encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    return int(config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


class Tenant:
    """One benchmark tenant: its id and where its Redis master is."""

    __slots__ = ("tenant", "index", "group", "master_port", "cache_password", "cache_host", "cache_port")

    def __init__(self, tenant, index, group, master_port, cache_password, sentinel):
        self.tenant = tenant
        self.index = index
        self.group = group
        self.master_port = master_port
        self.cache_password = cache_password
        self.cache_host, port = sentinel.rsplit(":", 1)
        self.cache_port = int(port)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__ if name != "index"}

    @property
    def bucket(self):
        return f"harbor-{self.tenant}"

    @property
    def slug(self):
        return self.tenant.replace("-", "_")


def make_tenants(prefix, count, tier):
    """``count`` tenants named ``<prefix>-0000``...; tenant i sits on sentinel group i // per_group and on
    Redis instance i % instances (one instance each unless the Redis tier is a shared pool)."""
    tenants = []
    for index in range(count):
        group = tier.group_of(index)
        port, pw = tier.instance_of(index)
        tenants.append(Tenant(f"{prefix}-{index:04d}", index, group, port, pw, tier.groups[group][0]))
    return tenants


# --------------------------------------------------------------------------- CPU accounting

def _proc_cpu(pid, with_children=False):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def _read_pid(path):
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def lab_pids():
    """The lab's long-running processes (PostgreSQL's postmaster counts its exited backends as children)."""
    found = {}
    for name, path in (("etcd", "etcd/etcd.pid"), ("kube-apiserver", "kube-apiserver/kube-apiserver.pid"),
                       ("postgres", "postgres/data/postmaster.pid"), ("seaweedfs", "seaweedfs/seaweedfs.pid"),
                       ("reconciler", "reconciler/reconciler.pid")):
        pid = _read_pid(os.path.join(LAB_DIR, path))
        if pid:
            found[name] = pid
    for index in range(3):
        pid = _read_pid(os.path.join(LAB_DIR, "sentinels", f"sentinel-{index}", "sentinel.pid"))
        if pid:
            found[f"sentinel-{index}"] = pid
    return found


def _machine_busy():
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds used during a phase: by the benchmark itself (and the Ansible it ran), by the lab's services,
    by the Redis tier it started, and by everything else on the machine (other people's work)."""

    def __init__(self, tier_pids=()):
        self.lab = lab_pids()
        self.tier_pids = list(tier_pids)

    def snapshot(self):
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"time": time.monotonic(), "machine": _machine_busy(),
                "bench": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
                "lab": sum(_proc_cpu(pid, with_children=name == "postgres") for name, pid in self.lab.items()),
                "tier": sum(_proc_cpu(pid) for pid in self.tier_pids)}

    @staticmethod
    def delta(before, after):
        wall = max(after["time"] - before["time"], 1e-6)
        used = {key: after[key] - before[key] for key in ("machine", "bench", "lab", "tier")}
        # The tier's processes are our children, but not reaped until the end: not in "bench".
        others = max(used["machine"] - used["bench"] - used["lab"] - used["tier"], 0.0)
        return {"wall": round(wall, 3), "machine_cores": round(used["machine"] / wall, 2),
                "bench_cpu_s": round(used["bench"], 1), "lab_cpu_s": round(used["lab"], 1),
                "redis_tier_cpu_s": round(used["tier"], 1), "other_cpu_s": round(others, 1),
                "other_cores": round(others / wall, 2), "loadavg": os.getloadavg()[0]}


# --------------------------------------------------------------------------- the machine

def _first_line(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def machine_info(env):
    info = {"python": platform.python_version(), "kernel": platform.release(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        with open("/proc/meminfo", encoding="utf-8") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
        with open("/etc/os-release", encoding="utf-8") as handle:
            info["os"] = next(line.split("=", 1)[1].strip().strip('"') for line in handle
                              if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    info["redis"] = (_first_line(["redis-server", "--version"]) or "").split(" v=")[-1].split()[0] or None
    info["ansible_core"] = _ansible_version()
    info["seaweedfs"] = _first_line([os.path.join(os.path.dirname(sys.executable), "weed"), "version"])
    try:
        import psycopg2  # pylint: disable=import-outside-toplevel
        conn = psycopg2.connect(host=env["LAB_PG_HOST"], port=int(env["LAB_PG_PORT"]), user=env["LAB_PG_USER"],
                                password=env["LAB_PG_PASSWORD"], dbname="postgres", connect_timeout=5)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgresql"] = cur.fetchone()[0]
        conn.close()
    except Exception:  # pylint: disable=broad-except
        info["postgresql"] = None
    info["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def _ansible_version():
    try:
        from ansible.release import __version__  # pylint: disable=import-outside-toplevel
        return __version__
    except ImportError:
        return None
