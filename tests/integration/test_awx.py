"""The Automation Platform path, run the way AWX runs it: the inventory is synced on its own
(ansible-inventory --list --export, with the Kubernetes credential), every job runs through ansible-runner in a fresh
read-only copy of the project over that synced inventory, and credentials arrive as the shipped credential types
inject them - the Kubernetes API as K8S_AUTH_* variables (a ServiceAccount token, no kubeconfig), admin logins as
files, the sentinel password as an extra variable."""
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import threading

import pytest
import yaml

from conftest import ROOT, lab_port, lab_tiers

IDS = ("awx-a", "awx-b", "awx-c")
SKIP = {".git", ".venv", ".lab", ".build", ".ansible", "tests", "__pycache__", ".pytest_cache", "benchmarks"}


# --------------------------------------------------------------------------- what AWX provides

@pytest.fixture(scope="module")
def token(kube_client):
    """The collection's RBAC manifests applied as shipped, and a token of their ServiceAccount: what the Kubernetes
    credential of a job carries. Every job runs with exactly those permissions (no Secrets outside tenant
    namespaces, nothing cluster-wide but namespaces and the CRD)."""
    from kubernetes import client, utils
    with open(os.path.join(ROOT, "docs", "rbac", "harborfleet.yml"), encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            try:
                utils.create_from_dict(kube_client, doc)
            except utils.FailToCreateError as exc:
                if any(error.status != 409 for error in exc.api_exceptions):
                    raise
    core = client.CoreV1Api(kube_client)
    request = core.create_namespaced_service_account_token("harborfleet", "harborfleet-system",
                                                           {"spec": {"expirationSeconds": 7200}})
    yield request.status.token


def test_the_jobs_identity_cannot_read_secrets_outside_tenant_namespaces(kube_client, token):
    from kubernetes import client
    config = client.Configuration()
    config.host, config.ssl_ca_cert = kube_client.configuration.host, kube_client.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    core = client.CoreV1Api(client.ApiClient(config))
    for attempt in (core.list_secret_for_all_namespaces, lambda: core.list_namespaced_secret("kube-system"),
                    lambda: core.list_namespaced_secret("harborfleet-system")):
        with pytest.raises(client.ApiException) as denied:
            attempt()
        assert denied.value.status == 403  # the API server's own refusal
    assert core.list_namespace(label_selector="app.kubernetes.io/managed-by=harborfleet") is not None


@pytest.fixture(scope="module")
def awx(tmp_path_factory, lab_env, token, kube_client):
    """The project (a git checkout AWX copies for each job), the credentials, and helpers to sync and to run."""
    base = tmp_path_factory.mktemp("awx")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=lambda d, names: [n for n in names if n in SKIP or n.startswith(".lab")])
    inventory = source / "inventories" / "awx"
    shutil.rmtree(inventory, ignore_errors=True)
    inventory.mkdir(parents=True)
    (inventory / "group_vars").mkdir()
    shutil.copy(os.path.join(ROOT, "inventories", "lab", "group_vars", "redis_tier.yml"), inventory / "group_vars")
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump({"lab_dir": lab_env["HARBORFLEET_LAB_DIR"]}))
    (inventory / "fleet.tenants.yml").write_text(
        "plugin: harborfleet.fleet.tenants\nfleet_file: ../../fleets/awx/fleet.yml\n")
    (base / "ca.crt").write_bytes(base64.b64decode(
        yaml.safe_load(open(lab_env["LAB_KUBECONFIG"], encoding="utf-8"))["clusters"][0]["cluster"]
        ["certificate-authority-data"]))
    kube_env = {"K8S_AUTH_HOST": kube_client.configuration.host, "K8S_AUTH_API_KEY": token,
                "K8S_AUTH_SSL_CA_CERT": str(base / "ca.crt"), "K8S_AUTH_VERIFY_SSL": "true"}
    logins = base / "credentials"
    logins.mkdir(mode=0o700)
    (logins / "postgres.yml").write_text(yaml.safe_dump(
        {"lab-pg": {"user": lab_env["LAB_PG_USER"], "password": lab_env["LAB_PG_PASSWORD"]}}))
    (logins / "s3.yml").write_text(yaml.safe_dump(
        {"lab-s3": {"access_key": lab_env["LAB_S3_ACCESS_KEY"], "secret_key": lab_env["LAB_S3_SECRET_KEY"]}}))
    state = {"base": base, "source": source, "kube_env": kube_env, "jobs": 0, "lab_env": lab_env,
             "credentials_env": dict(kube_env, HARBORFLEET_POSTGRES_LOGINS=str(logins / "postgres.yml"),
                                     HARBORFLEET_S3_LOGINS=str(logins / "s3.yml"))}
    yield state
    write_fleet(state, IDS)
    sync(state)
    result = job(state, "tenant_remove.yml", tenant=",".join(IDS), confirm=",".join(IDS))
    assert result["rc"] == 0, result["stdout"][-4000:]


def write_fleet(state, ids, version="2.6.4"):
    lab_env = state["lab_env"]
    fleet = {
        "name": "awx",
        "defaults": {"plan": "small", "region": "lab", "harbor_version": version, "domain": "awx.lab.test"},
        "plans": {"small": {"redis_maxmemory": "16mb"}},
        "tiers": lab_tiers(lab_env, 31760, "awx-harbor-"),
        "tenants": [{"id": tid} for tid in ids],
    }
    path = state["source"] / "fleets" / "awx"
    path.mkdir(parents=True, exist_ok=True)
    # the stores' CA is committed beside the fleet file and named relative to it: the sync reads it, and each job
    # (another copy of the project) verifies the stores with the certificate the synced inventory carries
    shutil.copyfile(lab_env["LAB_CA_CERT"], path / "stores-ca.crt")
    for kind in ("postgres", "s3"):
        fleet["tiers"][kind][0]["ca_cert"] = "stores-ca.crt"
    (path / "fleet.yml").write_text(yaml.safe_dump(fleet))


def sync(state, only=None):
    """The inventory source's update: ansible-inventory over the project, with the Kubernetes credential."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
               **state["kube_env"])
    env.pop("K8S_AUTH_KUBECONFIG", None)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i",
                           str(state["source"] / "inventories" / "awx"), "--list", "--export"],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    if only is not None:  # a job slice: AWX gives each slice a share of the hosts
        for group in data.values():
            if isinstance(group, dict) and "hosts" in group:
                group["hosts"] = [h for h in group["hosts"] if h in only or h not in IDS]
    state["inventory"] = data
    return data


def job(state, playbook, limit=None, check=False, inventory=None, **extravars):
    """One job: a fresh read-only copy of the project, the synced inventory as AWX serves it, ansible-runner."""
    import ansible_runner
    state["jobs"] += 1
    run = state["base"] / f"job{state['jobs']}"
    project = run / "project"
    shutil.copytree(state["source"], project)
    for folder, _dirs, files in os.walk(project):
        for name in files + [""]:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    script = run / "inventory" / "hosts"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(inventory or state["inventory"]) + "\nEOF\n")
    script.chmod(0o755)
    env = dict(state["credentials_env"], ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_COLLECTIONS_PATH=os.environ["ANSIBLE_COLLECTIONS_PATH"], ANSIBLE_FORCE_COLOR="0")
    lab_env = state["lab_env"]
    extra = {"redis_sentinel_sentinel_password": lab_env["LAB_SENTINEL_PASSWORD"],  # the credential's extra var
             "harbor_token_issuer": {"name": "lab-issuer", "kind": "ClusterIssuer"}, "harbor_wait_timeout": 120,
             "fleet_backup_dir": str(state["base"] / "backups")}
    extra.update(extravars)
    saved = os.environ.pop("K8S_AUTH_KUBECONFIG", None)  # the job has the token only, as in AWX
    try:
        runner = ansible_runner.run(private_data_dir=str(run), project_dir=str(project), playbook=f"playbooks/{playbook}",
                                    inventory=str(script), envvars=env, extravars=extra, limit=limit, quiet=True,
                                    cmdline="--check --diff" if check else None)
    finally:
        if saved is not None:
            os.environ["K8S_AUTH_KUBECONFIG"] = saved
    stdout = runner.stdout.read()
    changed_files = [os.path.join(d, f) for d, _s, fs in os.walk(project) for f in fs
                     if os.stat(os.path.join(d, f)).st_mode & stat.S_IWUSR]
    return {"rc": runner.rc, "stdout": stdout, "events": list(runner.events), "written": changed_files,
            "project": project}


def namespace_of(kube_client, tid):
    from kubernetes import client
    try:
        return client.CoreV1Api(kube_client).read_namespace(f"harbor-{tid}")
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def clusters(run_module, lab_env, ids):
    info = run_module("harbor_cluster_info", {"kubeconfig": lab_env["LAB_KUBECONFIG"], "tenants": list(ids)})
    return {c["tenant"]: (c["version"], c["ready"]) for c in info["clusters"]}


# --------------------------------------------------------------------------- the jobs

def test_a_tenant_is_added_from_a_job_without_writing_in_the_project(awx, kube_client, run_module, lab_env):
    write_fleet(awx, IDS[:1])
    sync(awx)
    deployed = job(awx, "deploy_fleet.yml")
    assert deployed["rc"] == 0, deployed["stdout"][-5000:]
    assert namespace_of(kube_client, "awx-a").metadata.annotations["harborfleet.io/placement"]

    write_fleet(awx, IDS[:2])  # a commit adds awx-b; the inventory is synced again
    data = sync(awx)
    assert data["placement_pending"]["hosts"] == ["awx-b"]
    added = job(awx, "tenant_add.yml", tenant="awx-b")
    assert added["rc"] == 0, added["stdout"][-5000:]
    assert added["written"] == [] and not (added["project"] / "fleets" / "awx" / "fleet.placement.yml").exists()
    assert clusters(run_module, lab_env, IDS[:2]) == {"awx-a": ("2.6.4", True), "awx-b": ("2.6.4", True)}
    data = sync(awx)
    assert "awx-b" not in data.get("placement_pending", {}).get("hosts", [])
    assert data["_meta"]["hostvars"]["awx-b"].get("harbor_placement_recorded", True) is True


def test_check_mode_shows_a_new_tenants_placement_and_creates_nothing(awx, kube_client):
    write_fleet(awx, IDS)
    sync(awx)
    checked = job(awx, "deploy_fleet.yml", check=True)
    assert checked["rc"] == 0, checked["stdout"][-5000:]
    assert namespace_of(kube_client, "awx-c") is None
    # the task runs once per cluster (a loop): each item's result carries its diff
    diffs = [e["event_data"]["res"]["diff"] for e in checked["events"]
             if e.get("event") == "runner_item_on_ok"
             and e["event_data"].get("task_action", "").endswith("fleet_placement")]
    assert diffs and diffs[0]["after"]["awx-c"]["redis_port"] == lab_port(awx["lab_env"], 31762)
    write_fleet(awx, IDS[:2])
    sync(awx)


def test_an_upgrade_with_a_limit_upgrades_only_the_limited_tenants(awx, run_module, lab_env):
    upgraded = job(awx, "upgrade_fleet.yml", limit="awx-a", upgrade_to="2.6.5")
    assert upgraded["rc"] == 0, upgraded["stdout"][-5000:]
    assert clusters(run_module, lab_env, IDS[:2]) == {"awx-a": ("2.6.5", True), "awx-b": ("2.6.4", True)}
    refused = job(awx, "deploy_fleet.yml", limit="awx-b")
    assert refused["rc"] != 0 and "leaves localhost out" in refused["stdout"]


def test_backup_and_status_run_as_two_concurrent_slices(awx):
    slices = [sync(awx, only={"awx-a"}), sync(awx, only={"awx-b"})]
    results = {}

    def run(index, playbook):
        results[(index, playbook)] = job(awx, playbook, inventory=slices[index], backup_stamp=f"SLICE{index}",
                                         fleet_report_path=str(awx["base"] / f"report-{index}.html"))

    threads = [threading.Thread(target=run, args=(i, p)) for i in (0, 1) for p in ("backup.yml", "fleet_status.yml")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key, result in results.items():
        assert result["rc"] == 0, (key, result["stdout"][-4000:])
    backups = sorted(p.name for p in (awx["base"] / "backups").rglob("*.dump"))
    assert backups == ["awx_a_core-SLICE0.dump", "awx_b_core-SLICE1.dump"]
    sync(awx)


def test_a_tenant_is_removed_with_confirmation(awx, kube_client):
    refused = job(awx, "tenant_remove.yml", tenant="awx-b")
    assert refused["rc"] != 0 and "Refusing to remove anything" in refused["stdout"]
    removed = job(awx, "tenant_remove.yml", tenant="awx-b", confirm="awx-b")
    assert removed["rc"] == 0, removed["stdout"][-5000:]
    namespace = namespace_of(kube_client, "awx-b")
    assert namespace is None or namespace.metadata.deletion_timestamp is not None
