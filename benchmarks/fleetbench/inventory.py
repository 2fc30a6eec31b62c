# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory sync at fleet size: ``ansible-inventory --list --export`` over a generated fleet of N tenants, as an
Automation Platform inventory source runs it. Placement comes from a record file (``placement: file``) so the
figure is the plugin's and Ansible's own work; wall time and peak memory of the process are measured."""

import os
import resource
import subprocess
import sys
import tempfile
import time

import yaml

from .common import BENCH

REPO = os.path.dirname(BENCH)


def fleet(n, tenants_per_group=150, tenants_per_server=500):
    groups, servers = -(-n // tenants_per_group), -(-n // tenants_per_server)
    return {
        "defaults": {"plan": "small", "region": "eu", "harbor_version": "2.6.4", "domain": "bench.example.test"},
        "plans": {"small": {"replicas": {"core": 1}, "redis_maxmemory": "64mb"},
                  "large": {"replicas": {"core": 2}, "redis_maxmemory": "256mb"}},
        "tiers": {
            "postgres": [{"name": f"pg-{i}", "host": f"10.0.0.{i}", "capacity": tenants_per_server}
                         for i in range(servers)],
            "sentinel_groups": [{"name": f"sg-{i}", "sentinels": [f"10.1.{i % 250}.{j}:26379" for j in (1, 2, 3)],
                                 "capacity": tenants_per_group, "redis_port_base": 7000} for i in range(groups)],
            "s3": [{"name": "s3-eu", "endpoint": "https://s3.eu.example.test", "regions": ["eu"]}],
        },
        "tenants": [{"id": f"t{i:05d}", **({"plan": "large"} if i % 10 == 0 else {})} for i in range(n)],
    }


def measure(n):
    """{tenants, seconds, peak_mib, output_mib} of one ``ansible-inventory --list --export``."""
    with tempfile.TemporaryDirectory(prefix="harborfleet-inventory-") as work:
        with open(os.path.join(work, "fleet.yml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(fleet(n), handle)
        source = os.path.join(work, "fleet.tenants.yml")
        with open(source, "w", encoding="utf-8") as handle:
            handle.write("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\nplacement: file\n")
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", source, "--list",
                   "--export"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.monotonic()
        with open(os.path.join(work, "out.json"), "wb") as out:
            proc = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, cwd=REPO, check=False)
        seconds = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(f"ansible-inventory failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        size = os.path.getsize(os.path.join(work, "out.json"))
    # ru_maxrss of the children is the largest child so far: a smaller N measured first keeps it honest
    return {"tenants": n, "seconds": round(seconds, 2), "peak_mib": round(max(peak, before) / 1024, 1),
            "output_mib": round(size / 1048576, 1)}


def table(rows):
    lines = ["| tenants | `ansible-inventory --list --export` s | peak memory MiB | output MiB |", "|---|---|---|---|"]
    lines += [f"| {r['tenants']} | {r['seconds']} | {r['peak_mib']} | {r['output_mib']} |" for r in rows]
    return "\n".join(lines)
