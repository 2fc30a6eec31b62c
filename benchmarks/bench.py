#!/usr/bin/env python3
"""The fleet benchmark (`make bench`): the collection's fleet path against the naive playbook and the physical floor.

For each N it provisions N fresh tenants (namespace + Secrets, database + login role, Redis master set, bucket,
HarborCluster) three ways, alternating the order from one N to the next:

  naive  one inventory host per tenant (connection local), one task per object with the modules' single form,
         forks 20, the linear strategy (benchmarks/plays/naive.yml);
  fleet  the batch modules from localhost, one call per module and tier (benchmarks/plays/fleet.yml);
  floor  the backends' own round trips from plain Python with client-side concurrency (fleetbench/floor.py);
  product  the shipped playbooks/deploy_fleet.yml over a generated fleet of N tenants (fleetbench/product.py),
         which also starts every tenant's Redis instance and the sentinels of its own sentinel groups.

Phases, timed separately: ``provision`` (always run), ``noop`` (the same again), ``credentials`` (an IAM user,
policy and key for up to --credentials-max tenants, then the same again as ``credentials-noop``: SeaweedFS's IAM
slows down as users accumulate, so this phase is capped and reported on its own). After each path the collection's
own plans check that everything is in place (nothing timed), then everything is removed again (not timed either).

The Redis tier is the benchmark's own: throwaway sentinel groups (one per --tenants-per-group tenants, 3 sentinels
each) and real idle Redis masters (one per tenant, or a shared pool with --redis-instances), stopped by PID at
the end. Results go to benchmarks/results/ (JSON, Markdown table, SVG plot) and the table is printed.

    .venv/bin/python benchmarks/bench.py --n 10,100,1000 --phases provision,noop,credentials --naive-max 100
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
from fleetbench import report  # noqa: E402
from fleetbench.ansible_paths import FleetPath, NaivePath  # noqa: E402
from fleetbench.collection_ops import CollectionOps  # noqa: E402
from fleetbench.common import BENCH, BenchError, CpuMeter, lab_env, machine_info, make_tenants  # noqa: E402
from fleetbench.floor import Floor  # noqa: E402
from fleetbench.product import ProductPath  # noqa: E402
from fleetbench import inventory  # noqa: E402
from fleetbench.redis_tier import RedisTier  # noqa: E402

PATHS = ("naive", "fleet", "floor", "product")
PHASES = ("provision", "noop", "credentials")
LETTER = {"naive": "n", "fleet": "f", "floor": "p", "product": "d"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--n", default="100", help="tenant counts, comma-separated (e.g. 10,100,1000)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="provision (always run), noop, credentials (default: all)")
    parser.add_argument("--paths", default=",".join(PATHS), help="naive, fleet, floor, product (default: all)")
    parser.add_argument("--naive-max", type=int, default=100,
                        help="run naive only up to this N; larger N get a naive figure EXTRAPOLATED (and labelled) "
                             "from the largest measured one, measured at this N if no smaller N is listed "
                             "(0: never run naive)")
    parser.add_argument("--credentials-max", type=int, default=100,
                        help="tenants that get IAM credentials in the credentials phase (default 100)")
    parser.add_argument("--tenants-per-group", type=int, default=100, help="master sets per sentinel group")
    parser.add_argument("--redis-instances", type=int, default=0,
                        help="real Redis masters to start (default: one per tenant of the largest N)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="the batch modules' concurrency in the fleet path (PostgreSQL: --pg-connections)")
    parser.add_argument("--forks", type=int, default=20, help="Ansible forks (naive path)")
    parser.add_argument("--floor-concurrency", type=int, default=16, help="client threads of the floor")
    parser.add_argument("--pg-connections", type=int, default=4,
                        help="PostgreSQL connections of the floor and concurrency of tenant_database (fleet path)")
    parser.add_argument("--pg-strategy", choices=["wal_log", "file_copy"], default=None,
                        help="CREATE DATABASE STRATEGY for every path (default: the server's)")
    parser.add_argument("--s3-wait-timeout", type=int, default=60,
                        help="tenant_bucket's wait_timeout in both Ansible paths (0: no read-back after writes)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per N and path")
    parser.add_argument("--inventory", default="1000,10000",
                        help="fleet sizes of the inventory sync measurement, comma-separated (empty: none)")
    parser.add_argument("--port-base", type=int, default=20000, help="first port of the benchmark's Redis tier")
    parser.add_argument("--product-port-base", type=int, default=12000,
                        help="first port of the product path's sentinel groups and Redis instances")
    parser.add_argument("--results", default=os.path.join(BENCH, "results"), help="where results are written")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the private work directory (inventories and variables hold passwords)")
    args = parser.parse_args(argv)
    args.ns = [int(v) for v in args.n.replace(" ", "").split(",") if v]
    args.phase_list = [p for p in args.phases.replace(" ", "").split(",") if p]
    args.path_list = [p for p in args.paths.replace(" ", "").split(",") if p]
    bad = [p for p in args.phase_list if p not in PHASES] + [p for p in args.path_list if p not in PATHS]
    if bad or not args.ns or min(args.ns) < 1 or not args.path_list:
        parser.error(f"bad N, phase or path: {bad or args.n}")
    if args.naive_max < 0 or args.credentials_max < 0 or args.tenants_per_group < 1 or args.repeat < 1:
        parser.error("negative or zero limits")
    return args


def plan_rounds(args):
    """(N, path) rounds, alternating the order of the paths from one N (and repetition) to the next."""
    rounds, turn = [], 0
    naive_ns = [n for n in args.ns if n <= args.naive_max]
    if "naive" in args.path_list and args.naive_max and not naive_ns and any(n > args.naive_max for n in args.ns):
        rounds.append((args.naive_max, "naive", "reference for the extrapolation"))
    for _ in range(args.repeat):
        for n in args.ns:
            paths = [p for p in args.path_list if p != "naive" or n <= args.naive_max]
            shift = turn % len(paths)
            rounds.extend((n, path, None) for path in paths[shift:] + paths[:shift])
            turn += 1
    return rounds


class Bench:
    def __init__(self, args):
        self.args = args
        self.env = lab_env()
        self.run_id = uuid.uuid4().hex[:4]
        self.workdir = tempfile.mkdtemp(prefix="hf-bench-")
        os.chmod(self.workdir, 0o700)
        self.tier = None
        self.ops = None
        self.rows = []
        self.inventory_rows = []
        self.rounds = []
        self.pending_cleanup = []
        self.errors = []

    def log(self, message):
        print(f"bench: {message}", flush=True)

    # ------------------------------------------------------------------ one round
    def run_round(self, number, n, path, purpose):
        prefix = f"b{self.run_id}{number:02d}{LETTER[path]}"
        tenants = make_tenants(prefix, n, self.tier)
        creds = tenants[:min(n, self.args.credentials_max)] if "credentials" in self.args.phase_list else []
        record = {"n": n, "path": path, "prefix": prefix, "purpose": purpose, "phases": {}}
        self.rounds.append(record)
        self.pending_cleanup.append(tenants)
        workdir = os.path.join(self.workdir, prefix)
        os.makedirs(workdir, mode=0o700)
        runner = self._runner(path, workdir)
        if path != "floor":
            runner.prepare(tenants, creds)
        self.log(f"round {number}: {path} with {n} tenants ({prefix}-*)" + (f", {purpose}" if purpose else ""))
        phases = [("provision", tenants), ("noop", tenants)] if "noop" in self.args.phase_list else \
            [("provision", tenants)]
        if creds:
            phases += [("credentials", creds), ("credentials-noop", creds)]
        failed = False
        for phase, members in phases:
            row = {"n": n, "phase": phase, "path": path, "tenants": len(members)}
            if purpose:
                row["note"] = purpose
            meter = CpuMeter(self.tier.pids)
            before = meter.snapshot()
            try:
                outcome = self._run_phase(runner, path, phase, members)
            except Exception as exc:  # pylint: disable=broad-except
                outcome = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            row["cpu"] = meter.delta(before, meter.snapshot())
            row.update(outcome)
            row["seconds"] = outcome.get("seconds")
            row["per_tenant_ms"] = round(row["seconds"] * 1000 / len(members), 1) if row["seconds"] else None
            record["phases"][phase] = row
            self.rows.append(row)
            self.log(f"  {phase}: " + (f"{row['seconds']:.1f} s ({row['per_tenant_ms']:.0f} ms/tenant)"
                                       if not row.get("error") else "FAILED: " + row["error"])
                     + f"; other load {row['cpu']['other_cores']} cores")
            if row.get("error"):
                self.errors.append(f"{path} N={n} {phase}: {row['error']}")
                failed = True
                break
            if phase in ("provision", "credentials") and path != "product":
                check = self.ops.verify(tenants, [t.tenant for t in creds] if phase == "credentials" else ())
                row["verified"] = check
                pending = {k: v["changed"] + v["failed"] for k, v in check.items() if v["changed"] or v["failed"]}
                if pending:
                    row["error"] = f"incomplete: the collection would still change {pending}"
                    self.errors.append(f"{path} N={n} {phase}: {row['error']} {check}")
                    self.log(f"  verification: {row['error']}")
                    failed = True
                    break
        if not failed and path != "floor" and "noop" in record["phases"]:
            noop = record["phases"]["noop"]
            if noop.get("changed"):
                noop["note"] = f"reported {noop['changed']} changed task results"
                if path == "product":  # the shipped playbook's re-run is its completeness check
                    noop["error"] = f"incomplete: deploy_fleet.yml changed {noop['changed']} task results on its re-run"
                    self.errors.append(f"{path} N={n} noop: {noop['error']}")
        started = time.monotonic()
        try:
            record["cleanup"] = self.ops.cleanup(tenants)
            self.pending_cleanup.remove(tenants)
        finally:
            if path == "product":  # the Redis instances and sentinels deploy_fleet.yml started
                record.setdefault("cleanup", {})["redis_processes_stopped"] = runner.stop()
        self.log(f"  cleanup (not timed): {time.monotonic() - started:.1f} s")

    def _runner(self, path, workdir):
        if path == "naive":
            return NaivePath(self.env, self.args, self.tier, workdir)
        if path == "fleet":
            return FleetPath(self.env, self.args, self.tier, workdir)
        if path == "product":
            return ProductPath(self.env, self.args, self.tier, workdir)
        return Floor(self.env, self.args, self.tier)

    @staticmethod
    def _run_phase(runner, path, phase, members):
        if path == "floor":
            started = time.monotonic()
            tiers = {"provision": runner.provision, "noop": runner.noop, "credentials": runner.credentials,
                     "credentials-noop": runner.credentials_noop}[phase](members)
            return {"seconds": round(time.monotonic() - started, 3), "tiers": tiers}
        result = runner.provision() if phase == "provision" else runner.noop() if phase == "noop" \
            else runner.credentials(phase)
        out = {"seconds": result["seconds"], "changed": result["changed"], "log": result["log"],
               "tiers": _tiers(result["tasks"]), "tasks": result["tasks"]}
        if result["rc"] != 0 or result["failed"]:
            messages = [m for t in result["tasks"] for m in t["messages"]][:3]
            out["error"] = f"ansible-playbook exited {result['rc']}: {'; '.join(messages) or 'see ' + result['log']}"
        return out

    # ------------------------------------------------------------------ the run
    def run(self):
        args = self.args
        started = datetime.datetime.now(datetime.timezone.utc)
        machine = machine_info(self.env)
        rounds = plan_rounds(args)
        largest = max(n for n, _path, _purpose in rounds)
        instances = args.redis_instances or largest
        self.log(f"run {self.run_id}: N={args.ns}, phases={args.phase_list}, paths={args.path_list}; "
                 f"starting the Redis tier ({instances} Redis masters, "
                 f"{-(-largest // args.tenants_per_group)} sentinel groups)")
        self.tier = RedisTier(self.env["LAB_SENTINEL_PASSWORD"], args.port_base)
        try:
            self.tier.start(largest, args.tenants_per_group, instances)
            self.log(f"Redis tier up: {self.tier.memory_mib()} MiB private memory")
            self.ops = CollectionOps(self.env, self.tier)
            for number, (n, path, purpose) in enumerate(rounds):
                self.run_round(number, n, path, purpose)
                self.write(machine, started, partial=True)
            for n in sorted(int(x) for x in args.inventory.split(",") if x.strip()):
                self.log(f"inventory sync of {n} tenants")
                self.inventory_rows.append(inventory.measure(n))
        except KeyboardInterrupt:
            self.errors.append("interrupted")
        finally:
            for tenants in list(self.pending_cleanup):
                try:
                    self.ops.cleanup(tenants)
                except Exception as exc:  # pylint: disable=broad-except
                    self.errors.append(f"cleanup of {tenants[0].tenant}...: {exc}")
            redis_note = self.tier.describe(largest)
            redis_note["memory_mib"] = self.tier.memory_mib()
            self.tier.stop()
            if args.keep_workdir:
                self.log(f"work directory kept: {self.workdir}")
            else:
                self._save_logs()
                shutil.rmtree(self.workdir, ignore_errors=True)
        return self.write(machine, started, redis=redis_note)

    def _save_logs(self):
        """Ansible's logs (no secrets: no_log tasks and masked arguments) next to the results."""
        target = os.path.join(self.args.results, f"logs-{self.run_id}")
        for root, _dirs, files in os.walk(self.workdir):
            for name in files:
                if name.endswith(".log"):
                    os.makedirs(target, exist_ok=True)
                    shutil.copy(os.path.join(root, name), os.path.join(target, f"{os.path.basename(root)}-{name}"))

    def write(self, machine, started, partial=False, redis=None):
        args = self.args
        rows = report.add_ratios(report.add_extrapolations(
            [{k: v for k, v in r.items() if k not in ("tasks", "trace")} for r in self.rows], args.ns,
            args.path_list))
        redis = redis or (self.tier.describe(max(args.ns)) if self.tier else {})
        document = {
            "run": self.run_id, "started": started.isoformat(timespec="seconds"), "partial": partial,
            "machine": machine, "redis_tier": redis,
            "options": {k: v for k, v in vars(args).items() if k not in ("ns", "phase_list", "path_list")},
            "rows": report.sort_rows(rows), "rounds": self.rounds, "targets": report.targets(rows),
            "inventory": self.inventory_rows,
            "errors": self.errors,
        }
        described = (f"{machine.get('cores')} cores ({machine.get('cpu')}), {machine.get('memory_gib')} GiB, "
                     f"{machine.get('os')}; ansible-core {machine.get('ansible_core')}, PostgreSQL "
                     f"{machine.get('postgresql')}, Redis {machine.get('redis')}")
        markdown = "\n".join([
            f"# Fleet benchmark {self.run_id} ({started:%Y-%m-%d %H:%M} UTC)", "", f"Machine: {described}.", "",
            f"Redis tier: {redis.get('note', '')}.", "",
            f"S3: tenant_bucket wait_timeout {args.s3_wait_timeout}"
            + (" (no read-back after writes)." if not args.s3_wait_timeout else " (every write read back)."), "",
            report.table(rows), "", "Seconds per tier:", "",
            report.tier_table(rows), "", "Inventory sync (a generated fleet, placement from a record file):", "",
            inventory.table(self.inventory_rows), "", "Targets:", ""]
            + (document["targets"] or ["- (not measured at N=1000)"])
            + ([""] + [f"ERROR: {e}" for e in self.errors] if self.errors else [])) + "\n"
        svg = report.svg_plot(rows, "harborfleet.fleet benchmark: wall time against tenants",
                              f"{described}\n{redis.get('note', '')}")
        paths = report.write_outputs(args.results, f"{started:%Y%m%d-%H%M%S}-{self.run_id}", document, markdown, svg)
        if not partial:
            print("\n" + markdown)
            print(f"bench: results in {paths['json']}, {paths['md']}, {paths['svg']} (and latest.*)")
        return 1 if self.errors else 0


# deploy_fleet.yml's tasks (role tasks carry their role's name), most specific first; anything else is "other"
PRODUCT_TIERS = (
    ("harborfleet.fleet.harbor : ensure every tenant's secrets", "secrets"),
    ("harborfleet.fleet.postgres : converge tenant databases", "database"),
    ("harborfleet.fleet.object_storage : converge tenant buckets", "bucket"),
    ("harborfleet.fleet.redis_sentinel : converge this host's tenant instances", "redis instances"),
    ("harborfleet.fleet.redis_sentinel : register", "sentinel"),
    ("harborfleet.fleet.redis_sentinel :", "redis role, rest"),
    ("gathering facts", "redis role, rest"),
    ("harborfleet.fleet.harbor : converge the tenants' harborclusters", "cluster"),
    ("record the placement", "placement"),
    ("what the tenants run now", "cluster reads"),
)


def _tiers(tasks):
    """Seconds per tier, from the names of the playbooks' tasks."""
    names = (("namespace", "secrets"), ("database", "database"), ("master", "sentinel"), ("bucket", "bucket"),
             ("harbor", "cluster"))
    product = any(t["name"].startswith("harborfleet.fleet.") for t in tasks)
    out = {}
    for task in tasks:
        lowered = task["name"].lower()
        if product:
            key = next((tier for prefix, tier in PRODUCT_TIERS if lowered.startswith(prefix)), "other")
        else:
            key = "credentials" if "least-privilege" in lowered else \
                next((tier for prefix, tier in names if lowered.startswith(prefix)), task["name"][:20])
        out[key] = round(out.get(key, 0) + task["seconds"], 3)
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        return Bench(args).run()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
