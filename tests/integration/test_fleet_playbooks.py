"""The fleet playbooks end to end on the lab: removal needs confirmation, upgrades stop at the first unhealthy
batch. (Deploy, idempotence, isolation and removal are the molecule default scenario.)"""
import base64
import os
import subprocess
import sys

import pytest
import yaml

from conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = ("up-a", "up-b", "up-c")
sys.path.insert(0, os.path.join(ROOT, "lab"))
import lab as lab_module  # noqa: E402  pylint: disable=wrong-import-position
LAB_DIR = str(lab_module.LAB)


def playbook(fleet_dir, name, *extra):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", os.path.join(ROOT, "inventories", "lab", "hosts.yml"),
               "-i", os.path.join(fleet_dir, "fleet.tenants.yml"),
               "-e", f"fleet_file={os.path.join(fleet_dir, 'fleet.yml')}",
               os.path.join(ROOT, "playbooks", name), *extra]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               HARBORFLEET_LAB_DIR=LAB_DIR)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=1200)
    return proc.returncode, proc.stdout + proc.stderr


def write_fleet(fleet_dir, version):
    fleet = {
        "defaults": {"plan": "small", "region": "lab", "harbor_version": version, "domain": "upgrade.lab.test"},
        "plans": {"small": {"redis_maxmemory": "16mb"}},
        "tiers": {
            "postgres": [{"name": "lab-pg", "host": "127.0.0.1", "port": 25432, "ssl_mode": "disable"}],
            "sentinel_groups": [{"name": "lab-sg", "sentinels": ["127.0.0.1:31580", "127.0.0.1:31581",
                                                                 "127.0.0.1:31582"],
                                 "capacity": 20, "redis_port_base": 31680}],
            "s3": [{"name": "lab-s3", "endpoint": "http://127.0.0.1:28333", "region": "us-east-1",
                    "bucket_prefix": "up-harbor-"}],
        },
        "tenants": [{"id": tid} for tid in IDS],
    }
    with open(os.path.join(fleet_dir, "fleet.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(fleet, handle)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory, lab_env):
    path = str(tmp_path_factory.mktemp("upgrade-fleet"))
    with open(os.path.join(path, "fleet.tenants.yml"), "w", encoding="utf-8") as handle:
        handle.write("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")
    write_fleet(path, "2.6.4")
    rc, out = playbook(path, "deploy_fleet.yml")
    assert rc == 0, out[-4000:]
    yield path
    write_fleet(path, "2.6.4")
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
        write_fleet(fleet_dir, "2.6.5")
        rc, out = playbook(fleet_dir, "upgrade_fleet.yml", "-e", "upgrade_batches=[1,1,1]", "-e",
                           "harbor_wait_timeout=60")
        assert rc != 0
        assert "up-b did not become healthy on 2.6.5" in out, out[-6000:]
        info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenants": list(IDS)})
        versions = {c["tenant"]: (c["version"], c["ready"]) for c in info["clusters"]}
        assert versions["up-a"] == ("2.6.5", True)       # the canary went through
        assert versions["up-b"][0] == "2.6.5" and versions["up-b"][1] is False
        assert versions["up-c"] == ("2.6.4", True)       # never touched: the rollout stopped
    finally:
        core.patch_namespaced_secret("up-b-database", "harbor-up-b", {"data": saved})
        # leave the fleet as the other tests expect it: up-b healthy again once the reconciler retries
        assert wait_for(lambda: clusters_healthy(kube_client, "harbor-up-b"), timeout=180, interval=1), \
            "up-b did not recover after its Secret was restored"


def inventory(path, *args):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", path, *args]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    return proc.returncode, proc.stdout + proc.stderr


def test_inventory_groups_tenants_by_live_status(fleet_dir, lab_env, tmp_path):
    source = tmp_path / "live.tenants.yml"
    source.write_text(yaml.safe_dump({"plugin": "harborfleet.fleet.tenants",
                                      "fleet_file": os.path.join(fleet_dir, "fleet.yml"),
                                      "live_status": True, "kubeconfig": lab_env["LAB_KUBECONFIG"]}))
    rc, out = inventory(str(source), "--list")
    assert rc == 0, out
    groups = yaml.safe_load(out)
    assert sorted(groups["status_ready"]["hosts"]) == list(IDS)
    assert sorted(groups["status_healthy"]["hosts"]) == list(IDS)
    assert sorted(groups["plan_small"]["hosts"]) == list(IDS)


def test_inventory_names_duplicate_and_invalid_ids(tmp_path):
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"tenants": [{"id": "ok"}, {"id": "ok"}, {"id": "Bad_Id"}]}))
    source = tmp_path / "bad.tenants.yml"
    source.write_text("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")
    rc, out = inventory(str(source), "--list")
    assert "duplicate tenant id 'ok'" in out and "tenants[2].id" in out
