"""Each lab service is real: it authenticates, refuses bad credentials, and validates what it stores."""
import time

import pytest

from conftest import harbor_cluster_manifest, pg_connect


def test_postgres_scram_login(lab_env):
    conn = pg_connect(lab_env)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW password_encryption")
            assert cur.fetchone()[0] == "scram-sha-256"
            cur.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = current_user")
            assert cur.fetchone()[0] is True
    finally:
        conn.close()


def test_postgres_wrong_password_refused(lab_env):
    import psycopg2
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_connect(lab_env, password="not-the-password")


def test_sentinels_monitor_a_master_set_on_all_three(lab, lab_env, sentinel_addresses, unique):
    import redis
    name = f"smoke-{unique}"
    password = lab.url_safe_password()
    tenant = lab.redis_tenant_start(name, password, replicas=1)
    master = tenant["instances"][0]
    sentinels = [redis.Redis(host=h, port=p, password=lab_env["LAB_SENTINEL_PASSWORD"], decode_responses=True)
                 for h, p in sentinel_addresses]
    try:
        for sentinel in sentinels:
            assert sentinel.ping()
            sentinel.execute_command("SENTINEL", "MONITOR", name, master["host"], master["port"], 2)
            sentinel.execute_command("SENTINEL", "SET", name, "auth-pass", password)
        for sentinel in sentinels:
            info = sentinel.sentinel_master(name)
            assert (info["ip"], int(info["port"])) == (master["host"], master["port"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the sentinels find each other through the master's hello channel
            if all(int(s.sentinel_master(name)["num-other-sentinels"]) == 2 for s in sentinels):
                break
            time.sleep(0.2)
        assert all(int(s.sentinel_master(name)["num-other-sentinels"]) == 2 for s in sentinels)
        client = redis.Redis(host=master["host"], port=master["port"], password=password)
        assert client.set("k", "v") and client.get("k") == b"v"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=master["host"], port=master["port"], password="wrong").ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=sentinel_addresses[0][0], port=sentinel_addresses[0][1], password="wrong").ping()
    finally:
        for sentinel in sentinels:
            try:
                sentinel.execute_command("SENTINEL", "REMOVE", name)
            except redis.ResponseError:
                pass
        lab.redis_tenant_stop(name)


def test_s3_bucket_lifecycle_and_wrong_secret(lab_env, s3_admin, unique):
    import boto3
    import botocore.exceptions
    bucket = f"smoke-{unique}"
    s3_admin.create_bucket(Bucket=bucket)
    try:
        assert bucket in [b["Name"] for b in s3_admin.list_buckets()["Buckets"]]
        wrong = boto3.client("s3", endpoint_url=lab_env["LAB_S3_ENDPOINT"], region_name=lab_env["LAB_S3_REGION"],
                             verify=lab_env["LAB_CA_CERT"],
                             aws_access_key_id=lab_env["LAB_S3_ACCESS_KEY"], aws_secret_access_key="wrong-secret")
        with pytest.raises(botocore.exceptions.ClientError) as err:
            wrong.list_buckets()
        assert err.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
    finally:
        s3_admin.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3_admin.list_buckets()["Buckets"]]


@pytest.fixture
def namespace(kube_client, unique):
    from kubernetes import client
    core = client.CoreV1Api(kube_client)
    name = f"smoke-{unique}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_kubernetes_accepts_a_valid_harborcluster(kube_client, namespace):
    from kubernetes import client
    api = client.CustomObjectsApi(kube_client)
    args = ("goharbor.io", "v1beta1", namespace, "harborclusters")
    api.create_namespaced_custom_object(*args, harbor_cluster_manifest("acme", namespace))
    got = api.get_namespaced_custom_object(*args, "acme")
    assert got["spec"]["database"]["spec"]["postgresql"]["prefix"] == "acme_"
    api.delete_namespaced_custom_object(*args, "acme")
    with pytest.raises(client.ApiException) as err:
        api.get_namespaced_custom_object(*args, "acme")
    assert err.value.status == 404


@pytest.mark.parametrize("broken, message", [
    ({"version": None}, "spec.version"),
    ({"externalURL": "registry.example.test"}, "spec.externalURL"),
])
def test_kubernetes_rejects_an_invalid_harborcluster(kube_client, namespace, broken, message):
    from kubernetes import client
    api = client.CustomObjectsApi(kube_client)
    manifest = harbor_cluster_manifest("broken", namespace)
    for key, value in broken.items():
        if value is None:
            del manifest["spec"][key]
        else:
            manifest["spec"][key] = value
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object("goharbor.io", "v1beta1", namespace, "harborclusters", manifest)
    assert err.value.status == 422
    assert message in err.value.body


def test_the_stores_files_are_private(lab, lab_env):
    """What the lab's S3 store and sentinels write holds credentials and tenants' data: SeaweedFS's data directory
    is open to its owner only (weed writes some metadata files 0644 whatever the umask), and the sentinels' files,
    written under umask 077, are readable by nobody else."""
    import os
    import stat
    data = lab.LAB / "seaweedfs" / "data"
    assert stat.S_IMODE(os.stat(data).st_mode) & 0o077 == 0, oct(os.stat(data).st_mode)
    exposed = []
    for root, _dirs, files in os.walk(lab.LAB / "sentinels"):
        for name in files:
            path = os.path.join(root, name)
            if os.stat(path).st_mode & (stat.S_IROTH | stat.S_IWOTH):
                exposed.append(path)
    assert not exposed, exposed[:10]
