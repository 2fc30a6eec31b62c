"""Faults in the middle of a batch of 30 tenants, on the lab's real stores: PostgreSQL killed (SIGKILL, every
process), the Kubernetes API server restarted, SeaweedFS restarted. For each: the run fails with a clear message or
completes, the re-run converges every tenant, nothing is duplicated, the next re-run changes nothing, and what a
tenant had before the fault (a row, a password, an object) is intact. (Failover of a tenant's Redis master and a
sentinel going away are in test_sentinel_master.py.)"""
import os
import signal
import threading
import time

import pytest

from conftest import lab_module, pg_connect, run_playbook, wait_for, write_fleet

pytestmark = pytest.mark.reliability
BATCH = 30


class Background:
    """A module (or playbook) run in a thread, so a fault can hit it half-way."""

    def __init__(self, run, *args):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(run, *args), daemon=True)
        self.thread.start()

    def _run(self, run, *args):
        self.result = run(*args)

    def join(self):
        self.thread.join(900)
        assert self.result is not None, "the module did not return"
        return self.result


def clear(result):
    """A failed run says what failed in words: no Python traceback, no empty message."""
    text = repr(result)
    assert "Traceback" not in text and (not result.get("failed") or result.get("msg")), text[-2000:]
    if not result.get("failed"):
        return "run completed"
    failed = result.get("failed_tenants")
    return (f"run failed for {len(failed)} of {BATCH} tenants, naming them" if failed
            else "run failed with a message naming the store")


def kill_tree(pid):
    """SIGKILL a process and its children (a crash, not a shutdown)."""
    targets = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat", encoding="ascii", errors="replace").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                targets.append(int(entry))
    for target in targets:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- PostgreSQL

def test_postgres_killed_during_a_batch_of_databases(lab_env, pg_login, run_module, unique, reliability):
    ids = [f"pf{i}-{unique}" for i in range(BATCH)]
    items = [{"tenant": t, "password": f"FaultPassw0rd{i}x{unique}"} for i, t in enumerate(ids)]
    try:
        first = run_module("tenant_database", dict(pg_login, tenants=items[:1]))
        assert first["changed"] and not first.get("failed"), first
        with pg_connect(lab_env, user=f"harbor_pf0_{unique}", password=items[0]["password"],
                        dbname=f"pf0_{unique}_core") as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the fault')")

        def databases():
            with pg_connect(lab_env) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [f"%\\_{unique}\\_core"])
                return cur.fetchone()[0]

        run = Background(run_module, "tenant_database", dict(pg_login, tenants=items, concurrency=2))
        wait_for(lambda: databases() >= 6 or run.result is not None, 120, interval=0.05)
        postgres = lab_module.Postgres()
        kill_tree(postgres.pids()[0])
        outcome = clear(run.join())
        postgres.up()
        again = run_module("tenant_database", dict(pg_login, tenants=items))
        assert not again.get("failed"), again
        assert databases() == BATCH
        with pg_connect(lab_env) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", [f"harbor\\_pf%\\_{unique}"])
            assert cur.fetchone()[0] == BATCH
        assert run_module("tenant_database", dict(pg_login, tenants=items))["changed"] is False
        with pg_connect(lab_env, user=f"harbor_pf0_{unique}", password=items[0]["password"],
                        dbname=f"pf0_{unique}_core") as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM kept")
            assert cur.fetchall() == [("before the fault",)]
        reliability("faults", f"PostgreSQL SIGKILL during {BATCH} databases", 1,
                    f"{outcome}; re-run converged, no duplicate, then changed=0, data intact")
    finally:
        lab_module.Postgres().up()
        run_module("tenant_database", dict(pg_login, state="absent", allow_drop=True,
                                           tenants=[{"tenant": t} for t in ids]))


def recap_changed(output):
    """changed= of every host in the run's recap."""
    recap = output[output.rindex("PLAY RECAP"):]
    return {line.split()[0]: int(line.split("changed=")[1].split()[0]) for line in recap.splitlines()
            if "changed=" in line}


def test_postgres_killed_during_a_deploy_fleet_run_of_30_tenants(tmp_path, lab_env, unique, reliability):
    """The whole playbook, not one module: deploy_fleet.yml over 30 new tenants, PostgreSQL SIGKILLed once the first
    databases exist. The run fails naming the server; the re-run converges every tenant (one database and login
    each, a HarborCluster each); the next run changes nothing."""
    fleet = str(tmp_path)
    ids = [f"pd{i}-{unique}" for i in range(BATCH)]
    write_fleet(fleet, ids, redis_port_base=31400, bucket_prefix="pd-harbor-", domain="pd.lab.test", capacity=60)

    def databases():
        try:
            with pg_connect(lab_env) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [f"pd%\\_{unique}\\_core"])
                return cur.fetchone()[0]
        except Exception:  # pylint: disable=broad-except
            return 0

    try:
        run = Background(run_playbook, fleet, "deploy_fleet.yml")
        assert wait_for(lambda: databases() >= 1 or run.result is not None, 600, interval=0.05)
        assert run.result is None, run.result[1][-3000:]  # the fault lands during the run
        postgres = lab_module.Postgres()
        kill_tree(postgres.pids()[0])
        run.thread.join(900)
        rc, output = run.result
        assert rc != 0 and "Traceback" not in output, output[-3000:]
        assert f"PostgreSQL at {lab_env['LAB_PG_HOST']}:{lab_env['LAB_PG_PORT']}" in output, output[-3000:]
        postgres.up()
        rc, output = run_playbook(fleet, "deploy_fleet.yml")
        assert rc == 0, output[-4000:]
        assert databases() == BATCH
        with pg_connect(lab_env) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", [f"harbor\\_pd%\\_{unique}"])
            assert cur.fetchone()[0] == BATCH
        rc, output = run_playbook(fleet, "deploy_fleet.yml")
        assert rc == 0 and set(recap_changed(output).values()) == {0}, output[-4000:]
        reliability("faults", f"PostgreSQL SIGKILL during deploy_fleet.yml of {BATCH} new tenants", 1,
                    "run failed naming the server; re-run converged (one database and login each), then changed=0")
    finally:
        lab_module.Postgres().up()
        rc, output = run_playbook(fleet, "tenant_remove.yml", "-e", f"tenant={','.join(ids)}",
                                  "-e", f"confirm={','.join(ids)}")
        assert rc == 0, output[-4000:]


# --------------------------------------------------------------------------- Kubernetes

def test_apiserver_restarted_during_a_batch_of_secrets(lab_env, kube_client, run_module, unique, reliability):
    import base64
    from kubernetes import client as k8s
    ids = [f"kf{i}-{unique}" for i in range(BATCH)]
    kube = {"kubeconfig": lab_env["LAB_KUBECONFIG"]}
    core = k8s.CoreV1Api(kube_client)

    def secrets_of(tenant):
        try:
            return core.list_namespaced_secret(f"harbor-{tenant}", label_selector="harborfleet.io/tenant").items
        except k8s.ApiException:
            return []

    try:
        first = run_module("tenant_secrets", dict(kube, tenant=ids[0]))
        assert first["changed"] and not first.get("failed"), first
        before = {s.metadata.name: s.data for s in secrets_of(ids[0])}
        run = Background(run_module, "tenant_secrets", dict(kube, tenants=[{"tenant": t} for t in ids]))
        wait_for(lambda: len(secrets_of(ids[1])) > 0 or run.result is not None, 120, interval=0.05)
        apiserver = lab_module.KubeApiserver()
        apiserver.down(keep_data=True)
        time.sleep(1)
        apiserver.up()
        outcome = clear(run.join())
        again = run_module("tenant_secrets", dict(kube, tenants=[{"tenant": t} for t in ids]))
        assert not again.get("failed"), again
        for tenant in ids:  # one of each, nothing twice
            assert sorted(s.metadata.name for s in secrets_of(tenant)) == [
                f"{tenant}-{purpose}" for purpose in ("admin", "cache", "database")]
        assert run_module("tenant_secrets", dict(kube, tenants=[{"tenant": t} for t in ids]))["changed"] is False
        assert {s.metadata.name: s.data for s in secrets_of(ids[0])} == before  # no password regenerated
        assert all(base64.b64decode(v) for data in before.values() for v in data.values())
        reliability("faults", f"kube-apiserver restart during {BATCH} tenants' Secrets", 1,
                    f"{outcome}; re-run converged, no duplicate, then changed=0, passwords kept")
    finally:
        lab_module.KubeApiserver().up()
        for tenant in ids:
            try:
                core.delete_namespace(f"harbor-{tenant}")
            except k8s.ApiException:
                pass


# --------------------------------------------------------------------------- S3

def test_seaweedfs_restarted_during_a_batch_of_buckets(lab_env, s3_admin, run_module, unique, reliability):
    ids = [f"sf{i}-{unique}" for i in range(BATCH)]
    s3 = dict(endpoint_url=lab_env["LAB_S3_ENDPOINT"], region=lab_env["LAB_S3_REGION"],
              access_key=lab_env["LAB_S3_ACCESS_KEY"], secret_key=lab_env["LAB_S3_SECRET_KEY"], versioning="enabled",
              credentials=False, ca_bundle=lab_env["LAB_CA_CERT"])

    def buckets():
        try:
            return {b["Name"] for b in s3_admin.list_buckets()["Buckets"] if b["Name"].endswith(unique)}
        except Exception:  # pylint: disable=broad-except
            return set()

    try:
        first = run_module("tenant_bucket", dict(s3, tenant=ids[0]))
        assert first["changed"] and not first.get("failed"), first
        s3_admin.put_object(Bucket=f"harbor-{ids[0]}", Key="kept", Body=b"before the fault")
        run = Background(run_module, "tenant_bucket", dict(s3, concurrency=2, tenants=[{"tenant": t} for t in ids]))
        wait_for(lambda: len(buckets()) >= 6 or run.result is not None, 120, interval=0.05)
        seaweed = lab_module.SeaweedFS()
        seaweed.down(keep_data=True)
        seaweed.up()
        outcome = clear(run.join())
        wait_for(lambda: bool(buckets()), 60)
        again = run_module("tenant_bucket", dict(s3, tenants=[{"tenant": t} for t in ids]))
        assert not again.get("failed"), again
        assert buckets() == {f"harbor-{t}" for t in ids}
        assert run_module("tenant_bucket", dict(s3, tenants=[{"tenant": t} for t in ids]))["changed"] is False
        assert s3_admin.get_object(Bucket=f"harbor-{ids[0]}", Key="kept")["Body"].read() == b"before the fault"
        reliability("faults", f"SeaweedFS restart during {BATCH} buckets", 1,
                    f"{outcome}; re-run converged, no duplicate, then changed=0, object intact")
    finally:
        lab_module.SeaweedFS().up()
        run_module("tenant_bucket", dict(s3, state="absent", force=True, tenants=[{"tenant": t} for t in ids]))
