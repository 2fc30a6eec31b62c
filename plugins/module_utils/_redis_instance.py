# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenants' Redis instances on the host the module runs on: files, directories, the daemon, its health.

Each instance has two configuration files. The *base* file holds the collection's settings (and the password) and
is rewritten whenever they change; the *live* file, seeded once, includes it and belongs to Redis, which records
``replicaof`` there itself after a failover (CONFIG REWRITE). When a base file changes, the copies of its directives
Redis wrote into the live file are dropped and the instance restarts, so the base file's values win again;
replication is never touched.

The host's Sentinel (option ``sentinel``) is converged the same way: a base file with the collection's settings,
a live file Sentinel owns (it records the master sets it monitors there), start, restart on changed settings,
health (AUTH + PING with the sentinel password). Its entry in the results is keyed ``sentinel/<group>``, which no
tenant id can be.

Daemons run as daemonized processes with pid files (``process``) or as instances of the systemd template units
``harborfleet-redis@.service`` and ``harborfleet-sentinel@.service`` (``systemd``, installed by the redis_sentinel
role). Only the standard library is used: this runs on the Redis hosts.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import tempfile

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, TenantInputError, poll
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    is_url_safe_password, validate_tenant_id)

# Directives the base file sets: their copies in the live file are dropped before a restart.
BASE_DIRECTIVES = ("port", "bind", "daemonize", "supervised", "pidfile", "logfile", "dir", "dbfilename",
                   "requirepass", "masterauth", "user", "maxmemory", "maxmemory-policy", "save", "appendonly", "hz",
                   "dynamic-hz", "repl-diskless-sync", "repl-diskless-sync-delay")
MAXMEMORY_RE = re.compile(r"[0-9]+(?:[kmg]b?)?\Z", re.IGNORECASE)
POLICIES = ("volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu", "volatile-random", "allkeys-random",
            "volatile-ttl", "noeviction")
DIRECTIVE_RE = re.compile(r"[a-z][a-z0-9-]*\Z")
# The sentinel's base file sets these; its monitor state (sentinel monitor, known-*, epochs) is never touched.
SENTINEL_DIRECTIVES = ("port", "bind", "daemonize", "supervised", "pidfile", "logfile", "dir", "requirepass", "user",
                       "sentinel resolve-hostnames", "sentinel announce-hostnames")
GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
REPLICAOF_RE = re.compile(r"[A-Za-z0-9.:_-]+ [0-9]{1,5}\Z")

TENANT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    port=dict(type="int"),
    password=dict(type="str", no_log=True),
    replicaof=dict(type="str"),
    maxmemory=dict(type="str", default="256mb"),
    maxmemory_policy=dict(type="str", default="volatile-lru"),
)

SENTINEL_SPEC = dict(
    group=dict(type="str", required=True),
    port=dict(type="int", required=True),
    password=dict(type="str", required=True, no_log=True),
    binary=dict(type="path", default="/usr/bin/redis-sentinel"),
    resolve_hostnames=dict(type="bool", default=False),
)

ARGUMENT_SPEC = dict(
    service_manager=dict(type="str", choices=["process", "systemd"], default="process"),
    bind=dict(type="str", default="127.0.0.1"),
    address=dict(type="str"),
    config_dir=dict(type="path", required=True),
    data_dir=dict(type="path", required=True),
    run_dir=dict(type="path", required=True),
    log_dir=dict(type="path", required=True),
    owner=dict(type="str"),
    owner_group=dict(type="str"),
    server_binary=dict(type="path", default="/usr/bin/redis-server"),
    save=dict(type="str", default="3600 1 300 100 60 10000"),
    appendonly=dict(type="bool", default=False),
    hz=dict(type="int", default=10),
    dynamic_hz=dict(type="bool", default=True),
    repl_diskless_sync_delay=dict(type="int", default=5),
    extra_config=dict(type="dict", default={}),
    wait_timeout=dict(type="int", default=30),
    restart=dict(type="bool", default=False),
    sentinel=dict(type="dict", options=SENTINEL_SPEC),
)


def _strip_pattern(directives):
    """Lines of the live file that copy one of ``directives`` (dropped before a restart: the base file wins)."""
    return re.compile(r"^(?:" + "|".join(re.escape(d) for d in directives) + r")[ \t].*\n?", re.MULTILINE)


def _daemon_paths(spec, params, name):
    spec.name = name
    spec.base = os.path.join(params["config_dir"], f"{name}.base.conf")
    spec.live = os.path.join(params["config_dir"], f"{name}.conf")
    spec.dir = os.path.join(params["data_dir"], name)
    spec.pidfile = os.path.join(params["run_dir"], f"{name}.pid")
    spec.logfile = os.path.join(params["log_dir"], f"{name}.log")
    spec.address = params["address"] or params["bind"]


class InstanceSpec:
    """One tenant's instance on this host, validated, with every path and the base file's text."""

    def __init__(self, item, params):
        validate_tenant_id(item["tenant"], "tenants.tenant")
        self.key = item["tenant"]
        self.state = item["state"]
        _daemon_paths(self, params, f"redis-{self.key}")
        self.unit = f"harborfleet-redis@{self.key}.service"
        self.binary = params["server_binary"]
        self.strip = None  # the backend's pattern (it knows extra_config)
        self.port = item["port"]
        if self.state == "absent":
            return
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise TenantInputError("port", f"tenant {self.key!r}: a present instance needs a port (1-65535)")
        password = item["password"]
        if not password or not is_url_safe_password(password):
            raise TenantInputError("password", f"tenant {self.key!r}: letters and digits only, and required (the "
                                               "Harbor Operator breaks on URL-special characters)")
        replicaof = item["replicaof"] or ""
        if replicaof and not REPLICAOF_RE.match(replicaof):
            raise TenantInputError("replicaof", f"tenant {self.key!r}: 'host port' of the master, or empty")
        if not MAXMEMORY_RE.match(str(item["maxmemory"])):
            raise TenantInputError("maxmemory", f"tenant {self.key!r}: a size such as 256mb")
        if item["maxmemory_policy"] not in POLICIES:
            raise TenantInputError("maxmemory_policy", f"tenant {self.key!r}: one of {', '.join(POLICIES)}")
        self.replicaof = replicaof
        self.password = password  # for the health check; never returned
        self.base_text = base_config(self, params, password, item)
        self.live_text = (f"# Seeded once by harborfleet.fleet for tenant {self.key}; Redis owns this file from now on "
                          "(Sentinel makes it\n# CONFIG REWRITE after a failover). The collection's settings are in "
                          f"the included base file.\ninclude {self.base}\n"
                          + (f"replicaof {replicaof}\n" if replicaof else ""))


class SentinelSpec:
    """This host's Sentinel for its group, validated, with every path and the base file's text."""

    state = "present"
    replicaof = ""

    def __init__(self, sentinel, params):
        group = sentinel["group"]
        if not isinstance(group, str) or not GROUP_RE.match(group):
            raise TenantInputError("sentinel.group", "letters, digits, '.', '_', '-' (at most 63)")
        if not 0 < sentinel["port"] < 65536:
            raise TenantInputError("sentinel.port", "1-65535")
        if not sentinel["password"] or not is_url_safe_password(sentinel["password"]):
            raise TenantInputError("sentinel.password", "letters and digits only, and required")
        self.key = f"sentinel/{group}"
        _daemon_paths(self, params, f"sentinel-{group}")
        self.unit = f"harborfleet-sentinel@{group}.service"
        self.binary = sentinel["binary"]
        self.strip = _strip_pattern(SENTINEL_DIRECTIVES)
        self.port = sentinel["port"]
        self.password = sentinel["password"]
        daemonize = params["service_manager"] == "process"
        self.base_text = "\n".join([
            f"# Sentinel of group {group}, managed by harborfleet.fleet (tenant_redis).",
            f"# Included by {self.live}, which Sentinel owns (it records the master sets it monitors there).",
            f"port {self.port}", f"bind {params['bind']}", f"daemonize {'yes' if daemonize else 'no'}",
            f"pidfile {self.pidfile}", f"logfile {self.logfile}", f"dir {self.dir}",
            f"requirepass {self.password}",
            f"sentinel resolve-hostnames {'yes' if sentinel['resolve_hostnames'] else 'no'}",
            "sentinel announce-hostnames no"]) + "\n"
        self.live_text = (f"# Seeded once by harborfleet.fleet for sentinel group {group}; Sentinel owns this file "
                          "from now on. The collection's settings are in\n# the included base file; master sets are "
                          f"registered with harborfleet.fleet.sentinel_master.\ninclude {self.base}\n")


def base_config(spec, params, password, item):
    """The base file: the collection's settings for one instance (holds its password)."""
    daemonize = params["service_manager"] == "process"
    lines = [
        f"# Tenant {spec.key}: settings of its Redis instance, managed by harborfleet.fleet (tenant_redis).",
        f"# Included by {spec.live}, which Redis owns (CONFIG REWRITE after a failover writes replicaof there).",
        f"port {spec.port}", f"bind {params['bind']}", f"daemonize {'yes' if daemonize else 'no'}",
        f"pidfile {spec.pidfile}", f"logfile {spec.logfile}", f"dir {spec.dir}", "dbfilename dump.rdb",
        f"requirepass {password}", f"masterauth {password}",
        f"maxmemory {item['maxmemory']}", f"maxmemory-policy {item['maxmemory_policy']}",
        f"save {params['save'] if params['save'] else chr(34) * 2}",
        f"appendonly {'yes' if params['appendonly'] else 'no'}", f"hz {int(params['hz'])}",
        f"dynamic-hz {'yes' if params['dynamic_hz'] else 'no'}", "repl-diskless-sync yes",
        f"repl-diskless-sync-delay {int(params['repl_diskless_sync_delay'])}",
    ]
    lines += [f"{name} {value}" for name, value in sorted((params["extra_config"] or {}).items())]
    return "\n".join(lines) + "\n"


def check_settings(params):
    for name in params["extra_config"] or {}:
        if not DIRECTIVE_RE.match(str(name)) or name in BASE_DIRECTIVES + ("include", "replicaof", "slaveof"):
            raise TenantInputError(f"extra_config.{name}", "a Redis directive the collection does not set itself")
        if "\n" in str(params["extra_config"][name]):
            raise TenantInputError(f"extra_config.{name}", "one line")
    if params["wait_timeout"] < 1:
        raise TenantInputError("wait_timeout", "must be at least 1 second")


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _process_running(pidfile):
    """The pid behind ``pidfile`` when it is a live, non-zombie redis process."""
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            state = next((line.split()[1] for line in handle if line.startswith("State:")), "Z")
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except (OSError, ValueError, IndexError):
        return None
    return pid if state != "Z" and b"redis" in cmdline else None


def health(address, port, password):
    """"ok" when a Redis on ``address:port`` accepts ``password`` and answers PING, else what is wrong."""
    try:
        with socket.create_connection((address, port), timeout=2) as sock:
            sock.sendall(b"AUTH " + password.encode() + b"\r\nPING\r\n")
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        return "the port is open but nothing answers like Redis (another process holds it?)"
    except OSError as exc:
        return f"not listening ({exc.strerror or type(exc).__name__})"
    if reply.startswith(b"+OK\r\n+PONG"):
        return "ok"
    if b"WRONGPASS" in reply or b"NOAUTH" in reply:
        return "a Redis with another password answers (another instance holds the port)"
    return f"unexpected reply {reply[:40]!r}"


class InstanceBackend:
    """Plans and applies instances on this host; ``run`` executes commands (the module's run_command)."""

    record_key = "calls"

    def __init__(self, params, run):
        self.params = params
        self.run = run
        self.systemd = params["service_manager"] == "systemd"
        self.uid = pwd.getpwnam(params["owner"]).pw_uid if params["owner"] else -1
        self.gid = grp.getgrnam(params["owner_group"]).gr_gid if params["owner_group"] else -1
        self.strip = _strip_pattern(BASE_DIRECTIVES + tuple((params["extra_config"] or {}).keys()))

    # ------------------------------------------------------------------ read
    def read(self, specs):
        active = {}
        if self.systemd and specs:
            _rc, out, _err = self.run(["systemctl", "is-active"] + [s.unit for s in specs])  # rc: 3 when any is not
            active = dict(zip([s.unit for s in specs], out.split()))
        actual = {}
        for spec in specs:
            base = _read(spec.base)
            running = (active.get(spec.unit) == "active") if self.systemd else bool(_process_running(spec.pidfile))
            actual[spec.key] = {"base": base, "live": os.path.exists(spec.live), "dir": os.path.isdir(spec.dir),
                                "running": running,
                                "port_taken": spec.state == "present" and not running and _listening(spec),
                                "files": [p for p in (spec.base, spec.live, spec.logfile, spec.pidfile)
                                          if os.path.exists(p)] + ([spec.dir] if os.path.isdir(spec.dir) else [])}
        return actual

    # ------------------------------------------------------------------ plan
    def plan(self, spec, actual):
        before = {"state": "present" if actual["base"] is not None else "absent", "running": actual["running"]}
        if spec.state == "absent":
            plan = Plan(spec.key, before=before, after={"state": "absent", "running": False})
            if actual["running"]:
                plan.add(f"stop {spec.name}", lambda _r: self._stop(spec, remove=True))
            if actual["files"]:
                plan.add(f"delete the files of {spec.name}", lambda _r: self._delete(spec))
            return plan
        if actual.get("port_taken"):
            raise FleetError(f"port {spec.port} on {spec.address} is held by another process while {spec.name} does "
                             f"not run: nothing was changed for tenant {spec.key} (ss -ltnp 'sport = :{spec.port}' "
                             "shows the holder; free the port or place the tenant elsewhere)")
        after = {"state": "present", "running": True, "port": spec.port, "replicaof": spec.replicaof or None}
        before.update(port=spec.port if actual["base"] is not None else None)
        plan = Plan(spec.key, before=before, after=after)
        if not actual["dir"]:
            plan.add(f"create {spec.dir}", lambda _r: self._mkdir(spec.dir))
        base_changed = actual["base"] != spec.base_text
        plan.result["settings_changed"] = base_changed
        if base_changed:
            # the diff says that the settings changed, never what they are (the file holds the password)
            plan.before["settings"] = "unset" if actual["base"] is None else "as written"
            plan.after["settings"] = "rewritten"
            plan.add(f"write {spec.base}", lambda _r: self._write(spec.base, spec.base_text, 0o640),
                     f"write {spec.base} (0640)")
        if not actual["live"]:
            plan.add(f"seed {spec.live}", lambda _r: self._write(spec.live, spec.live_text, 0o640),
                     f"write {spec.live} (0640)")
        if actual["running"] and (base_changed or self.params["restart"]):
            plan.add(f"restart {spec.name}", lambda _r: self._restart(spec))
        elif not actual["running"]:
            plan.add(f"start {spec.name}", lambda _r: self._start(spec))
        return plan

    # ------------------------------------------------------------------ apply
    def _mkdir(self, path):
        os.makedirs(path, mode=0o750, exist_ok=True)
        os.chmod(path, 0o750)
        os.chown(path, self.uid, self.gid)

    def _write(self, path, text, mode):
        """Atomically, with ``mode`` from the first byte (the file may hold a password)."""
        directory = os.path.dirname(path)
        handle, partial = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            os.fchmod(handle, mode)
            os.fchown(handle, self.uid, self.gid)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(partial, path)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise

    def _command(self, argv, what, **kwargs):
        rc, out, err = self.run(argv, **kwargs)
        if rc != 0:
            raise FleetError(f"{what}: {' '.join(argv)} exited {rc}: {(err or out).strip()[-300:]}")

    def _start(self, spec):
        if self.systemd:
            self._command(["systemctl", "enable", "--now", spec.unit], f"start {spec.name}")
        else:
            # Redis rewrites its file (CONFIG REWRITE, e.g. on a failover) with mode 0644 less its umask.
            self._command([spec.binary, spec.live], f"start {spec.name}", umask=0o077)
        self._wait_listening(spec)

    def _stop(self, spec, remove=False):
        if self.systemd:
            argv = ["systemctl", "disable", "--now", spec.unit] if remove else ["systemctl", "stop", spec.unit]
            self._command(argv, f"stop {spec.name}")
            return
        pid = _process_running(spec.pidfile)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        stopped, _pid = poll(lambda: _process_running(spec.pidfile), lambda found: found is None,
                             self.params["wait_timeout"], interval=0.1, max_interval=0.5)
        if not stopped:
            os.kill(pid, signal.SIGKILL)

    def _restart(self, spec):
        self._stop(spec)
        live = _read(spec.live) or spec.live_text
        self._write(spec.live, (spec.strip or self.strip).sub("", live), 0o640)
        self._start(spec)

    def _wait_listening(self, spec):
        """The instance answers AUTH and PING with its own password (a port another process holds fails)."""
        ready, reply = poll(lambda: health(spec.address, spec.port, spec.password), lambda r: r == "ok",
                            self.params["wait_timeout"], interval=0.1, max_interval=0.5)
        if not ready:
            raise FleetError(f"{spec.name} is not healthy on {spec.address}:{spec.port} after "
                             f"{self.params['wait_timeout']} s: {reply} (see {spec.logfile})")

    def _delete(self, spec):
        for path in (spec.base, spec.live, spec.logfile, spec.pidfile):
            if os.path.exists(path):
                os.unlink(path)
        shutil.rmtree(spec.dir, ignore_errors=True)


def _listening(spec):
    """Does something accept connections on the instance's address and port?"""
    try:
        with socket.create_connection((spec.address, spec.port), timeout=0.5):
            return True
    except OSError:
        return False


def prepare(params, items):
    """Validated specs for every item, or the first bad input (before anything changes)."""
    check_settings(params)
    specs, ports = [], {}
    daemons = [InstanceSpec(item, params) for item in items]
    if params.get("sentinel"):
        daemons.insert(0, SentinelSpec(params["sentinel"], params))
    for spec in daemons:
        if spec.state == "present":
            other = ports.setdefault(spec.port, spec.key)
            if other != spec.key:
                raise TenantInputError("port", f"tenants {other!r} and {spec.key!r} both want port {spec.port}")
        specs.append(spec)
    for path in (params["config_dir"], params["data_dir"], params["run_dir"], params["log_dir"]):
        if not os.path.isabs(path):
            raise TenantInputError("config_dir", f"{path}: directories must be absolute paths")
    check_ephemeral(ports, *ephemeral_ports())
    return specs


def ephemeral_ports(proc="/proc/sys/net/ipv4"):
    """This host's ephemeral range (low, high) and its reserved ports, or (None, set()) where there is none."""
    text = _read(os.path.join(proc, "ip_local_port_range"))
    if not text:
        return None, set()
    low, high = (int(v) for v in text.split()[:2])
    reserved = set()
    for part in (_read(os.path.join(proc, "ip_local_reserved_ports")) or "").strip().split(","):
        if part.strip():
            first, _sep, last = part.strip().partition("-")
            reserved.update(range(int(first), int(last or first) + 1))
    return (low, high), reserved


def check_ephemeral(ports, span, reserved):
    """Ports inside the host's ephemeral range that are not reserved: an outgoing connection can hold them."""
    if span is None:
        return
    exposed = sorted(p for p in ports if span[0] <= p <= span[1] and p not in reserved)
    if exposed:
        names = ", ".join(f"{ports[p]} ({p})" for p in exposed[:5]) + (" ..." if len(exposed) > 5 else "")
        raise TenantInputError("port", f"{names}: inside this host's ephemeral port range {span[0]}-{span[1]} "
                                       "(net.ipv4.ip_local_port_range), where any outgoing connection can take the "
                                       "port; move the sentinel group's redis_port_base below it or reserve the "
                                       "ports (net.ipv4.ip_local_reserved_ports)")


def ensure_directories(params, backend, check_mode):
    """The shared directories (0750), before any instance; returns the ones created."""
    made = []
    for path in (params["config_dir"], params["data_dir"], params["run_dir"], params["log_dir"]):
        if not os.path.isdir(path):
            made.append(path)
            if not check_mode:
                backend._mkdir(path)  # pylint: disable=protected-access
    return made
