"""The fleet playbooks end to end on the lab: removal needs confirmation, upgrades stop at the first unhealthy
batch. (Deploy, idempotence, isolation and removal are the molecule default scenario.)"""
import base64
import os
import subprocess
import sys

import pytest
import yaml

from conftest import run_playbook, wait_for, write_fleet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = ("up-a", "up-b", "up-c", "up-d")
sys.path.insert(0, os.path.join(ROOT, "lab"))
import lab as lab_module  # noqa: E402  pylint: disable=wrong-import-position
LAB_DIR = str(lab_module.LAB)


def playbook(fleet_dir, name, *extra):
    return run_playbook(fleet_dir, name, *extra)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory, lab_env):
    path = str(tmp_path_factory.mktemp("upgrade-fleet"))
    write_fleet(path, IDS, "2.6.4")
    rc, out = playbook(path, "deploy_fleet.yml")
    assert rc == 0, out[-4000:]
    yield path
    write_fleet(path, IDS, "2.6.4")
    rc, out = playbook(path, "tenant_remove.yml", "-e", f"tenant={','.join(IDS)}", "-e", f"confirm={','.join(IDS)}")
    assert rc == 0, out[-4000:]


def test_tenant_remove_without_confirmation_changes_nothing(fleet_dir, run_module, lab_env):
    rc, out = playbook(fleet_dir, "tenant_remove.yml", "-e", "tenant=up-a")
    assert rc != 0 and "Refusing to remove anything" in out
    recap = out[out.index("PLAY RECAP"):]
    assert "changed=0" in recap and "lab-redis-1" not in recap and "up-a " not in recap
    info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenants": list(IDS)})
    assert sorted(c["tenant"] for c in info["clusters"]) == list(IDS)
    assert all(c["ready"] for c in info["clusters"])


def tenant_still_there(tid, run_module, lab_env, s3_admin):
    """The tenant's cluster is ready, its database is there and its bucket answers."""
    import psycopg2
    info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenant": tid})
    conn = psycopg2.connect(host=lab_env["LAB_PG_HOST"], port=int(lab_env["LAB_PG_PORT"]),
                            user=lab_env["LAB_PG_USER"], password=lab_env["LAB_PG_PASSWORD"], dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (tid.replace("-", "_") + "_core",))
            database = cur.fetchone()[0] == 1
    finally:
        conn.close()
    s3_admin.head_bucket(Bucket=f"up-harbor-{tid}")
    return info["clusters"][0]["ready"] and database


def allow_connections(lab_env, database, allowed):
    import psycopg2
    conn = psycopg2.connect(host=lab_env["LAB_PG_HOST"], port=int(lab_env["LAB_PG_PORT"]),
                            user=lab_env["LAB_PG_USER"], password=lab_env["LAB_PG_PASSWORD"], dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {'true' if allowed else 'false'}")
    finally:
        conn.close()


def test_a_failed_backup_removes_nothing_of_any_tenant(fleet_dir, run_module, lab_env, s3_admin):
    # up-c's dump fails (its database refuses connections); up-d's would succeed. Neither may lose anything.
    allow_connections(lab_env, "up_c_core", False)
    try:
        rc, out = playbook(fleet_dir, "tenant_remove.yml", "-e", "tenant=up-c,up-d", "-e", "confirm=up-c,up-d")
    finally:
        allow_connections(lab_env, "up_c_core", True)
    assert rc != 0 and "backup of up_c_core failed" in out, out[-6000:]
    for tid in ("up-c", "up-d"):
        assert tenant_still_there(tid, run_module, lab_env, s3_admin), tid
    recap = out[out.index("PLAY RECAP"):]
    assert "lab-redis-1" not in recap, recap  # the Redis tier was never touched


def test_backup_writes_verified_private_dumps_with_one_stamp(fleet_dir, tmp_path):
    import re
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir(mode=0o755)
    rc, out = playbook(fleet_dir, "backup.yml", "-e", "fleet_only=up-a,up-b", "-e", f"fleet_backup_dir={backup_dir}")
    assert rc == 0, out[-4000:]
    files = sorted(str(p) for p in backup_dir.rglob("*") if p.is_file())
    assert [os.path.basename(f).split("-")[0] for f in files] == ["up_a_core", "up_b_core"]
    stamps = {re.search(r"-(\d{8}T\d{6}Z)\.dump$", f).group(1) for f in files}
    assert len(stamps) == 1
    for path in files:
        assert oct(os.stat(path).st_mode)[-3:] == "600"
        assert path in out  # the closing message names the files that were written
        listing = subprocess.run(["pg_restore", "--list", path], capture_output=True, text=True, check=False)
        assert listing.returncode == 0, listing.stderr
    for folder in [backup_dir] + [p for p in backup_dir.rglob("*") if p.is_dir()]:
        assert oct(folder.stat().st_mode)[-3:] == "700", folder


def test_a_full_sentinel_group_stops_its_tenants_before_any_database_or_bucket(fleet_dir, tmp_path, lab_env,
                                                                               s3_admin, kube_client):
    """Another fleet shares the lab's sentinel group, which already monitors this module's four master sets; with
    a capacity of 2 the group cannot take one more. The registration's checks run before any instance, database or
    bucket is made: the tenant gets none of them, and the run names it."""
    import socket
    import botocore.exceptions
    import psycopg2
    from kubernetes import client as k8s
    path = str(tmp_path / "full-group")
    os.makedirs(path)
    write_fleet(path, ["cap-a"], redis_port_base=31690, bucket_prefix="cap-harbor-", capacity=2)
    try:
        rc, out = playbook(path, "deploy_fleet.yml")
        assert rc != 0, out[-4000:]
        assert "sentinel group 'lab-sg' monitors" in out and "would overfill it" in out, out[-4000:]
        # the group's every host stopped, so the run ends there (a fleet with other groups goes on without this
        # group's tenants and names them at the end)
        assert "Databases and buckets" not in out.split("PLAY RECAP")[0] or "Left out because" in out
        conn = psycopg2.connect(host=lab_env["LAB_PG_HOST"], port=int(lab_env["LAB_PG_PORT"]),
                                user=lab_env["LAB_PG_USER"], password=lab_env["LAB_PG_PASSWORD"], dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_database WHERE datname = 'cap_a_core'")
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()
        with pytest.raises(botocore.exceptions.ClientError):
            s3_admin.head_bucket(Bucket="cap-harbor-cap-a")
        with socket.socket() as probe:  # no instance was started for it
            assert probe.connect_ex(("127.0.0.1", 31690 + int(lab_env.get("LAB_PORT_OFFSET", 0)))) != 0
    finally:
        try:
            k8s.CoreV1Api(kube_client).delete_namespace("harbor-cap-a")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


def test_a_fleet_file_that_does_not_parse_fails_the_run(tmp_path):
    (tmp_path / "fleet.yml").write_text("tenants: [{id: acme}\n  broken: [\n")
    (tmp_path / "fleet.tenants.yml").write_text("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")
    for name in ("deploy_fleet.yml", "fleet_status.yml", "backup.yml"):
        rc, out = playbook(str(tmp_path), name)
        assert rc != 0 and "No fleet inventory was read" in out, (name, out[-3000:])
        assert "is not valid YAML" in out and "fleet.yml" in out, out[-3000:]


def clusters_healthy(kube_client, namespace):
    from kubernetes import client
    items = client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        "goharbor.io", "v1beta1", namespace, "harborclusters")["items"]
    return all((obj.get("status") or {}).get("status") == "healthy" for obj in items)


def test_upgrade_stops_at_the_first_unhealthy_batch(fleet_dir, kube_client, run_module, lab_env):
    from kubernetes import client
    core = client.CoreV1Api(kube_client)
    broken = core.read_namespaced_secret("up-b-database", "harbor-up-b")
    saved = dict(broken.data)
    wrong = base64.b64encode(b"not-the-password").decode()
    core.patch_namespaced_secret("up-b-database", "harbor-up-b",
                                 {"data": {"postgres-password": wrong, "postgresql-password": wrong}})
    try:
        write_fleet(fleet_dir, IDS, "2.6.5")
        # The default batches [1, 2, "25%"]: up-a is the canary, up-b and up-c share the second batch, up-d is the
        # third and must never be started once up-b fails.
        rc, out = playbook(fleet_dir, "upgrade_fleet.yml", "-e", "harbor_wait_timeout=60")
        assert rc != 0
        assert "up-b did not become healthy on 2.6.5" in out, out[-6000:]
        assert "Still to upgrade:" in out and "up-d" in out[out.index("Still to upgrade:"):], out[-6000:]
        info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenants": list(IDS)})
        versions = {c["tenant"]: (c["version"], c["ready"]) for c in info["clusters"]}
        assert versions["up-a"] == ("2.6.5", True)       # the canary went through
        assert versions["up-b"][0] == "2.6.5" and versions["up-b"][1] is False
        assert versions["up-c"][0] == "2.6.5"            # its batch mate was upgraded at the same time
        assert versions["up-d"] == ("2.6.4", True)       # never touched: the rollout stopped
        recap = out[out.index("PLAY RECAP"):]
        assert "up-d " not in recap, recap
    finally:
        core.patch_namespaced_secret("up-b-database", "harbor-up-b", {"data": saved})
        # leave the fleet as the other tests expect it: up-b healthy again once the reconciler retries
        assert wait_for(lambda: clusters_healthy(kube_client, "harbor-up-b"), timeout=180, interval=1), \
            "up-b did not recover after its Secret was restored"


def inventory(path, *args):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", path, *args]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    return proc.returncode, proc.stdout, proc.stderr


def test_inventory_groups_tenants_by_live_status(fleet_dir, lab_env, tmp_path):
    source = tmp_path / "live.tenants.yml"
    source.write_text(yaml.safe_dump({"plugin": "harborfleet.fleet.tenants",
                                      "fleet_file": os.path.join(fleet_dir, "fleet.yml"),
                                      "live_status": True, "kubeconfig": lab_env["LAB_KUBECONFIG"]}))
    rc, out, err = inventory(str(source), "--list")
    assert rc == 0, out + err
    groups = yaml.safe_load(out)  # stdout only: a library may print a warning on stderr
    assert sorted(groups["status_ready"]["hosts"]) == list(IDS)
    assert sorted(groups["status_healthy"]["hosts"]) == list(IDS)
    assert sorted(groups["plan_small"]["hosts"]) == list(IDS)


def test_inventory_names_duplicate_and_invalid_ids(tmp_path):
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"tenants": [{"id": "ok"}, {"id": "ok"}, {"id": "Bad_Id"}]}))
    source = tmp_path / "bad.tenants.yml"
    source.write_text("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")
    rc, out, err = inventory(str(source), "--list")
    out += err
    assert "duplicate tenant id 'ok'" in out and "tenants[2].id" in out
