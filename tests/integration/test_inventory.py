"""The tenants inventory plugin as an inventory sync runs it (ansible-inventory --list): placement read from the
cluster, new tenants placed in memory, unplaceable tenants grouped with their reason, bad fleets refused by name."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def fleet(lab_env, tenants, name, **tiers):
    base = {
        "postgres": [{"name": "pg-lab", "host": lab_env["LAB_PG_HOST"], "port": int(lab_env["LAB_PG_PORT"]),
                      "ca_cert": lab_env["LAB_CA_CERT"], "capacity": 10}],
        "sentinel_groups": [{"name": "sg-lab", "sentinels": lab_env["LAB_SENTINELS"].split(","), "capacity": 10,
                             "redis_port_base": 27600}],
        "s3": [{"name": "s3-lab", "endpoint": lab_env["LAB_S3_ENDPOINT"], "ca_cert": lab_env["LAB_CA_CERT"]}],
    }
    base.update(tiers)
    return {"name": name, "defaults": {"plan": "small", "harbor_version": "2.6.4", "domain": "inv.lab.test"},
            "plans": {"small": {}}, "tiers": base, "tenants": [{"id": t} if isinstance(t, str) else t for t in tenants]}


def plain(value):
    """A value as exported, without the wrappers that mark inventory strings unsafe."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def write(directory, data, record=None):
    (directory / "fleet.yml").write_text(yaml.safe_dump(data))
    (directory / "fleet.tenants.yml").write_text("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")
    if record is not None:
        (directory / "fleet.placement.yml").write_text(yaml.safe_dump(record))
    return directory / "fleet.tenants.yml"


def inventory(lab_env, source, *args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", K8S_AUTH_KUBECONFIG=lab_env["LAB_KUBECONFIG"],
               ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", str(source),
                           "--list", "--export", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=False, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def namespaces(kube_client):
    from kubernetes import client
    made = []
    yield made
    core = client.CoreV1Api(kube_client)
    for tid in made:
        try:
            core.delete_namespace(f"harbor-{tid}")
        except client.ApiException:
            pass


def test_placement_comes_from_the_cluster_and_new_tenants_are_pending(
        lab_env, tmp_path, run_module, unique, namespaces):
    a, b = f"inv-a-{unique}", f"inv-b-{unique}"
    namespaces.extend([a, b])
    source = write(tmp_path, fleet(lab_env, [a], f"inv-{unique}"))
    recorded = run_module("fleet_placement", {"fleet_file": str(tmp_path / "fleet.yml"),
                                              "kubeconfig": lab_env["LAB_KUBECONFIG"]})
    assert recorded["recorded"] == [a], recorded
    write(tmp_path, fleet(lab_env, [a, b], f"inv-{unique}"))
    rc, out, err = inventory(lab_env, source)
    assert rc == 0, err
    data = json.loads(out)
    assert sorted(data["tenants"]["hosts"]) == sorted([a, b])
    assert data["placement_pending"]["hosts"] == [b]
    hostvars = data["_meta"]["hostvars"]
    assert plain(hostvars[a]["harbor_placement"]) == recorded["placement"][a]
    assert "harbor_placement_recorded" not in hostvars[a]  # recorded: the group's default (true)
    assert hostvars[b]["harbor_placement_recorded"] is False
    assert hostvars[b]["harbor_placement"]["redis_port"] == 27601  # the next free port of the group
    # compact: the tiers and plans are the group's, once
    assert "harbor_fleet_tiers" not in hostvars[a] and "pg-lab" in data["tenants"]["vars"]["harbor_fleet_tiers"]["postgres"]
    assert sorted(os.listdir(tmp_path)) == ["fleet.tenants.yml", "fleet.yml"]  # nothing written beside it


def test_a_tenant_that_fits_nowhere_is_unplaced_and_the_sync_succeeds(lab_env, tmp_path, unique):
    tiers = {"postgres": [{"name": f"pg-{unique}", "host": "127.0.0.1", "capacity": 1}]}
    source = write(tmp_path, fleet(lab_env, [f"u1-{unique}", f"u2-{unique}"], f"inv-{unique}", **tiers))
    rc, out, err = inventory(lab_env, source)
    assert rc == 0, err
    data = json.loads(out)
    assert data["unplaced"]["hosts"] == [f"u2-{unique}"] and data["tenants"]["hosts"] == [f"u1-{unique}"]
    reason = plain(data["_meta"]["hostvars"][f"u2-{unique}"]["harbor_unplaced_reason"])
    assert reason == "no postgres member with free capacity; add a member or raise a capacity"


@pytest.mark.parametrize("case, message", [
    ("reserved", "tenants.id 'tenants' is reserved"),
    ("plans", "plan names 'gold-1' and 'gold_1' both make the group 'plan_gold_1'"),
    ("secret", "tiers.postgres[0].password: admin credentials do not belong in the fleet file"),
    ("ports", "both have Redis port 27600 in sentinel group 'sg-lab'"),
    ("record", "fleet.placement.yml: must be a mapping with 'tenants'"),
    ("id", "is not a valid tenant id"),
])
def test_bad_fleets_fail_the_sync_naming_the_field(lab_env, tmp_path, unique, case, message):
    one, two = f"bad-a-{unique}", f"bad-b-{unique}"
    data, record = fleet(lab_env, [one, two], f"inv-{unique}"), None
    if case == "reserved":
        data["tenants"].append({"id": "tenants"})
    elif case == "plans":
        data["plans"] = {"gold-1": {}, "gold_1": {}}
        data["tenants"] = [{"id": one, "plan": "gold-1"}]
    elif case == "secret":
        data["tiers"]["postgres"][0]["password"] = "hunter2"
    elif case == "ports":
        record = {"tenants": {t: {"postgres": "pg-lab", "sentinel_group": "sg-lab", "redis_port": 27600}
                              for t in (one, two)}}
    elif case == "record":
        record = [{one: "pg-lab"}]
    elif case == "id":
        data["tenants"].append({"id": one + "\n"})
    source = write(tmp_path, data, record)
    rc, out, err = inventory(lab_env, source)
    assert rc != 0 and message in err, err[-2000:]
    assert "hunter2" not in out + err


def test_the_sync_can_be_cached(lab_env, tmp_path, unique):
    source = write(tmp_path, fleet(lab_env, [f"c-{unique}"], f"inv-{unique}"))
    with open(source, "a", encoding="utf-8") as handle:
        handle.write(f"cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: {tmp_path / 'cache'}\n")
    rc, first, err = inventory(lab_env, source)
    assert rc == 0, err
    assert os.listdir(tmp_path / "cache"), "nothing was cached"


@pytest.fixture
def two_clusters(lab_env):
    """The regions profile's clusters (contexts of the lab's kubeconfig), with cleanup of the namespaces made."""
    if lab_env.get("LAB_PROFILE") != "regions":
        pytest.skip("needs the lab's regions profile (make lab-up LAB_PROFILE=regions)")
    from kubernetes import client, config
    cores = {ctx: client.CoreV1Api(config.new_client_from_config(lab_env["LAB_KUBECONFIG"], context=ctx))
             for ctx in (lab_env["LAB_KUBECONTEXT"], lab_env["LAB_US_KUBECONTEXT"])}
    made = []
    yield cores, made
    for ctx, name in made:
        try:
            cores[ctx].delete_namespace(name)
        except client.ApiException:
            pass


def test_each_cluster_holds_the_records_of_its_tenants(lab_env, tmp_path, run_module, unique, two_clusters):
    cores, made = two_clusters
    eu_ctx, us_ctx = lab_env["LAB_KUBECONTEXT"], lab_env["LAB_US_KUBECONTEXT"]
    tiers = {"kubernetes": [{"name": "k8s-eu", "context": eu_ctx, "regions": ["eu"]},
                            {"name": "k8s-us", "context": us_ctx, "regions": ["us"]}]}
    eu, us = f"ke-{unique}", f"ku-{unique}"
    data = fleet(lab_env, [{"id": eu, "region": "eu"}, {"id": us, "region": "us"}], f"inv-{unique}", **tiers)
    source = write(tmp_path, data)
    made += [(eu_ctx, f"harbor-{eu}"), (us_ctx, f"harbor-{us}")]
    recorded = run_module("fleet_placement", {"fleet_file": str(tmp_path / "fleet.yml"),
                                              "kubeconfig": lab_env["LAB_KUBECONFIG"]})
    assert not recorded.get("failed") and sorted(recorded["recorded"]) == sorted([eu, us]), recorded
    # each record is on the tenant's namespace in its own cluster, and only there
    held = {ctx: {ns.metadata.name for ns in core.list_namespace(
        label_selector=f"harborfleet.io/fleet=inv-{unique}").items} for ctx, core in cores.items()}
    assert held == {eu_ctx: {f"harbor-{eu}"}, us_ctx: {f"harbor-{us}"}}
    rc, out, err = inventory(lab_env, source)
    assert rc == 0, err
    hostvars = plain(json.loads(out)["_meta"]["hostvars"])
    assert hostvars[us]["harbor_placement"]["kubernetes"] == "k8s-us"
    assert hostvars[us].get("harbor_placement_recorded", True) is True  # read back from the us cluster
    # a namespace of the same tenant in the other cluster too is an error naming both
    cores[eu_ctx].create_namespace({"metadata": {
        "name": f"harbor-{us}", "labels": {"app.kubernetes.io/managed-by": "harborfleet", "harborfleet.io/tenant": us,
                                           "harborfleet.io/fleet": f"inv-{unique}"},
        "annotations": {"harborfleet.io/placement": json.dumps({"kubernetes": "k8s-us", "postgres": "pg-lab"})}}})
    made.append((eu_ctx, f"harbor-{us}"))
    rc, _out, err = inventory(lab_env, source)
    assert rc != 0 and f"tenant '{us}' is recorded in cluster 'k8s-eu'" in err


def test_a_members_ca_file_beside_the_fleet_travels_with_the_exported_inventory(lab_env, tmp_path, unique):
    """A CA named relative to the fleet file is read at sync time; the exported inventory carries its certificate,
    so a job in another copy of the project (where the sync's path does not exist) still verifies the store."""
    import shutil
    (tmp_path / "pki").mkdir()
    shutil.copyfile(lab_env["LAB_CA_CERT"], tmp_path / "pki" / "stores-ca.crt")
    data = fleet(lab_env, [f"ca-{unique}"], f"ca-{unique}")
    data["tiers"]["postgres"][0]["ca_cert"] = "pki/stores-ca.crt"
    data["tiers"]["s3"][0]["ca_cert"] = "pki/stores-ca.crt"
    rc, out, err = inventory(lab_env, write(tmp_path, data))
    assert rc == 0, err
    tiers = plain(json.loads(out)["tenants"]["vars"]["harbor_fleet_tiers"])
    with open(lab_env["LAB_CA_CERT"], encoding="ascii") as handle:
        pem = handle.read()
    assert tiers["postgres"]["pg-lab"]["ca_bundle"] == tiers["s3"]["s3-lab"]["ca_bundle"] == pem
    assert "ca_cert" not in tiers["postgres"]["pg-lab"]  # no path of the sync's project copy
    (tmp_path / "pki" / "stores-ca.crt").unlink()
    rc, out, err = inventory(lab_env, write(tmp_path, data))
    assert rc != 0 and "tiers.postgres[0].ca_cert" in err and "pki/stores-ca.crt" in err, err
