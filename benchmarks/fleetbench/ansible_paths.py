"""The two Ansible paths: naive (a host per tenant, a task per object) and fleet (batch modules from one host).

Both run the collection's modules through ``ansible-playbook`` exactly as a user would; the harness writes an
inventory and a variables file (mode 0600, in the round's private directory) and times the whole process. The
``bench_timer`` callback adds per-task times and ok/changed/failed counts.
"""

import json
import os
import subprocess
import sys
import time

from .common import ANSIBLE_DIR, COLLECTIONS, HARBOR_CLASS, HARBOR_VERSION, ROOT


def _write_private(path, data):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def lab_vars(env, options):
    """Variables both playbooks use (they hold the lab's credentials: written to a 0600 file only)."""
    return {
        "bench_lab": {"kubeconfig": env["LAB_KUBECONFIG"], "pg_host": env["LAB_PG_HOST"],
                      "pg_port": int(env["LAB_PG_PORT"]), "pg_user": env["LAB_PG_USER"],
                      "pg_password": env["LAB_PG_PASSWORD"], "ca_cert": env["LAB_CA_CERT"],
                      "sentinel_password": env["LAB_SENTINEL_PASSWORD"],
                      "s3_endpoint": env["LAB_S3_ENDPOINT"], "s3_region": env["LAB_S3_REGION"],
                      "s3_access_key": env["LAB_S3_ACCESS_KEY"], "s3_secret_key": env["LAB_S3_SECRET_KEY"]},
        "bench_concurrency": options.concurrency,
        "bench_pg_concurrency": options.pg_connections,
        "bench_pg_strategy": options.pg_strategy or "",
        "bench_s3_wait_timeout": options.s3_wait_timeout,
        "bench_harbor_class": HARBOR_CLASS,
        "bench_harbor_version": HARBOR_VERSION,
    }


class AnsiblePath:
    """Runs one path's playbooks for one round; ``workdir`` is the round's private directory."""

    name = ""
    playbooks = {}

    def __init__(self, env, options, tier, workdir):
        self.env = env
        self.options = options
        self.tier = tier
        self.workdir = workdir
        self.log = os.path.join(workdir, f"{self.name}.log")

    def ansible_env(self, events):
        bin_dir = os.path.dirname(sys.executable)
        env = dict(os.environ)
        env.update(
            PATH=bin_dir + os.pathsep + env.get("PATH", ""),
            ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_FORKS=str(self.options.forks),
            ANSIBLE_FILTER_PLUGINS=os.path.join(ANSIBLE_DIR, "filter_plugins"),
            ANSIBLE_CALLBACK_PLUGINS=os.path.join(ANSIBLE_DIR, "callback_plugins"),
            ANSIBLE_CALLBACKS_ENABLED="bench_timer", HARBORFLEET_BENCH_EVENTS=events,
            ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="false",
            ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "ansible-tmp"),
            ANSIBLE_HOME=os.path.join(self.workdir, "ansible-home"))
        return env

    def run(self, playbook, label):
        """Run a playbook; returns wall seconds, the return code and the callback's per-task record."""
        events = os.path.join(self.workdir, f"{self.name}-{label}-events.json")
        command = self.command(playbook, label)
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"\n===== {label}: {' '.join(command)}\n")
            log.flush()
            started = time.monotonic()
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=self.ansible_env(events),
                                  cwd=ROOT, check=False)
            seconds = time.monotonic() - started
        record = {}
        if os.path.exists(events):
            with open(events, encoding="utf-8") as handle:
                record = json.load(handle)
        tasks = [{"name": t["name"], "seconds": round(_task_seconds(record, i), 3), "ok": t["ok"],
                  "changed": t["changed"], "failed": t["failed"] + t["unreachable"],
                  "tenants_changed": _tenants_changed(t), "messages": t["messages"]}
                 for i, t in enumerate(record.get("tasks", []))]
        return {"seconds": round(seconds, 3), "rc": proc.returncode, "tasks": tasks,
                "changed": (record.get("totals") or {}).get("changed"),
                "failed": sum(t["failed"] for t in tasks) if record else None,
                "log": self.log}

    def command(self, playbook, _label):
        return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                "-i", os.path.join(self.workdir, f"{self.name}-inventory.json"),
                "-e", "@" + os.path.join(self.workdir, "lab-vars.json"),
                "-e", "@" + os.path.join(self.workdir, f"{self.name}-vars.json"),
                os.path.join(ANSIBLE_DIR, playbook)]

    def prepare(self, tenants, credential_tenants):
        raise NotImplementedError

    def provision(self):
        return self.run(self.playbooks["provision"], "provision")

    def noop(self):
        return self.run(self.playbooks["provision"], "noop")

    def credentials(self, label):
        return self.run(self.playbooks["credentials"], label)


def _task_seconds(record, index):
    """A task lasts from its start to the next task's start (or the end of the play)."""
    tasks = record["tasks"]
    end = tasks[index + 1]["start"] if index + 1 < len(tasks) else record.get("seconds", tasks[index]["end"])
    return end - tasks[index]["start"]


def _tenants_changed(task):
    """For batch modules: tenants changed, from the list form's summary (hidden by no_log, then None)."""
    if not task["summaries"]:
        return None
    return sum(s.get("changed", 0) for s in task["summaries"])


class NaivePath(AnsiblePath):
    name = "naive"
    playbooks = {"provision": "naive.yml", "credentials": "naive_credentials.yml"}

    def prepare(self, tenants, credential_tenants):
        groups = sorted({t.group for t in tenants})
        hosts = {t.tenant: {"bench_group": t.group, "bench_master_port": t.master_port,
                            "bench_cache_password": t.cache_password, "bench_cache_host": t.cache_host,
                            "bench_cache_port": t.cache_port} for t in tenants}
        inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                             "children": {"bench_tenants": {"hosts": hosts},
                                          "bench_credentials": {"hosts": {t.tenant: {} for t in credential_tenants}}}}}
        _write_private(os.path.join(self.workdir, "naive-inventory.json"), inventory)
        _write_private(os.path.join(self.workdir, "naive-vars.json"),
                       {"bench_sentinel_groups": {g: self.tier.groups[g] for g in groups}})
        _write_private(os.path.join(self.workdir, "lab-vars.json"), lab_vars(self.env, self.options))


class FleetPath(AnsiblePath):
    name = "fleet"
    playbooks = {"provision": "fleet.yml", "credentials": "fleet_credentials.yml"}

    def prepare(self, tenants, credential_tenants):
        groups = sorted({t.group for t in tenants})
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = {"all": {"hosts": {"localhost": local}, "children": {"bench_sentinel_groups": {
            "hosts": {g: dict(local, bench_sentinels=self.tier.groups[g]) for g in groups}}}}}
        _write_private(os.path.join(self.workdir, "fleet-inventory.json"), inventory)
        _write_private(os.path.join(self.workdir, "fleet-vars.json"), {
            "bench_tenants": [t.as_dict() for t in tenants],
            "bench_credentials": [{"tenant": t.tenant} for t in credential_tenants]})
        _write_private(os.path.join(self.workdir, "lab-vars.json"), lab_vars(self.env, self.options))
