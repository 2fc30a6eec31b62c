"""tenant_secrets against the lab's real kube-apiserver: generated once, read back, written, rotated."""
import base64

import pytest

MODULE = "tenant_secrets"


@pytest.fixture
def kube_args(lab_env):
    return {"kubeconfig": lab_env["LAB_KUBECONFIG"]}


@pytest.fixture
def cleanup(kube_client):
    from kubernetes import client
    namespaces = []
    yield namespaces
    core = client.CoreV1Api(kube_client)
    for ns in namespaces:
        for secret in core.list_namespaced_secret(ns).items:
            core.delete_namespaced_secret(secret.metadata.name, ns)


def secret_data(kube_client, namespace, name):
    from kubernetes import client
    data = client.CoreV1Api(kube_client).read_namespaced_secret(name, namespace).data
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_generated_once_then_read_back(kube_client, kube_args, run_module, cleanup, unique):
    tenant = f"sec-{unique}"
    cleanup.append(f"harbor-{tenant}")
    predicted = run_module(MODULE, dict(kube_args, tenant=tenant), check=True)
    assert predicted["changed"] is True and len(predicted["actions"]) == 4
    created = run_module(MODULE, dict(kube_args, tenant=tenant), diff=True)
    assert created["actions"] == predicted["actions"]
    assert created["secrets"] == {"database": "created", "cache": "created", "admin": "created"}
    database = secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-database")
    values = {"database": database["postgres-password"],
              "cache": secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-cache")["redis-password"],
              "admin": secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-admin")["secret"]}
    assert database == {"postgres-password": values["database"], "postgresql-password": values["database"]}
    assert all(len(v) == 40 and v.isalnum() for v in values.values())
    # references, never values: not in the result, not in the diff
    assert created["refs"]["database"] == {"name": f"{tenant}-database",
                                           "keys": ["postgres-password", "postgresql-password"]}
    assert "values" not in created and not any(v in str(created) for v in values.values())
    again = run_module(MODULE, dict(kube_args, tenant=tenant))
    assert again["changed"] is False and not any(v in str(again) for v in values.values())
    assert secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-cache")["redis-password"] == values["cache"]


def test_values_are_written_and_rotation_replaces(kube_client, kube_args, run_module, cleanup, unique):
    tenant = f"rot-{unique}"
    cleanup.append(f"harbor-{tenant}")
    run_module(MODULE, dict(kube_args, tenant=tenant))
    first = {name: secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-{name}") for name in ("database", "cache")}
    stored = run_module(MODULE, dict(kube_args, tenant=tenant, ensure=[], values={"storage": "S3SecretKey"}))
    assert stored["secrets"] == {"storage": "created"} and "S3SecretKey" not in str(stored)
    assert secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-storage") == {"secret": "S3SecretKey"}
    rotated = run_module(MODULE, dict(kube_args, tenant=tenant, rotate=["database"]))
    assert rotated["secrets"]["database"] == "changed"
    assert secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-database") != first["database"]
    assert secret_data(kube_client, f"harbor-{tenant}", f"{tenant}-cache") == first["cache"]


def test_batch_and_bad_input(kube_args, run_module, cleanup, unique):
    ids = [f"sb{i}-{unique}" for i in range(5)]
    cleanup.extend(f"harbor-{t}" for t in ids)
    result = run_module(MODULE, dict(kube_args, tenants=[{"tenant": t} for t in ids]))
    assert result["summary"] == {"total": 5, "changed": 5, "failed": 0, "skipped": 0}
    bad = run_module(MODULE, dict(kube_args, tenant=ids[0], values={"cache": "not/url#safe"}))
    assert bad["failed"] is True and bad["field"] == "values.cache"
    newline = run_module(MODULE, dict(kube_args, tenant=f"nl-{unique}\n"))
    assert newline["failed"] is True and newline["field"] == "tenant" and newline.get("changed") is not True
    shared = run_module(MODULE, dict(kube_args, values={"admin": "SharedAdmin1"}, tenants=[{"tenant": ids[0]}]))
    assert shared["failed"] is True and shared["field"] == "values"
