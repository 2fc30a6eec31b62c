"""harbor_cluster and harbor_cluster_info main(): argument handling, list-form merging, check mode, over a fake API."""
import json
import os

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

import types

from ansible_collections.harborfleet.fleet.plugins.module_utils import _common, _harbor_cluster, _harbor_spec, _k8s_client, _module, _tenant_secrets

# The Kubernetes files' names under one prefix (k8s.X), as the tests read them.
k8s = types.SimpleNamespace()
for _source in (_common, _k8s_client, _tenant_secrets, _harbor_spec, _harbor_cluster, _module):
    k8s.__dict__.update({name: value for name, value in vars(_source).items() if not name.startswith("__")})
from ansible_collections.harborfleet.fleet.plugins.modules import harbor_cluster, harbor_cluster_info

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


class FakeKube:
    """Just enough of KubeClient: objects by path; SSA stores the applied manifest with its managed fields."""

    def __init__(self):
        with open(os.path.join(ROOT, "lab", "crds", "goharbor.io_harborclusters.yaml"), encoding="utf-8") as handle:
            self.crd = yaml.safe_load(handle)
        self.objects = {}
        self.writes = []
        self.dry_runs = []

    def get(self, path, what):
        return self.crd if path.endswith(k8s.CRD_NAME) else self.objects.get(path)

    def list_across(self, api_version, kind, what, label_selector=None, namespaces=None, unreadable=None):
        return self.list(_k8s_client.collection_path(api_version, kind), what, label_selector)

    def grant_tenant_role(self, namespace):
        self.granted = getattr(self, "granted", []) + [namespace]
        return False

    def list(self, path, what, label_selector=None):
        kind = {"/api/v1/namespaces": "Namespace", "/api/v1/secrets": "Secret"}.get(path, k8s.KIND)
        return [obj for obj in self.objects.values() if obj["kind"] == kind]

    def apply(self, manifest, force=False, dry_run=False):
        if dry_run:
            self.dry_runs.append(manifest)
            return manifest
        self.writes.append(k8s.describe_object(manifest))
        live = json.loads(json.dumps(manifest))
        live["metadata"]["managedFields"] = [{"manager": "harborfleet", "operation": "Apply",
                                              "fieldsV1": fields(k8s._compared(manifest))}]
        self.objects[k8s.object_path(manifest)] = live
        return live

    def delete(self, path, what):
        self.objects.pop(path, None)

    def close(self):
        pass


def fields(obj):
    return {"f:" + k: fields(v) if isinstance(v, dict) and v else {} for k, v in obj.items()}


@pytest.fixture
def kube(monkeypatch):
    fake = FakeKube()
    for module in (harbor_cluster, harbor_cluster_info):
        monkeypatch.setattr(module, "KubeClient", lambda params, pool_size=10: fake)
    return fake


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


FLEET = {
    "version": "2.6.4",
    "expose": {"host": "{tenant}.registry.example.test"},
    "token_issuer": {"name": "issuer"},
    "database": {"host": "db", "ssl_mode": "disable"},
    "cache": {"host": "sentinel"},
    "storage": {"region": "us-east-1"},
}


def test_check_mode_writes_nothing_then_real_run_then_no_change(kube, capsys):
    args = dict(FLEET, tenant="acme", database=dict(FLEET["database"], password="dbpw"),
                cache={"host": "sentinel", "password": "redispw"}, _ansible_check_mode=True, _ansible_diff=True)
    result = run(harbor_cluster, args, capsys)
    assert result["changed"] is True and kube.writes == [] and kube.dry_runs == []  # a new namespace: schema-checked, nothing sent
    assert result["diff"]["after"]["cluster"]["spec"]["database"]["spec"]["postgresql"]["hosts"][0]["port"] == 5432
    assert "dbpw" not in json.dumps(result) and "redispw" not in json.dumps(result)
    args.pop("_ansible_check_mode")
    result = run(harbor_cluster, args, capsys)
    assert result["changed"] is True and len(kube.writes) == 5
    assert result["spec"]["cache"]["spec"]["redis"]["port"] == 26379
    result = run(harbor_cluster, args, capsys)
    assert result["changed"] is False and len(kube.writes) == 5


def test_list_items_merge_dict_options_with_the_top_level(kube, capsys):
    args = dict(FLEET, tenants=[
        {"tenant": "a", "database": {"password": "pa", "port": 6432}, "cache": {"password": "ra"}},
        {"tenant": "b", "database": {"password": "pb"}, "cache": {"password": "rb"},
         "spec_overrides": {"logLevel": "debug"}}], spec_overrides={"registry": {"relativeURLs": False}})
    result = run(harbor_cluster, args, capsys)
    assert result["summary"] == {"total": 2, "changed": 2, "failed": 0, "skipped": 0}
    a = kube.objects[k8s.cluster_path("harbor-a", "a")]["spec"]
    b = kube.objects[k8s.cluster_path("harbor-b", "b")]["spec"]
    assert a["database"]["spec"]["postgresql"]["hosts"] == [{"host": "db", "port": 6432}]
    assert a["database"]["spec"]["postgresql"]["sslMode"] == "disable"
    assert b["database"]["spec"]["postgresql"]["hosts"] == [{"host": "db", "port": 5432}]
    assert "logLevel" not in a and b["logLevel"] == "debug"
    assert a["registry"] == b["registry"] == {"relativeURLs": False}
    assert "spec" not in result["results"][0]


@pytest.mark.parametrize("shared, field", [
    ({"database": {"host": "db", "password": "x"}}, "database.password"),
    ({"cache": {"host": "s", "password": "x"}}, "cache.password"),
    ({"admin_password": "x"}, "admin_password"),
])
def test_passwords_cannot_be_shared_by_the_list(kube, capsys, shared, field):
    result = run(harbor_cluster, dict(FLEET, tenants=[{"tenant": "a"}], **shared), capsys)
    assert result["failed"] is True and result["field"] == field and kube.writes == []


def test_info_reads_one_or_a_fleet(kube, capsys):
    run(harbor_cluster, dict(FLEET, tenants=[{"tenant": t, "database": {"password": "p"}, "cache": {"password": "r"}}
                                             for t in ("a", "b")]), capsys)
    one = run(harbor_cluster_info, {"tenant": "a"}, capsys)
    assert one["changed"] is False and one["cluster"]["tenant"] == "a" and one["cluster"]["status"] == "unknown"
    fleet = run(harbor_cluster_info, {}, capsys)
    assert [c["tenant"] for c in fleet["clusters"]] == ["a", "b"]
    assert fleet["counts"] == {"total": 2, "ready": 0, "by_status": {"unknown": 2}, "by_version": {"2.6.4": 2}}
    missing = run(harbor_cluster_info, {"tenant": "nobody"}, capsys)
    assert missing["cluster"] is None and missing["counts"]["total"] == 0
