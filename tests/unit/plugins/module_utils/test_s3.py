"""The S3 backend against an in-memory fake store: validation, normalisation, bulk reads, plans, waits, IAM."""
import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ansible_collections.harborfleet.fleet.plugins.module_utils import _s3_buckets as s3
from ansible_collections.harborfleet.fleet.plugins.module_utils import _s3_client as s3_client
from ansible_collections.harborfleet.fleet.plugins.module_utils import _s3_iam as s3_iam
from ansible_collections.harborfleet.fleet.plugins.module_utils import _s3_settings as s3_settings
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import describe_error
from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import apply_plan, plan_all
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

ENDPOINT = "http://127.0.0.1:9"


def client_error(code, status=400, operation="Op", top_level=False):
    body = {"Code": code, "Message": f"{code} happened"} if top_level else {"Error": {"Code": code,
                                                                                      "Message": f"{code} happened"}}
    body["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(body, operation)


class Paginator:
    def __init__(self, func, key, size=2):
        self.func, self.key, self.size = func, key, size

    def paginate(self, **kwargs):
        items = self.func(**kwargs)[self.key]
        for start in range(0, max(len(items), 1), self.size):
            yield {self.key: items[start:start + self.size]}


class FakeStore:
    """Just enough S3 and IAM. ``unsupported`` settings answer NotImplemented, like SeaweedFS's public access block."""

    def __init__(self, unsupported=("public_access_block",), lag=0):
        self.buckets = {}
        self.users = {}
        self.calls = []
        self.unsupported = set(unsupported)
        self.lag = lag          # reads that still show the old value after a write (eventual consistency)
        self._stale = {}
        self._key_serial = 0

    # bookkeeping
    def _call(self, name):
        self.calls.append(name)

    def _bucket(self, name):
        if name not in self.buckets:
            raise client_error("NoSuchBucket", 404)
        return self.buckets[name]

    def _get(self, bucket, field, missing_code, setting):
        self._call(f"get_{field}")
        if setting in self.unsupported:
            raise client_error("NotImplemented", 501)
        if field == "encryption" and bucket not in self.buckets:  # what SeaweedFS answers for a missing bucket
            raise client_error(missing_code, 404)
        data = self._bucket(bucket)
        stale = self._stale.get((bucket, field))
        if stale and stale[0] > 0:
            stale[0] -= 1
            value = stale[1]
        else:
            value = data.get(field)
        if value is None:
            raise client_error(missing_code, 404)
        return value

    def _put(self, bucket, field, value, setting):
        self._call(f"put_{field}")
        if setting in self.unsupported:
            raise client_error("NotImplemented", 501)
        data = self._bucket(bucket)
        if self.lag:
            self._stale[(bucket, field)] = [self.lag, data.get(field)]
        data[field] = value
        return {}

    # S3
    def can_paginate(self, name):
        return name == "list_buckets"

    def get_paginator(self, name):
        self._call(f"paginate_{name}")
        table = {"list_buckets": (lambda: {"Buckets": [{"Name": n} for n in self.buckets]}, "Buckets"),
                 "list_users": (lambda: {"Users": [{"UserName": n} for n in self.users]}, "Users"),
                 "list_access_keys": (lambda UserName: {"AccessKeyMetadata": [
                     {"AccessKeyId": k} for k in self.users[UserName]["keys"]]}, "AccessKeyMetadata"),
                 "list_user_policies": (lambda UserName: {"PolicyNames": list(self.users[UserName]["policies"])},
                                        "PolicyNames"),
                 "list_multipart_uploads": (lambda Bucket: {"Uploads": []}, "Uploads")}
        func, key = table[name]
        return Paginator(func, key)

    def head_bucket(self, Bucket):
        self._call("head_bucket")
        if Bucket not in self.buckets:
            raise client_error("404", 404)
        return {}

    def get_bucket_location(self, Bucket):
        self._call("get_location")
        self._bucket(Bucket)
        return {"LocationConstraint": None}

    def create_bucket(self, Bucket, **_kwargs):
        self._call("create_bucket")
        if Bucket in self.buckets:
            raise client_error("BucketAlreadyOwnedByYou", 409)
        self.buckets[Bucket] = {"objects": []}
        return {}

    def delete_bucket(self, Bucket):
        self._call("delete_bucket")
        self._bucket(Bucket)
        del self.buckets[Bucket]
        return {}

    def get_bucket_versioning(self, Bucket):
        self._call("get_versioning")
        status = self._bucket(Bucket).get("versioning")
        return {"Status": status} if status else {}

    def put_bucket_versioning(self, Bucket, VersioningConfiguration):
        return self._put(Bucket, "versioning", VersioningConfiguration["Status"], "versioning")

    def get_bucket_encryption(self, Bucket):
        return {"ServerSideEncryptionConfiguration": self._get(
            Bucket, "encryption", "ServerSideEncryptionConfigurationNotFoundError", "encryption")}

    def put_bucket_encryption(self, Bucket, ServerSideEncryptionConfiguration):
        return self._put(Bucket, "encryption", ServerSideEncryptionConfiguration, "encryption")

    def delete_bucket_encryption(self, Bucket):
        return self._put(Bucket, "encryption", None, "encryption")

    def get_bucket_lifecycle_configuration(self, Bucket):
        return {"Rules": self._get(Bucket, "lifecycle", "NoSuchLifecycleConfiguration", "lifecycle")}

    def put_bucket_lifecycle_configuration(self, Bucket, LifecycleConfiguration):
        return self._put(Bucket, "lifecycle", LifecycleConfiguration["Rules"], "lifecycle")

    def delete_bucket_lifecycle(self, Bucket):
        return self._put(Bucket, "lifecycle", None, "lifecycle")

    def get_bucket_tagging(self, Bucket):
        return {"TagSet": self._get(Bucket, "tags", "NoSuchTagSet", "tags")}

    def put_bucket_tagging(self, Bucket, Tagging):
        return self._put(Bucket, "tags", Tagging["TagSet"], "tags")

    def delete_bucket_tagging(self, Bucket):
        return self._put(Bucket, "tags", None, "tags")

    def get_bucket_policy(self, Bucket):
        return {"Policy": self._get(Bucket, "policy", "NoSuchBucketPolicy", "policy")}

    def put_bucket_policy(self, Bucket, Policy):
        return self._put(Bucket, "policy", Policy, "policy")

    def delete_bucket_policy(self, Bucket):
        return self._put(Bucket, "policy", None, "policy")

    def get_public_access_block(self, Bucket):
        return {"PublicAccessBlockConfiguration": self._get(
            Bucket, "pab", "NoSuchPublicAccessBlockConfiguration", "public_access_block")}

    def put_public_access_block(self, Bucket, PublicAccessBlockConfiguration):
        return self._put(Bucket, "pab", PublicAccessBlockConfiguration, "public_access_block")

    def list_object_versions(self, Bucket, MaxKeys=1000):
        self._call("list_object_versions")
        objects = self._bucket(Bucket)["objects"][:MaxKeys]
        return {"Versions": [{"Key": k, "VersionId": v} for k, v in objects]}

    def delete_objects(self, Bucket, Delete):
        self._call("delete_objects")
        assert len(Delete["Objects"]) <= 1000
        gone = {(o["Key"], o["VersionId"]) for o in Delete["Objects"]}
        data = self._bucket(Bucket)
        data["objects"] = [o for o in data["objects"] if o not in gone]
        return {}

    # IAM
    def _user(self, name):
        if name not in self.users:
            raise client_error("NoSuchEntity", 404)
        return self.users[name]

    def get_user(self, UserName):
        self._call("get_user")
        self._user(UserName)
        return {"User": {"UserName": UserName}}

    def create_user(self, UserName):
        self._call("create_user")
        self.users[UserName] = {"keys": [], "policies": {}}
        return {}

    def delete_user(self, UserName):
        self._call("delete_user")
        self._user(UserName)
        del self.users[UserName]
        return {}

    def create_access_key(self, UserName):
        self._call("create_access_key")
        self._key_serial += 1
        key_id = f"AKIATEST{self._key_serial:04d}"
        self._user(UserName)["keys"].append(key_id)
        return {"AccessKey": {"AccessKeyId": key_id, "SecretAccessKey": f"topsecret{self._key_serial}xyzXYZ"}}

    def delete_access_key(self, UserName, AccessKeyId):
        self._call("delete_access_key")
        self._user(UserName)["keys"].remove(AccessKeyId)
        return {}

    def get_user_policy(self, UserName, PolicyName):
        self._call("get_user_policy")
        policies = self._user(UserName)["policies"]
        if PolicyName not in policies:
            raise client_error("NoSuchEntity", 404)
        return {"PolicyDocument": json.loads(policies[PolicyName])}

    def put_user_policy(self, UserName, PolicyName, PolicyDocument):
        self._call("put_user_policy")
        self._user(UserName)["policies"][PolicyName] = PolicyDocument
        return {}

    def delete_user_policy(self, UserName, PolicyName):
        self._call("delete_user_policy")
        del self._user(UserName)["policies"][PolicyName]
        return {}


class FakeConnection:
    where = ENDPOINT
    iam_where = ENDPOINT
    region = "us-east-1"

    def __init__(self, store):
        self.s3 = store
        self.iam = store


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeSecretStore:
    """Where tenant_bucket puts a new key's secret (the tenant's Kubernetes Secret, in real runs)."""

    def __init__(self, fail=False):
        self.stored = {}
        self.fail = fail

    def __call__(self, tenant, key_id, secret):
        if self.fail:
            raise RuntimeError("the API server is down")
        self.stored[tenant] = (key_id, secret)
        return f"harbor-{tenant}/{tenant}-storage"


def backend_for(store, wait_timeout=5, secrets=None):
    clock = FakeClock()
    return s3.BucketBackend(FakeConnection(store), concurrency=4, wait_timeout=wait_timeout, sleep=clock.sleep,
                            clock=clock, store_secret=FakeSecretStore() if secrets is None else secrets)


def spec(tenant="acme", state="present", **params):
    params.setdefault("purge_tags", True)
    return s3.BucketSpec(dict(params, tenant=tenant), state)


def converge(backend, specs, apply=True):
    state = backend.read(specs)
    plans = []
    for one in specs:
        try:
            plan = backend.plan(one, state[one.key])
        except FleetError as exc:
            plan = None
            plans.append((one.key, str(exc)))
            continue
        if apply:
            apply_plan(plan, None)
        plans.append(plan)
    return plans


ALL_SETTINGS = dict(versioning="enabled", encryption=True, abort_incomplete_multipart_days=7,
                    noncurrent_version_expiration_days=30, tags={"team": "a", "n": 1},
                    policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                        "Effect": "Deny", "Principal": "*", "Action": ["s3:*"],
                        "Resource": ["arn:aws:s3:::${bucket}", "arn:aws:s3:::${bucket}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": False}}}]}))


# --------------------------------------------------------------------------- pure helpers

def test_policy_normalisation_ignores_order_single_item_lists_and_condition_types():
    a = {"Version": "2012-10-17", "Statement": [{"Action": ["s3:GetObject"], "Effect": "Allow", "Principal": "*",
                                                 "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b"],
                                                 "Condition": {"NumericLessThan": {"s3:max-keys": 10}}}]}
    b = {"Statement": {"Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::b"], "Principal": "*",
                       "Effect": "Allow", "Action": "s3:GetObject",
                       "Condition": {"NumericLessThan": {"s3:max-keys": "10"}}}, "Version": "2012-10-17"}
    assert s3_client.normalise_policy(a) == s3_client.normalise_policy(b)
    assert s3_client.normalise_policy(dict(a, Version="2008-10-17")) != s3_client.normalise_policy(b)


def test_bucket_placeholder_is_replaced_everywhere():
    policy = {"Statement": [{"Resource": ["arn:aws:s3:::${bucket}", "arn:aws:s3:::${bucket}/*"]}]}
    assert s3_client.substitute_bucket(policy, "harbor-acme") == {
        "Statement": [{"Resource": ["arn:aws:s3:::harbor-acme", "arn:aws:s3:::harbor-acme/*"]}]}


def test_tenant_policy_covers_only_the_bucket_and_its_objects():
    policy = s3_client.tenant_policy("harbor-acme", s3_iam.DEFAULT_CREDENTIAL_ACTIONS)
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:s3:::harbor-acme", "arn:aws:s3:::harbor-acme/*"]
    assert s3_client.tenant_policy("b", ["s3:GetObject"], s3_client.arn_partition("cn-north-1"))["Statement"][0]["Resource"][0] \
        == "arn:aws-cn:s3:::b"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8333", "https://s3.example.net", "https://s3.example.net/"])
def test_good_endpoint_urls(url):
    assert s3_client.validate_endpoint_url(url, "endpoint_url") == url


@pytest.mark.parametrize("url", ["127.0.0.1:8333", "ftp://host", "http://", "http://host:port",
                                 "https://host/some/path", "http://host?x=1"])
def test_bad_endpoint_urls_name_the_field(url):
    with pytest.raises(TenantInputError) as err:
        s3_client.validate_endpoint_url(url, "endpoint_url")
    assert err.value.field == "endpoint_url"


def test_connection_checks_its_input_without_creating_a_client():
    with pytest.raises(TenantInputError) as err:
        s3_client.S3Connection({"endpoint_url": "http://h:1", "iam_endpoint_url": "nope"})
    assert err.value.field == "iam_endpoint_url"
    with pytest.raises(TenantInputError) as err:
        s3_client.S3Connection({"endpoint_url": "http://h:1", "access_key": "AKIA"})
    assert err.value.field == "secret_key"
    with pytest.raises(TenantInputError) as err:
        s3_client.S3Connection({"endpoint_url": "http://h:1", "ca_bundle": "/nonexistent/ca.pem"})
    assert err.value.field == "ca_bundle"
    conn = s3_client.S3Connection({"endpoint_url": "http://h:1", "retry_mode": "adaptive", "max_attempts": 7})
    assert conn.iam_endpoint_url == "http://h:1"
    config = conn.config("s3")
    assert config.retries == {"mode": "adaptive", "max_attempts": 7}
    assert config.s3 == {"addressing_style": "auto"}


def test_error_codes_from_s3_and_from_s3_style_iam_bodies():
    assert s3_client.error_code(client_error("NoSuchBucket", 404)) == "NoSuchBucket"
    assert s3_client.error_code(client_error("InvalidAccessKeyId", 403, top_level=True)) == "InvalidAccessKeyId"
    assert s3_client.is_not_supported(client_error("NotImplemented", 501))
    assert s3_client.is_not_supported(client_error("Whatever", 501))
    assert not s3_client.is_not_supported(client_error("AccessDenied", 403))


def test_error_descriptions_name_the_endpoint_and_never_guess_secrets():
    text = describe_error(client_error("SignatureDoesNotMatch", 403, "ListBuckets"), ENDPOINT)
    assert ENDPOINT in text and "refused the credentials" in text and "secret_key" in text
    text = describe_error(EndpointConnectionError(endpoint_url=ENDPOINT), ENDPOINT)
    assert "unreachable" in text


# --------------------------------------------------------------------------- input validation

@pytest.mark.parametrize("params, field", [
    ({"bucket": "Not_A_Bucket"}, "bucket"),
    ({"bucket": "192.168.0.1"}, "bucket"),
    ({"bucket": "xn--bucket"}, "bucket"),
    ({"abort_incomplete_multipart_days": -1}, "abort_incomplete_multipart_days"),
    ({"tags": {f"k{i}": "v" for i in range(51)}}, "tags"),
    ({"tags": {"aws:reserved": "v"}}, "tags"),
    ({"policy": "{not json"}, "policy"),
    ({"policy": "[1, 2]"}, "policy"),
    ({"policy": '{"Version": "2012-10-17"}'}, "policy"),
    ({"credentials": False, "rotate_credentials": True}, "credentials"),
    ({"delete_access_keys": ["not a key!"]}, "delete_access_keys"),
    ({"credentials": True, "credentials_actions": ["iam:CreateUser"]}, "credentials_actions"),
])
def test_bad_input_is_refused_naming_the_field(params, field):
    with pytest.raises(TenantInputError) as err:
        spec(**params)
    assert err.value.field == field


def test_bucket_names_come_from_the_tenant_model():
    assert spec().bucket == "harbor-acme" and spec().iam_user == "harbor-acme"
    assert s3.BucketSpec({"tenant": "acme"}, "present", bucket_prefix="").bucket == "acme"
    assert spec(bucket="custom-name").bucket == "custom-name"
    with pytest.raises(TenantInputError) as err:
        s3.BucketSpec({"tenant": "acme"}, "present", bucket_prefix="UPPER-")
    assert err.value.field == "bucket_prefix"


def test_two_tenants_cannot_share_a_bucket():
    with pytest.raises(TenantInputError) as err:
        s3.check_unique_buckets([spec("a", bucket="same-bucket"), spec("b", bucket="same-bucket")])
    assert err.value.field == "bucket"


def test_rotation_and_key_deletion_imply_credentials():
    assert spec(rotate_credentials=True).credentials is True
    assert spec(delete_access_keys=["AKIA1234"]).credentials is True
    assert spec().manages_iam is False
    assert spec(state="absent").manages_iam is True
    assert spec(state="absent", credentials=False).manages_iam is False


# --------------------------------------------------------------------------- settings

def test_lifecycle_keeps_foreign_rules_and_owns_its_own_by_id():
    foreign = {"ID": "keep-me", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}
    ours = s3_settings.Lifecycle.rule("abort_incomplete_multipart_days", 3)
    setting = s3_settings.Lifecycle()
    desired = setting.desired(spec(abort_incomplete_multipart_days=7), [foreign, ours])
    assert foreign in desired and s3_settings.Lifecycle.rule("abort_incomplete_multipart_days", 7) in desired
    assert setting.view(desired) == {"abort_incomplete_multipart_days": 7, "noncurrent_version_expiration_days": None,
                                     "other_rules": ["keep-me"]}
    assert setting.desired(spec(abort_incomplete_multipart_days=0), [foreign, ours]) == [foreign]
    unset = setting.desired(spec(noncurrent_version_expiration_days=5), [ours])
    assert ours in unset and len(unset) == 2


def test_a_hand_edited_module_rule_is_rewritten():
    edited = dict(s3_settings.Lifecycle.rule("abort_incomplete_multipart_days", 7), Status="Disabled")
    view = s3_settings.Lifecycle().view([edited])
    assert view["abort_incomplete_multipart_days"] != 7


def test_tags_purge_or_merge():
    setting = s3_settings.Tags()
    assert setting.desired(spec(tags={"a": "1"}), {"a": "0", "b": "2"}) == {"a": "1"}
    assert setting.desired(spec(tags={"a": "1"}, purge_tags=False), {"a": "0", "b": "2"}) == {"a": "1", "b": "2"}
    assert spec(tags={"n": 1, "t": True}).tags == {"n": "1", "t": "true"}


# --------------------------------------------------------------------------- read, plan, apply

def test_create_with_every_setting_then_a_rerun_changes_nothing():
    store = FakeStore()
    backend = backend_for(store)
    specs = [spec(credentials=True, **ALL_SETTINGS)]
    (plan,) = converge(backend, specs)
    assert [c.action for c in plan.changes][0] == "create bucket harbor-acme"
    bucket = store.buckets["harbor-acme"]
    assert bucket["versioning"] == "Enabled"
    assert json.loads(bucket["policy"])["Statement"][0]["Resource"][0] == "arn:aws:s3:::harbor-acme"
    assert plan.result["access_key_id"] == "AKIATEST0001"
    assert plan.result["access_keys"] == ["AKIATEST0001"]
    (again,) = converge(backend_for(store), specs)
    assert again.changes == []


def test_a_new_secret_goes_to_the_secret_store_and_never_into_the_result():
    store, secrets = FakeStore(), FakeSecretStore()
    (plan,) = converge(backend_for(store, secrets=secrets), [spec(credentials=True)])
    key_id, secret = secrets.stored["acme"]
    result = plan.as_result()
    assert result["access_key_id"] == key_id and result["secret_stored_in"] == "harbor-acme/acme-storage"
    assert secret not in json.dumps(result) and secret not in json.dumps(plan.diff())


def test_a_key_whose_secret_cannot_be_stored_is_taken_back():
    store = FakeStore()
    backend = backend_for(store, secrets=FakeSecretStore(fail=True))
    (plan,) = plan_all(backend, [spec(credentials=True)], backend.read([spec(credentials=True)]))
    with pytest.raises(FleetError, match="was deleted again: the API server is down"):
        apply_plan(plan, None)
    assert store.users["harbor-acme"]["keys"] == []


def test_a_key_without_a_secret_store_is_refused_before_any_change():
    store = FakeStore()
    backend = s3.BucketBackend(FakeConnection(store), concurrency=1, wait_timeout=0)
    (plan,) = plan_all(backend, [spec(credentials=True)], backend.read([spec(credentials=True)]))
    assert plan.failed and plan.result["field"] == "secret_store" and plan.changes == []
    assert store.buckets == {}


def test_check_mode_plan_equals_what_the_real_run_does():
    store = FakeStore()
    specs = [spec(**ALL_SETTINGS)]
    (check,) = converge(backend_for(store), specs, apply=False)
    assert store.buckets == {} and not any(c.startswith(("put_", "create_")) for c in store.calls)
    (real,) = converge(backend_for(store), specs)
    assert [c.action for c in check.changes] == [c.action for c in real.changes]
    assert [c.record for c in check.changes] == [c.record for c in real.changes]
    assert check.diff() == real.diff()


def test_a_no_op_rerun_reads_only_what_was_asked_for_with_one_listing():
    store = FakeStore()
    specs = [spec(f"t{i}", versioning="enabled", tags={"a": "b"}) for i in range(20)]
    converge(backend_for(store), specs)
    store.calls.clear()
    plans = converge(backend_for(store), specs)
    assert all(not p.changes for p in plans)
    assert sorted(set(store.calls)) == ["get_tags", "get_versioning", "paginate_list_buckets"]
    assert store.calls.count("paginate_list_buckets") == 1
    assert len(store.calls) == 1 + 20 * 2


def test_a_few_tenants_are_read_without_listing_every_bucket():
    store = FakeStore()
    specs = [spec("a", versioning="enabled"), spec("b", versioning="enabled")]
    converge(backend_for(store), specs)
    store.calls.clear()
    converge(backend_for(store), specs)
    assert sorted(store.calls) == ["get_location", "get_location", "get_versioning", "get_versioning"]


def test_a_missing_bucket_is_created_even_when_its_first_setting_reads_as_unset():
    store = FakeStore()
    (plan,) = converge(backend_for(store), [spec(encryption=True)])
    assert [c.action for c in plan.changes] == ["create bucket harbor-acme", "set encryption of harbor-acme"]
    assert store.buckets["harbor-acme"]["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}


def test_an_unsupported_setting_nobody_asked_for_is_never_touched():
    store = FakeStore(unsupported=("public_access_block", "lifecycle"))
    plans = converge(backend_for(store), [spec(f"t{i}", versioning="enabled") for i in range(10)])
    assert all(p.changes for p in plans)
    assert not any("pab" in c or "lifecycle" in c for c in store.calls)


def test_an_unsupported_requested_setting_fails_that_tenant_before_anything_is_created():
    store = FakeStore()
    specs = [spec(f"t{i}", versioning="enabled") for i in range(9)]
    specs.append(spec("odd", versioning="enabled", public_access_block={"block_public_acls": True}))
    plans = converge(backend_for(store), specs)
    failed = [p for p in plans if isinstance(p, tuple)]
    assert len(failed) == 1 and failed[0][0] == "odd"
    assert "public_access_block" in failed[0][1] and ENDPOINT in failed[0][1]
    assert "harbor-odd" not in store.buckets and len(store.buckets) == 9
    assert store.calls.count("get_pab") == 1  # probed once


def test_the_probe_result_is_shared_by_existing_buckets():
    store = FakeStore()
    for name in ("harbor-a", "harbor-b"):
        store.buckets[name] = {"objects": []}
    plans = converge(backend_for(store), [spec(n, public_access_block={}) for n in ("a", "b")])
    assert all(isinstance(p, tuple) and "public_access_block" in p[1] for p in plans)
    assert store.calls.count("get_pab") <= 2


def test_writes_wait_until_the_store_shows_them():
    store = FakeStore(lag=2)
    backend = backend_for(store)
    converge(backend, [spec(versioning="enabled")])
    store.calls.clear()
    (plan,) = converge(backend, [spec(tags={"a": "b"})])
    assert plan.changes
    assert store.calls.count("get_tags") == 1 + 3  # the read, then two stale re-reads and the visible one


def test_wait_timeout_zero_reads_nothing_back():
    store = FakeStore(lag=2)
    backend = backend_for(store, wait_timeout=0)
    converge(backend, [spec(versioning="enabled")])
    store.calls.clear()
    (plan,) = converge(backend, [spec(tags={"a": "b"})])
    assert plan.changes
    assert store.calls.count("get_tags") == 1  # the read before planning only


def test_a_write_that_never_shows_fails_with_a_clear_message():
    store = FakeStore(lag=10 ** 6)
    backend = backend_for(store, wait_timeout=2)
    store.buckets["harbor-acme"] = {"objects": []}
    with pytest.raises(FleetError, match="not visible after 2s"):
        converge(backend, [spec(tags={"a": "b"})])


# --------------------------------------------------------------------------- credentials

def test_rotation_then_retirement():
    store = FakeStore()
    converge(backend_for(store), [spec(credentials=True)])
    assert store.users["harbor-acme"]["keys"] == ["AKIATEST0001"]
    (rotated,) = converge(backend_for(store), [spec(rotate_credentials=True)])
    assert rotated.result["access_key_id"] == "AKIATEST0002"
    assert store.users["harbor-acme"]["keys"] == ["AKIATEST0001", "AKIATEST0002"]
    (retired,) = converge(backend_for(store), [spec(delete_access_keys=["AKIATEST0001", "AKIAGONE0000"])])
    assert "access_key_id" not in retired.result and retired.result["access_keys"] == ["AKIATEST0002"]
    assert store.users["harbor-acme"]["keys"] == ["AKIATEST0002"]
    (again,) = converge(backend_for(store), [spec(delete_access_keys=["AKIATEST0001"])])
    assert again.changes == []


def test_a_changed_user_policy_is_rewritten():
    store = FakeStore()
    converge(backend_for(store), [spec(credentials=True)])
    (plan,) = converge(backend_for(store), [spec(credentials=True, credentials_actions=["s3:GetObject"])])
    assert [c.record.split()[0] for c in plan.changes] == ["iam:PutUserPolicy"]


# --------------------------------------------------------------------------- absent

def test_a_non_empty_bucket_is_refused_without_force():
    store = FakeStore()
    store.buckets["harbor-acme"] = {"objects": [("k", "v1")]}
    (result,) = converge(backend_for(store), [spec(state="absent", credentials=False)])
    assert isinstance(result, tuple) and "force" in result[1]
    assert "harbor-acme" in store.buckets


def test_force_deletes_every_version_in_batches_of_1000_then_the_user():
    store = FakeStore()
    store.buckets["harbor-acme"] = {"objects": [(f"k{i % 7}", f"v{i}") for i in range(2500)]}
    converge(backend_for(store), [spec(credentials=True)])
    (plan,) = converge(backend_for(store), [spec(state="absent", force=True)])
    assert store.calls.count("delete_objects") == 3
    assert "harbor-acme" not in store.buckets and store.users == {}
    assert plan.before["credentials"]["iam_user"] == "harbor-acme" and plan.after == {
        "bucket": "harbor-acme", "exists": False, "credentials": None}
    (again,) = converge(backend_for(store), [spec(state="absent", force=True)])
    assert again.changes == []


def test_absent_skips_a_store_without_iam_unless_credentials_were_asked_for():
    store = FakeStore()

    def no_iam(**_kwargs):
        raise client_error("NotImplemented", 501)

    store.get_user = no_iam
    (plan,) = converge(backend_for(store), [spec(state="absent")])
    assert plan.result["iam"].startswith("skipped")
    (failed,) = converge(backend_for(store), [spec(state="absent", credentials=True)])
    assert isinstance(failed, tuple) and "IAM API" in failed[1]


# --------------------------------------------------------------------------- whose IAM user it is

def fleet_spec(prefix, state="present", **params):
    return s3.BucketSpec(dict(params, tenant="acme", purge_tags=True), state, bucket_prefix=prefix)


def test_iam_users_are_named_per_fleet_like_their_buckets():
    store = FakeStore()
    for prefix in ("one-", "two-"):  # two fleets in one account, each with its own bucket prefix
        converge(backend_for(store), [fleet_spec(prefix, credentials=True)])
    assert sorted(store.users) == ["one-acme", "two-acme"]
    assert "arn:aws:s3:::one-acme" in store.users["one-acme"]["policies"][s3_iam.POLICY_NAME]
    # removing the tenant from fleet one leaves fleet two's user and key alone
    converge(backend_for(store), [fleet_spec("one-", state="absent")])
    assert sorted(store.users) == ["two-acme"] and store.users["two-acme"]["keys"] == ["AKIATEST0002"]


@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_user_of_that_name_without_the_marker_is_not_touched(state):
    store = FakeStore()
    store.users["harbor-acme"] = {"keys": ["AKIAOTHER0001"], "policies": {"theirs": json.dumps({"Statement": []})}}
    store.buckets["harbor-acme"] = {"objects": []}
    (result,) = converge(backend_for(store), [spec(state=state, credentials=True)])
    assert isinstance(result, tuple) and "IAM user harbor-acme exists but was not created for bucket" in result[1]
    assert store.users["harbor-acme"] == {"keys": ["AKIAOTHER0001"], "policies": {"theirs": json.dumps(
        {"Statement": []})}}
    assert "harbor-acme" in store.buckets  # nothing else was done for the tenant either
    # another fleet's marker (its policy names another bucket) is not ours either
    store.users["harbor-acme"]["policies"] = {s3_iam.POLICY_NAME: json.dumps(
        s3_client.tenant_policy("other-acme", s3_iam.DEFAULT_CREDENTIAL_ACTIONS))}
    (result,) = converge(backend_for(store), [spec(state=state, credentials=True)])
    assert isinstance(result, tuple) and "not this fleet's" in result[1]


def test_an_empty_user_left_by_a_stopped_run_is_taken_over():
    store = FakeStore()
    store.users["harbor-acme"] = {"keys": [], "policies": {}}
    (plan,) = converge(backend_for(store), [spec(credentials=True)])
    assert not isinstance(plan, tuple) and store.users["harbor-acme"]["keys"] == ["AKIATEST0001"]


def test_a_user_with_the_name_from_before_per_fleet_names_is_kept():
    store = FakeStore()
    converge(backend_for(store), [spec(credentials=True, bucket="mine-acme")])  # bucket named by hand, user harbor-
    store.users["harbor-acme"]["policies"][s3_iam.POLICY_NAME] = json.dumps(
        s3_client.tenant_policy("mine-acme", s3_iam.DEFAULT_CREDENTIAL_ACTIONS))
    (again,) = converge(backend_for(store), [fleet_spec("mine-", credentials=True)])
    assert again.changes == [] and again.result["iam_user"] == "harbor-acme"
    assert sorted(store.users) == ["harbor-acme"]
    converge(backend_for(store), [fleet_spec("mine-", state="absent")])
    assert store.users == {}
