"""tenant_bucket against the lab's real SeaweedFS (S3 + IAM): check → real → again, read back through boto3."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

MODULE = "tenant_bucket"


# --------------------------------------------------------------------------- helpers and fixtures

def connection(lab_env, **extra):
    """The lab's S3 admin login; a new key's secret goes to the tenant's Secret on the lab's cluster."""
    args = dict(endpoint_url=lab_env["LAB_S3_ENDPOINT"], region=lab_env["LAB_S3_REGION"],
                access_key=lab_env["LAB_S3_ACCESS_KEY"], secret_key=lab_env["LAB_S3_SECRET_KEY"],
                ca_bundle=lab_env["LAB_CA_CERT"], secret_store={"kubeconfig": lab_env["LAB_KUBECONFIG"]})
    args.update(extra)
    return args


def stored_secret(kube_client, tenant):
    """The S3 secret key the module wrote into the tenant's storage Secret."""
    import base64
    from kubernetes import client as k8s
    secret = k8s.CoreV1Api(kube_client).read_namespaced_secret(f"{tenant}-storage", f"harbor-{tenant}")
    return base64.b64decode(secret.data["secret"]).decode()


def client(lab_env, service, access_key=None, secret_key=None):
    import boto3
    return boto3.client(service, endpoint_url=lab_env["LAB_S3_ENDPOINT"], region_name=lab_env["LAB_S3_REGION"],
                        aws_access_key_id=access_key or lab_env["LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=secret_key or lab_env["LAB_S3_SECRET_KEY"], verify=lab_env["LAB_CA_CERT"])


def code_of(exc):
    response = exc.response or {}
    return (response.get("Error") or {}).get("Code") or response.get("Code")


def admin_delete_bucket(s3, bucket):
    import botocore.exceptions
    try:
        while True:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
            items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if not items:
                break
            s3.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if code_of(exc) != "NoSuchBucket":
            raise


def admin_delete_user(iam, user):
    import botocore.exceptions
    try:
        for key in iam.list_access_keys(UserName=user).get("AccessKeyMetadata", []):
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        for name in iam.list_user_policies(UserName=user).get("PolicyNames", []):
            iam.delete_user_policy(UserName=user, PolicyName=name)
        iam.delete_user(UserName=user)
    except botocore.exceptions.ClientError as exc:
        if code_of(exc) != "NoSuchEntity":
            raise


@pytest.fixture(scope="module")
def iam_admin(lab_env):
    return client(lab_env, "iam")


@pytest.fixture
def tenants(s3_admin, iam_admin, kube_client):
    """Tenant ids a test creates; their buckets, IAM users and namespaces are removed afterwards, whatever
    happened."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException
    created = []
    yield created
    for tenant in created:
        admin_delete_bucket(s3_admin, f"harbor-{tenant}")
        admin_delete_user(iam_admin, f"harbor-{tenant}")
        try:
            k8s.CoreV1Api(kube_client).delete_namespace(f"harbor-{tenant}")
        except ApiException as exc:
            if exc.status != 404:
                raise


def bucket_exists(s3, bucket):
    import botocore.exceptions
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except botocore.exceptions.ClientError:
        return False


def user_exists(iam, user):
    import botocore.exceptions
    try:
        iam.get_user(UserName=user)
        return True
    except botocore.exceptions.ClientError as exc:
        assert code_of(exc) == "NoSuchEntity"
        return False


SETTINGS = dict(
    versioning="enabled", encryption=True, abort_incomplete_multipart_days=7, noncurrent_version_expiration_days=30,
    tags={"tenant": "x", "tier": 2},
    policy={"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadForOneRole", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::000000000000:user/reader"]},
        "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::${bucket}/*"]}]},
)


# --------------------------------------------------------------------------- create, read back, idempotence, diff

def test_create_with_every_setting_check_real_again(run_module, lab_env, s3_admin, iam_admin, unique, tenants,
                                                    kube_client):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import normalise_policy
    tenant = f"tb-{unique}"
    bucket, user = f"harbor-{tenant}", f"harbor-{tenant}"
    tenants.append(tenant)
    args = connection(lab_env, tenant=tenant, credentials=True, **SETTINGS)

    check = run_module(MODULE, args, check=True, diff=True)
    assert check["changed"] is True, check
    assert check["actions"][0] == f"create bucket {bucket}"
    assert check["diff"]["before"] == {"bucket": bucket, "exists": False, "credentials": None}
    after = check["diff"]["after"]
    assert after["versioning"] == "enabled" and after["encryption"] == "AES256"
    assert after["lifecycle"] == {"abort_incomplete_multipart_days": 7, "noncurrent_version_expiration_days": 30}
    assert after["tags"] == {"tenant": "x", "tier": "2"}
    assert after["credentials"]["access_keys"] == ["(new key)"]
    assert "secret_stored_in" not in check and "access_key_id" not in check
    assert not bucket_exists(s3_admin, bucket) and not user_exists(iam_admin, user)  # check mode wrote nothing

    real = run_module(MODULE, args, diff=True)
    assert real["changed"] is True, real
    assert real["actions"] == check["actions"] and real["calls"] == check["calls"]
    assert real["diff"]["after"]["tags"] == after["tags"]
    secret = stored_secret(kube_client, tenant)
    assert real["access_keys"] == [real["access_key_id"]]
    assert real["secret_stored_in"] == f"harbor-{tenant}/{tenant}-storage"
    assert len(secret) >= 20 and secret not in json.dumps(real)
    assert client(lab_env, "s3", real["access_key_id"], secret).list_objects_v2(Bucket=bucket)["KeyCount"] == 0

    # read back through boto3
    assert s3_admin.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3_admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    lifecycle = {r["ID"]: r for r in s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert lifecycle["harborfleet-abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7}
    assert lifecycle["harborfleet-expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"tenant": "x", "tier": "2"}
    policy = json.loads(s3_admin.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Resource"] in (f"arn:aws:s3:::{bucket}/*", [f"arn:aws:s3:::{bucket}/*"])
    user_policy = iam_admin.get_user_policy(UserName=user, PolicyName="harborfleet-tenant-bucket")["PolicyDocument"]
    assert normalise_policy(user_policy)["Statement"]["Resource"] == [f"arn:aws:s3:::{bucket}",
                                                                      f"arn:aws:s3:::{bucket}/*"]
    keys = [k["AccessKeyId"] for k in iam_admin.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    assert keys == [real["access_key_id"]]

    again = run_module(MODULE, args, diff=True)
    assert again["changed"] is False and again["actions"] == [] and again["calls"] == [], again
    assert "access_key_id" not in again and again["access_keys"] == keys

    # a change shows in the diff, only for what changes, and check mode matches the real run
    change = dict(args, tags={"extra": "yes"}, purge_tags=False)
    check = run_module(MODULE, change, check=True, diff=True)
    assert check["actions"] == [f"set tags of {bucket}"]
    assert check["diff"]["before"]["tags"] == {"tenant": "x", "tier": "2"}
    assert check["diff"]["after"]["tags"] == {"extra": "yes", "tenant": "x", "tier": "2"}
    assert check["diff"]["before"]["versioning"] == check["diff"]["after"]["versioning"] == "enabled"
    assert {t["Key"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]} == {"tenant", "tier"}
    real = run_module(MODULE, change)
    assert real["actions"] == check["actions"] and real["calls"] == check["calls"]
    assert {t["Key"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]} == {"extra", "tenant", "tier"}
    assert run_module(MODULE, change)["changed"] is False


# --------------------------------------------------------------------------- credentials

@pytest.mark.reliability
def test_generated_keys_only_reach_their_own_bucket_and_rotate(run_module, lab_env, unique, tenants, kube_client,
                                                               reliability):
    import botocore.exceptions
    a, b = f"ka-{unique}", f"kb-{unique}"
    tenants.extend([a, b])
    result = run_module(MODULE, connection(lab_env, credentials=True, versioning="enabled",
                                           tenants=[{"tenant": a}, {"tenant": b}]))
    assert result["changed"] is True and result["failed_tenants"] == [], result
    keys = {r["tenant"]: (r["access_key_id"], stored_secret(kube_client, r["tenant"])) for r in result["results"]}
    s3a = client(lab_env, "s3", *keys[a])
    s3b = client(lab_env, "s3", *keys[b])
    admin = client(lab_env, "s3")
    admin.put_object(Bucket=f"harbor-{b}", Key="private.txt", Body=b"b's data")

    s3a.put_object(Bucket=f"harbor-{a}", Key="docker/registry/v2/blob", Body=b"a's data")
    assert s3a.get_object(Bucket=f"harbor-{a}", Key="docker/registry/v2/blob")["Body"].read() == b"a's data"
    assert [o["Key"] for o in s3a.list_objects_v2(Bucket=f"harbor-{a}")["Contents"]] == ["docker/registry/v2/blob"]
    for attempt in (lambda: s3a.list_objects_v2(Bucket=f"harbor-{b}"),
                    lambda: s3a.get_object(Bucket=f"harbor-{b}", Key="private.txt"),
                    lambda: s3a.put_object(Bucket=f"harbor-{b}", Key="intruder", Body=b"x"),
                    lambda: s3b.get_object(Bucket=f"harbor-{a}", Key="docker/registry/v2/blob"),
                    lambda: s3a.create_bucket(Bucket=f"harbor-{a}-more"),
                    lambda: s3a.put_bucket_versioning(Bucket=f"harbor-{a}",
                                                      VersioningConfiguration={"Status": "Suspended"})):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            attempt()
        assert code_of(err.value) == "AccessDenied"
    assert [x["Name"] for x in s3a.list_buckets()["Buckets"]] == [f"harbor-{a}"]
    reliability("isolation", "S3: A's key on B's bucket (list, get, put), B's on A's, new buckets, settings", 6,
                "denied by the store (AccessDenied)")

    # rotation: a new key, the old one keeps working until it is retired
    old_id = keys[a][0]
    rotated = run_module(MODULE, connection(lab_env, tenant=a, rotate_credentials=True))
    assert rotated["changed"] is True and rotated["access_key_id"] != old_id
    assert sorted(rotated["access_keys"]) == sorted([old_id, rotated["access_key_id"]])
    s3new = client(lab_env, "s3", rotated["access_key_id"], stored_secret(kube_client, a))
    assert s3new.get_object(Bucket=f"harbor-{a}", Key="docker/registry/v2/blob")["Body"].read() == b"a's data"
    assert s3a.get_object(Bucket=f"harbor-{a}", Key="docker/registry/v2/blob")["Body"].read() == b"a's data"
    retire = connection(lab_env, tenant=a, delete_access_keys=[old_id])
    check = run_module(MODULE, retire, check=True)
    assert check["actions"] == [f"delete access key {old_id} of IAM user harbor-{a}"]
    retired = run_module(MODULE, retire)
    assert retired["actions"] == check["actions"] and retired["access_keys"] == [rotated["access_key_id"]]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3a.list_objects_v2(Bucket=f"harbor-{a}")
    assert code_of(err.value) in ("InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch")
    assert s3new.list_objects_v2(Bucket=f"harbor-{a}")["KeyCount"] == 1
    assert run_module(MODULE, retire)["changed"] is False


# --------------------------------------------------------------------------- absent

def test_absent_refuses_a_non_empty_bucket_and_force_removes_every_version(
        run_module, lab_env, s3_admin, iam_admin, unique, tenants):
    tenant = f"rm-{unique}"
    bucket, user = f"harbor-{tenant}", f"harbor-{tenant}"
    tenants.append(tenant)
    made = run_module(MODULE, connection(lab_env, tenant=tenant, versioning="enabled", credentials=True))
    assert made["changed"] is True, made
    # 1,004 versions and a delete marker: more than one delete batch
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3_admin.put_object(Bucket=bucket, Key=f"blob/{i % 500}", Body=b"x"), range(1004)))
    s3_admin.delete_object(Bucket=bucket, Key="blob/0")

    absent = connection(lab_env, tenant=tenant, state="absent")
    refused = run_module(MODULE, absent)
    assert refused.get("failed") is True and "not empty" in refused["msg"] and "force" in refused["msg"]
    assert refused["actions"] == []
    assert s3_admin.list_object_versions(Bucket=bucket, MaxKeys=1).get("Versions") or \
        s3_admin.list_object_versions(Bucket=bucket, MaxKeys=1).get("DeleteMarkers")

    forced = dict(absent, force=True)
    check = run_module(MODULE, forced, check=True, diff=True)
    assert check["changed"] is True and check["diff"]["before"]["empty"] is False
    assert check["diff"]["after"] == {"bucket": bucket, "exists": False, "credentials": None}
    assert bucket_exists(s3_admin, bucket) and user_exists(iam_admin, user)
    real = run_module(MODULE, forced)
    assert real["actions"] == check["actions"], real
    assert not bucket_exists(s3_admin, bucket) and not user_exists(iam_admin, user)
    again = run_module(MODULE, forced)
    assert again["changed"] is False and again["actions"] == []


def test_iam_users_are_per_fleet_and_a_foreign_user_is_never_touched(
        run_module, lab_env, s3_admin, iam_admin, kube_client, unique):
    """Two fleets (bucket prefixes) in one account get a user each; a user of the tenant's name that this fleet did
    not create (another owner's key and policy) is neither changed nor deleted."""
    from kubernetes import client as k8s
    tenant = f"own-{unique}"
    one, two = connection(lab_env, bucket_prefix="fa-"), connection(lab_env, bucket_prefix="fb-")
    try:
        for fleet in (one, two):
            made = run_module(MODULE, dict(fleet, tenant=tenant, credentials=True))
            assert made["changed"] is True and not made.get("failed"), made
        assert user_exists(iam_admin, f"fa-{tenant}") and user_exists(iam_admin, f"fb-{tenant}")
        removed = run_module(MODULE, dict(one, tenant=tenant, state="absent"))
        assert removed["changed"] is True and not removed.get("failed"), removed
        assert not user_exists(iam_admin, f"fa-{tenant}") and user_exists(iam_admin, f"fb-{tenant}")
        assert bucket_exists(s3_admin, f"fb-{tenant}")

        # someone else's user holds the name fleet "fc-" would give the tenant
        iam_admin.create_user(UserName=f"fc-{tenant}")
        theirs = iam_admin.create_access_key(UserName=f"fc-{tenant}")["AccessKey"]["AccessKeyId"]
        three = connection(lab_env, bucket_prefix="fc-")
        for state in ("present", "absent"):
            refused = run_module(MODULE, dict(three, tenant=tenant, state=state, credentials=True))
            assert refused.get("failed") is True, refused
            assert f"IAM user fc-{tenant} exists but was not created for bucket fc-{tenant}" in refused["msg"]
            assert [k["AccessKeyId"] for k in iam_admin.list_access_keys(UserName=f"fc-{tenant}")[
                "AccessKeyMetadata"]] == [theirs]
            assert iam_admin.list_user_policies(UserName=f"fc-{tenant}").get("PolicyNames", []) == []
        assert not bucket_exists(s3_admin, f"fc-{tenant}")  # nothing was done for the tenant
    finally:
        for prefix in ("fa-", "fb-", "fc-"):
            admin_delete_bucket(s3_admin, f"{prefix}{tenant}")
            admin_delete_user(iam_admin, f"{prefix}{tenant}")
        try:
            k8s.CoreV1Api(kube_client).delete_namespace(f"harbor-{tenant}")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


# --------------------------------------------------------------------------- bad input and connection errors

def test_bad_input_is_refused_before_any_call(run_module, lab_env, unique):
    nowhere = connection(lab_env, endpoint_url="http://127.0.0.1:1")  # any call would fail as unreachable
    for args, field in (
            (dict(nowhere, tenant="acme", bucket="Bad_Bucket"), "bucket"),
            (dict(nowhere, tenant="acme", bucket="10.0.0.1"), "bucket"),
            (dict(nowhere, tenant="acme", bucket_prefix="UP-"), "bucket_prefix"),
            (dict(nowhere, tenant="acme", endpoint_url="127.0.0.1:28333"), "endpoint_url"),
            (dict(nowhere, tenant="acme", tags={"aws:x": "y"}), "tags"),
            (dict(nowhere, tenant="acme", policy="{not json"), "policy"),
            (dict(nowhere, tenants=[{"tenant": "a", "bucket": "same-bucket"}, {"tenant": "b", "bucket": "same-bucket"}]),
             "bucket"),
            (dict(nowhere, bucket="shared", tenants=[{"tenant": "a"}]), "bucket")):
        result = run_module(MODULE, args)
        assert result.get("failed") is True and result.get("field") == field, (args, result)
        assert "unreachable" not in result["msg"]


def test_wrong_credentials_and_endpoint_give_clear_errors(run_module, lab_env, s3_admin, unique):
    tenant = f"err-{unique}"
    wrong_secret = run_module(MODULE, connection(lab_env, tenant=tenant, versioning="enabled",
                                                 secret_key="not-the-secret-key"))
    assert wrong_secret["failed"] is True and "refused the credentials" in wrong_secret["msg"]
    assert lab_env["LAB_S3_ENDPOINT"] in wrong_secret["msg"]
    unknown_key = run_module(MODULE, connection(lab_env, tenants=[{"tenant": f"e{i}-{unique}"} for i in range(8)],
                                                versioning="enabled", access_key="AKIANOBODY0000000000"))
    assert unknown_key["failed"] is True and "refused the credentials" in unknown_key["msg"]
    unreachable = run_module(MODULE, connection(lab_env, tenant=tenant, versioning="enabled",
                                                endpoint_url="http://127.0.0.1:1", max_attempts=2))
    assert unreachable["failed"] is True and "http://127.0.0.1:1" in unreachable["msg"]
    assert "unreachable" in unreachable["msg"]
    assert not bucket_exists(s3_admin, f"harbor-{tenant}")


# --------------------------------------------------------------------------- batch

def test_batch_of_50_with_one_failing(run_module, lab_env, s3_admin, unique, tenants):
    ids = [f"b{i:02d}-{unique}" for i in range(50)]
    tenants.extend(ids)
    odd = ids[17]
    items = [{"tenant": t} for t in ids]
    items[17]["public_access_block"] = {"block_public_acls": True}  # SeaweedFS answers NotImplemented
    args = connection(lab_env, versioning="enabled", tags={"fleet": "lab"}, concurrency=8, tenants=items)

    check = run_module(MODULE, args, check=True)
    assert check["failed_tenants"] == [odd]
    real = run_module(MODULE, args)
    assert real["failed"] is True and real["failed_tenants"] == [odd], real
    assert real["summary"] == {"total": 50, "changed": 49, "failed": 1, "skipped": 0}
    by_tenant = {r["tenant"]: r for r in real["results"]}
    assert "public_access_block" in by_tenant[odd]["msg"] and lab_env["LAB_S3_ENDPOINT"] in by_tenant[odd]["msg"]
    assert [r["actions"] for r in check["results"]] == [r["actions"] for r in real["results"]]
    assert not bucket_exists(s3_admin, f"harbor-{odd}")  # failed before anything was created
    assert s3_admin.get_bucket_versioning(Bucket=f"harbor-{ids[0]}")["Status"] == "Enabled"

    again = run_module(MODULE, args)
    assert again["failed_tenants"] == [odd] and again["summary"]["changed"] == 0

    gone = run_module(MODULE, connection(lab_env, state="absent", credentials=False, tenants=[{"tenant": t}
                                                                                              for t in ids]))
    assert gone["summary"] == {"total": 50, "changed": 49, "failed": 0, "skipped": 0}, gone
    assert not bucket_exists(s3_admin, f"harbor-{ids[0]}")


# --------------------------------------------------------------------------- calls: a no-op costs 1 + N*k

@pytest.mark.parametrize("count, listing", [(10, 1), (3, 0)])
def test_a_no_op_rerun_makes_only_the_needed_calls(run_module, lab_env, unique, tenants, count, listing):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_buckets import BucketBackend, BucketSpec
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import S3Connection
    ids = [f"n{i}-{unique}" for i in range(count)]
    tenants.extend(ids)
    params = connection(lab_env, versioning="enabled", tags={"a": "b"})
    assert run_module(MODULE, dict(params, tenants=[{"tenant": t} for t in ids]))["changed"] is True

    conn = S3Connection(dict(params, retry_mode="standard", max_attempts=3), concurrency=8)
    backend = BucketBackend(conn, concurrency=8)
    specs = [BucketSpec(dict(params, tenant=t, purge_tags=True), "present") for t in ids]
    state = backend.read(specs)
    assert all(not backend.plan(s, state[s.key]).changes for s in specs)
    expected = {"s3:GetBucketVersioning": count, "s3:GetBucketTagging": count}
    if listing:
        expected["s3:ListBuckets"] = 1
    else:
        expected["s3:GetBucketLocation"] = count
    assert dict(conn.calls) == expected


@pytest.mark.parametrize("wait_timeout", [60, 0])
def test_wait_timeout_zero_trusts_the_writes(lab_env, s3_admin, unique, tenants, wait_timeout):
    """On a read-after-write consistent store, wait_timeout 0 makes the same buckets without reading them back."""
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_buckets import BucketBackend, BucketSpec
    from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import S3Connection
    from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import apply_plan
    ids = [f"w{wait_timeout}-{i}-{unique}" for i in range(3)]
    tenants.extend(ids)
    params = connection(lab_env, versioning="enabled", tags={"a": "b"})
    conn = S3Connection(dict(params, retry_mode="standard", max_attempts=3), concurrency=4)
    backend = BucketBackend(conn, concurrency=4, wait_timeout=wait_timeout)
    specs = [BucketSpec(dict(params, tenant=t, purge_tags=True), "present") for t in ids]
    state = backend.read(specs)
    reads = dict(conn.calls)
    for spec in specs:
        apply_plan(backend.plan(spec, state[spec.key]), None)
    writes = {"s3:CreateBucket": 3, "s3:PutBucketVersioning": 3, "s3:PutBucketTagging": 3}
    after_reads = {call: n - reads.get(call, 0) for call, n in conn.calls.items() if n - reads.get(call, 0)}
    if wait_timeout:
        assert after_reads == dict(writes, **{"s3:HeadBucket": 3, "s3:GetBucketVersioning": 3,
                                              "s3:GetBucketTagging": 3}), after_reads
    else:
        assert after_reads == writes, after_reads
    for tenant in ids:
        bucket = f"harbor-{tenant}"
        assert s3_admin.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "a", "Value": "b"}]
    state = backend.read(specs)
    assert all(not backend.plan(spec, state[spec.key]).changes for spec in specs)


# --------------------------------------------------------------------------- secrets in output

def test_no_secret_in_output_at_vvvv(run_module, lab_env, unique, tenants, kube_client):
    # No no_log anywhere: the module itself must keep the new key's secret and the admin secret out of its output.
    tenant = f"nl-{unique}"
    tenants.append(tenant)
    args = connection(lab_env, tenant=tenant, credentials=True, encryption=True)
    rc, made = run_module(MODULE, args, verbosity=4, diff=True, raw=True)
    assert rc == 0, made[-3000:]
    secret = stored_secret(kube_client, tenant)
    assert len(secret) >= 20
    rc, again = run_module(MODULE, dict(args, tags={"t": "1"}), verbosity=4, diff=True, raw=True)
    assert rc == 0, again[-3000:]
    rc, rotated = run_module(MODULE, dict(args, rotate_credentials=True), verbosity=4, diff=True, raw=True)
    assert rc == 0, rotated[-3000:]
    new_secret = stored_secret(kube_client, tenant)
    assert new_secret != secret
    for text in (made, again, rotated):
        for value in (secret, new_secret, lab_env["LAB_S3_SECRET_KEY"]):
            assert value not in text
