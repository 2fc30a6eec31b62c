"""No secret in any output: deploy, fleet_status, rotate_credentials and tenant_remove at -vvvv --diff, with
ANSIBLE_LOG_PATH and a callback that records every event, searched for every value the tenants' Secrets hold
(before and after the rotation) and for the lab's admin secrets - in the output, the logs, the events, the HTML
status report, every log file the lab's services and the tenants' Redis instances wrote, and the name of every file
under the lab (the backups' included)."""
import base64
import os

import pytest

from conftest import ROOT, lab_module, run_playbook, write_fleet

pytestmark = pytest.mark.reliability
IDS = ("leak-a", "leak-b")


def secret_values(kube_client):
    from kubernetes import client
    core = client.CoreV1Api(kube_client)
    values = {}
    for tid in IDS:
        secrets = core.list_namespaced_secret(f"harbor-{tid}", label_selector="harborfleet.io/tenant").items
        for secret in secrets:
            if secret.metadata.name.endswith("-trust"):
                continue  # the CA certificate Harbor trusts for the database: public, not a secret
            for key, data in (secret.data or {}).items():
                values[f"{secret.metadata.name}/{key}"] = base64.b64decode(data).decode()
    return values


REMOVE = ("-e", f"tenant={','.join(IDS)}", "-e", f"confirm={','.join(IDS)}")


@pytest.fixture(scope="module")
def leak_fleet(tmp_path_factory, lab_env, kube_client):
    path = str(tmp_path_factory.mktemp("leak-fleet"))
    write_fleet(path, IDS, redis_port_base=31720, bucket_prefix="leak-harbor-", domain="leak.lab.test")
    yield path
    if secret_values(kube_client):  # the test stopped before its own removal
        rc, out = run_playbook(path, "tenant_remove.yml", *REMOVE)
        assert rc == 0, out[-4000:]


def traced_run(fleet_dir, outputs, name, *extra):
    """Run a playbook at -vvvv --diff, keeping what a person, a log file and a callback plugin would see."""
    log, record = os.path.join(fleet_dir, f"{name}.log"), os.path.join(fleet_dir, f"{name}.events.jsonl")
    env = {"ANSIBLE_LOG_PATH": log, "ANSIBLE_CALLBACKS_ENABLED": "record_all",
           "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "integration", "callback_plugins"),
           "HARBORFLEET_RECORD_FILE": record}
    rc, out = run_playbook(fleet_dir, name, "-vvvv", "--diff", *extra, env=env)
    outputs[f"{name} output"] = out
    for label, path in ((f"{name} log", log), (f"{name} callback events", record)):
        with open(path, encoding="utf-8") as handle:
            outputs[label] = handle.read()
    return rc, out


def test_deploy_and_rotation_print_no_secret(leak_fleet, kube_client, lab_env, reliability):
    outputs = {}
    rc, out = traced_run(leak_fleet, outputs, "deploy_fleet.yml")
    assert rc == 0, out[-4000:]
    report = os.path.join(leak_fleet, "report.html")
    rc, out = traced_run(leak_fleet, outputs, "fleet_status.yml", "-e", f"fleet_report_path={report}")
    assert rc == 0, out[-4000:]
    with open(report, encoding="utf-8") as handle:
        outputs["fleet_status HTML report"] = handle.read()
    before = secret_values(kube_client)
    assert len(before) == len(IDS) * 5  # database (two keys), cache, admin, storage
    rc, out = traced_run(leak_fleet, outputs, "rotate_credentials.yml", "-e", f"tenant={','.join(IDS)}")
    assert rc == 0, out[-4000:]
    after = secret_values(kube_client)
    rotated = [name for name in before if before[name] != after[name] and not name.endswith("-admin/secret")]
    assert len(rotated) == len(IDS) * 4, rotated  # database (both keys), cache and storage changed
    assert outputs["rotate_credentials.yml callback events"].count('"event": "v2_runner_on_ok"') > 10
    rc, out = traced_run(leak_fleet, outputs, "tenant_remove.yml", *REMOVE)
    assert rc == 0, out[-4000:]
    assert secret_values(kube_client) == {}

    names = []
    for root, _dirs, files in os.walk(lab_module.LAB):
        for name in files:
            path = os.path.join(root, name)
            names.append(path)
            if name.endswith(".log") and "data" not in os.path.relpath(root, lab_module.LAB).split(os.sep):
                # logs, not the stores' own data (SeaweedFS keeps its identities, keys included, in LevelDB
                # files named *.log under data/)
                with open(path, encoding="utf-8", errors="replace") as handle:
                    outputs[f"lab log {os.path.relpath(path, lab_module.LAB)}"] = handle.read()
    outputs["file names under the lab (backups included)"] = "\n".join(names)
    assert any("backups" in path for path in names)

    secrets = {f"before {k}": v for k, v in before.items()}
    secrets.update({f"after {k}": v for k, v in after.items()})
    secrets.update({name: lab_env[name] for name in ("LAB_PG_PASSWORD", "LAB_S3_SECRET_KEY", "LAB_SENTINEL_PASSWORD")})
    assert all(len(value) >= 20 for value in secrets.values())
    leaks = [(name, where) for name, value in secrets.items() for where, text in outputs.items() if value in text]
    assert leaks == []
    reliability("leaks", "deploy, status, rotation, removal at -vvvv --diff", f"{len(secrets)} secrets x "
                f"{len(outputs)} outputs", f"{len(leaks)} found")
