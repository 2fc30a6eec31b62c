"""The product path: the shipped ``playbooks/deploy_fleet.yml`` over a generated fleet, as a user runs it.

The round's private directory gets a fleet file with its N tenants on the lab's members (the lab's PostgreSQL
server and S3 endpoint, one Kubernetes cluster) and sentinel groups of its own: one per ``--tenants-per-group``
tenants, each three hosts on this machine (the first runs the tenants' Redis masters and a sentinel, the other two
a sentinel each), on ports from ``--product-port-base``. The inventory beside it is the lab's (its group_vars: admin
logins from the lab's env file), with the Redis tier's files under the round's directory. ``deploy_fleet.yml``
starts every Redis instance and sentinel itself (the redis_sentinel role); the harness stops them by PID at the end.

Two settings differ from the lab inventory, both so that the product path does the same work as the others: no
per-tenant IAM keys outside the credentials phase (``object_storage_credentials: false``; the credentials phases run
``deploy_fleet.yml`` with keys on, limited to the first ``--credentials-max`` tenants with ``fleet_only``), and the
HarborClusters get the benchmark's harbor class without waiting for readiness (``harbor_wait: false``: readiness is
the operator's work, which no other path waits for either).
"""

import glob
import json
import os
import shutil
import signal
import sys
import time

from .ansible_paths import AnsiblePath, _write_private
from .common import HARBOR_CLASS, HARBOR_VERSION, LAB_DIR, LOOPBACK, ROOT, BenchError, port_open

PLAYBOOK = os.path.join(ROOT, "playbooks", "deploy_fleet.yml")
SENTINELS = 3

# The lab inventory's Redis-tier settings apply as they are; only the tier's files move into the round's directory
# (group_vars/redis_tier/ is read in name order, so this file overrides the lab's copy beside it).
REDIS_TIER_DIRS = """---
redis_sentinel_config_dir: "%(home)s/{{ inventory_hostname }}/etc"
redis_sentinel_data_dir: "%(home)s/{{ inventory_hostname }}/data"
redis_sentinel_run_dir: "%(home)s/{{ inventory_hostname }}/run"
redis_sentinel_log_dir: "%(home)s/{{ inventory_hostname }}/log"
redis_sentinel_credentials_dir: "%(home)s/credentials"
"""


def product_ports(count, per_group, base):
    """Sentinel ports and each group's first Redis port: sentinels from ``base``, Redis 100 above the sentinels."""
    groups = -(-count // per_group)
    sentinels = [[base + SENTINELS * g + i for i in range(SENTINELS)] for g in range(groups)]
    first_redis = base + SENTINELS * groups
    first_redis += -first_redis % 100
    return sentinels, [first_redis + per_group * g for g in range(groups)]


class ProductPath(AnsiblePath):
    name = "product"
    playbooks = {"provision": PLAYBOOK, "credentials": PLAYBOOK}

    def __init__(self, env, options, tier, workdir):
        super().__init__(env, options, tier, workdir)
        self.inventory = os.path.join(workdir, "product-inventory")
        self.redis_home = os.path.join(workdir, "redis")
        self.credential_ids = []

    def prepare(self, tenants, credential_tenants):
        options = self.options
        sentinels, redis_bases = product_ports(len(tenants), options.tenants_per_group, options.product_port_base)
        wanted = [p for group in sentinels for p in group] + [
            b + i for b in redis_bases for i in range(options.tenants_per_group)]
        if max(wanted) >= 32768:
            raise BenchError(f"--product-port-base {options.product_port_base}: the product path's ports would reach "
                             f"{max(wanted)}, into the kernel's ephemeral range")
        taken = [p for p in wanted if port_open(p)]
        if taken:
            raise BenchError(f"ports {taken[:5]} are in use: choose another --product-port-base")
        prefix = tenants[0].tenant.rsplit("-", 1)[0]
        groups = []
        for g, ports in enumerate(sentinels):
            hosts = [{"name": f"{prefix}-g{g}-{chr(97 + i)}", "address": LOOPBACK, "sentinel_port": port}
                     | ({} if i == 0 else {"redis": False}) for i, port in enumerate(ports)]
            groups.append({"name": f"{prefix}-g{g}", "capacity": options.tenants_per_group,
                           "redis_port_base": redis_bases[g], "hosts": hosts})
        env = self.env
        fleet = {
            "name": prefix,
            "defaults": {"plan": "small", "region": "lab", "harbor_version": HARBOR_VERSION,
                         "domain": "bench.example.test"},
            "plans": {"small": {"redis_maxmemory": "32mb", "replicas": {"core": 1, "registry": 1, "portal": 1,
                                                                        "jobservice": 1}}},
            "tiers": {
                "postgres": [{"name": "lab-pg", "host": env["LAB_PG_HOST"], "port": int(env["LAB_PG_PORT"]),
                              "ca_cert": env["LAB_CA_CERT"], "capacity": len(tenants)}],
                "sentinel_groups": groups,
                "s3": [{"name": "lab-s3", "endpoint": env["LAB_S3_ENDPOINT"], "ca_cert": env["LAB_CA_CERT"],
                        "region": env["LAB_S3_REGION"],
                        "bucket_prefix": "harbor-", "wait_timeout": options.s3_wait_timeout}],
            },
            "tenants": [{"id": t.tenant} for t in tenants],
        }
        os.makedirs(os.path.join(self.inventory, "group_vars", "redis_tier"), mode=0o700)
        with open(os.path.join(self.workdir, "fleet.yml"), "w", encoding="utf-8") as handle:
            json.dump(fleet, handle, indent=1)
        with open(os.path.join(self.inventory, "fleet.tenants.yml"), "w", encoding="utf-8") as handle:
            json.dump({"plugin": "harborfleet.fleet.tenants",
                       "fleet_file": os.path.join(self.workdir, "fleet.yml")}, handle)
        lab_inventory = os.path.join(ROOT, "inventories", "lab")
        shutil.copy(os.path.join(lab_inventory, "hosts.yml"), self.inventory)
        shutil.copy(os.path.join(lab_inventory, "group_vars", "all.yml"), os.path.join(self.inventory, "group_vars"))
        shutil.copy(os.path.join(lab_inventory, "group_vars", "redis_tier.yml"),
                    os.path.join(self.inventory, "group_vars", "redis_tier", "00-lab.yml"))
        with open(os.path.join(self.inventory, "group_vars", "redis_tier", "10-bench.yml"), "w",
                  encoding="utf-8") as handle:
            handle.write(REDIS_TIER_DIRS % {"home": self.redis_home})
        _write_private(os.path.join(self.workdir, "product-vars.json"),
                       {"harbor_class": HARBOR_CLASS, "harbor_wait": False})
        self.credential_ids = [t.tenant for t in credential_tenants]

    def ansible_env(self, events):
        env = super().ansible_env(events)
        env["HARBORFLEET_LAB_DIR"] = LAB_DIR
        return env

    def command(self, playbook, label):
        keys = {"object_storage_credentials": False} if label in ("provision", "noop") else \
            {"fleet_only": ",".join(self.credential_ids)}
        return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                "-e", "@" + os.path.join(self.workdir, "product-vars.json"), "-e", json.dumps(keys), playbook]

    def stop(self):
        """Stop every Redis instance and sentinel the playbook started (daemons with pid files)."""
        pids = []
        for pidfile in glob.glob(os.path.join(self.redis_home, "*", "run", "*.pid")):
            try:
                with open(pidfile, encoding="ascii") as handle:
                    pid = int(handle.read().split()[0])
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (OSError, ValueError, IndexError):
                continue
        stopped, deadline = len(pids), time.monotonic() + 20
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.1)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return stopped


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            return next((line.split()[1] for line in handle if line.startswith("State:")), "Z") != "Z"
    except OSError:
        return False
