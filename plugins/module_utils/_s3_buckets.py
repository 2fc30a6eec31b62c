# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 buckets: the tenant bucket's settings, bulk reads, the plan, forced deletion, the eventual-consistency wait.

Reads are bulk and minimal: one ``ListBuckets`` (or, for a handful of tenants, one read per bucket) decides which
buckets exist, and only the settings a tenant asks to manage are read, so a no-op run of N buckets managing k
settings costs 1 + N*k calls. A store that answers NotImplemented for a setting nobody asked for is never asked.
"""

from __future__ import annotations

import json
import time

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, run_batch
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, describe_error, poll)
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import (
    NO_SUCH_BUCKET, US_EAST_1, ClientError, arn_partition, error_code, is_not_supported, substitute_bucket,
    tenant_policy)
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_iam import ACTION_RE, DEFAULT_CREDENTIAL_ACTIONS, KEY_ID_RE, IamIdentities
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_settings import RULE_IDS, SETTING_OPTIONS, SETTINGS
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import Tenant, validate_bucket_name

# Below this many tenants, one GetBucketLocation per bucket tells whether it exists; from it on, one ListBuckets.
LIST_BUCKETS_FROM = 8
DELETE_BATCH = 1000


# --------------------------------------------------------------------------- desired state

class BucketSpec:
    """What one tenant should have, validated before any call is made."""

    def __init__(self, params, state, bucket_prefix="harbor-", region=US_EAST_1):
        self.tenant = Tenant(params["tenant"], bucket_prefix)
        self.key = self.tenant.id
        self.state = state
        self.bucket = validate_bucket_name(params["bucket"], "bucket") if params.get("bucket") else self.tenant.bucket
        self.iam_user = self.tenant.iam_user
        self.legacy_iam_user = self.tenant.legacy_iam_user
        self.partition = arn_partition(region)
        self.versioning = params.get("versioning")
        self.encryption = params.get("encryption")
        for option in RULE_IDS:
            value = params.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TenantInputError(option, f"{value!r} is not a number of days")
            if value is not None and value < 0:
                raise TenantInputError(option, "must be 0 (remove the rule) or a number of days")
            setattr(self, option, value)
        self.tags = _check_tags(params.get("tags"))
        self.purge_tags = params.get("purge_tags") is not False
        self.policy = _parse_policy(params.get("policy"))
        self.public_access_block = params.get("public_access_block")
        self.force = bool(params.get("force"))
        credentials = params.get("credentials")
        self.rotate = bool(params.get("rotate_credentials"))
        self.delete_keys = _list_of(params, "delete_access_keys")
        for key_id in self.delete_keys:
            if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
                raise TenantInputError("delete_access_keys", f"{key_id!r} is not an access key id")
        if credentials is False and (self.rotate or self.delete_keys):
            raise TenantInputError("credentials", "is false, but rotate_credentials or delete_access_keys ask to "
                                                  "manage the IAM user's keys")
        self.credentials = credentials if credentials is not None else (
            True if (self.rotate or self.delete_keys) else None)
        actions = _list_of(params, "credentials_actions") or list(DEFAULT_CREDENTIAL_ACTIONS)
        for action in actions:
            if not isinstance(action, str) or not ACTION_RE.fullmatch(action):
                raise TenantInputError("credentials_actions", f"{action!r} is not an S3 action (s3:Name, wildcards "
                                                              "allowed); the policy only ever covers the bucket")
        self.credentials_actions = list(actions)

    @property
    def manages_iam(self):
        """present: only with credentials; absent: unless credentials is false."""
        if self.state == "absent":
            return self.credentials is not False
        return bool(self.credentials)

    def policy_for(self, bucket):
        if not self.policy:
            return None
        return substitute_bucket(self.policy, bucket)

    def desired_user_policy(self):
        return tenant_policy(self.bucket, self.credentials_actions, self.partition)

    def requested_settings(self):
        if self.state == "absent":
            return []
        return [setting for setting in SETTINGS if setting.requested(self)]


def _list_of(params, option):
    value = params.get(option)
    if value is not None and not isinstance(value, list):
        raise TenantInputError(option, "must be a list")
    return list(value or [])


def _check_tags(tags):
    if tags is None:
        return None
    if not isinstance(tags, dict):
        raise TenantInputError("tags", "must be a dictionary")
    if len(tags) > 50:
        raise TenantInputError("tags", f"S3 allows at most 50 tags on a bucket, not {len(tags)}")
    checked = {}
    for key, value in tags.items():
        key = str(key)
        value = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        if not key or len(key) > 128 or key.lower().startswith("aws:"):
            raise TenantInputError("tags", f"tag key {key!r} must be 1-128 characters and not start with 'aws:'")
        if len(value) > 256:
            raise TenantInputError("tags", f"the value of tag {key!r} is longer than 256 characters")
        checked[key] = value
    return checked


def _parse_policy(value):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise TenantInputError("policy", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TenantInputError("policy", "must be a JSON object (a policy document), or {} to remove the policy")
    if value and "Statement" not in value:
        raise TenantInputError("policy", "a policy document needs a Statement")
    return value


def check_unique_buckets(specs):
    seen = {}
    for spec in specs:
        if spec.bucket in seen:
            raise TenantInputError("bucket", f"tenants {seen[spec.bucket]!r} and {spec.key!r} both use bucket "
                                             f"{spec.bucket!r}")
        seen[spec.bucket] = spec.key
    return specs


# --------------------------------------------------------------------------- actual state

class BucketState:
    """What the store has for one tenant."""

    def __init__(self, exists=None):
        self.exists = exists
        self.settings = {}
        self.unsupported = {}   # setting name -> message
        self.empty = None
        self.error = None
        self.iam = None


class _ReadItem:
    """A run_batch item for the per-tenant read phase."""

    def __init__(self, spec, state):
        self.key = spec.key
        self.spec = spec
        self.state = state
        self.error = None
        self.skipped = False


# --------------------------------------------------------------------------- the backend


class BucketBackend:
    """read → plan → apply for tenant buckets and IAM users; one instance per module run."""

    record_key = "calls"

    def __init__(self, connection, concurrency=8, wait_timeout=60, sleep=time.sleep, clock=time.monotonic,
                 store_secret=None):
        self.conn = connection
        self.iam = IamIdentities(connection, self.wait_until, store_secret)
        self.concurrency = concurrency
        self.wait_timeout = wait_timeout
        self._sleep = sleep
        self._clock = clock
        self.unsupported = {}   # setting name -> message, learned once per run (capability probing)

    def describe_error(self, exc):
        return describe_error(exc, self.conn.where)

    # ----------------------------------------------------------------- read

    def read(self, specs):
        """Existence in bulk, then only the requested settings of existing buckets, over the batch concurrency."""
        specs = list(specs)
        states = {spec.key: BucketState() for spec in specs}
        if len(specs) >= LIST_BUCKETS_FROM:
            try:
                names = self._list_buckets()
            except Exception as exc:
                raise FleetError(self.describe_error(exc)) from None
            for spec in specs:
                states[spec.key].exists = spec.bucket in names
        iam_specs = [spec for spec in specs if spec.manages_iam]
        users = None
        if len(iam_specs) >= LIST_BUCKETS_FROM:
            users = self.iam.list_users(iam_specs, states)
        items = [_ReadItem(spec, states[spec.key]) for spec in specs]
        run_batch(items, lambda item, _resource: self._read_tenant(item.spec, item.state, users),
                  concurrency=self.concurrency, describe_error=self.describe_error)
        for item in items:
            if item.error and not item.state.error:
                item.state.error = item.error
        self._probe_new_buckets(specs, states)
        return states

    def _list_buckets(self):
        s3 = self.conn.s3
        names = set()
        if s3.can_paginate("list_buckets"):
            pages = s3.get_paginator("list_buckets").paginate()
        else:  # pragma: no cover - botocore older than 1.35
            pages = [s3.list_buckets()]
        for page in pages:
            names.update(bucket["Name"] for bucket in page.get("Buckets", []))
        return names

    def _read_tenant(self, spec, state, users):
        if state.error:
            return
        if spec.state == "absent":
            self._read_absent(spec, state)
        else:
            self._read_settings(spec, state)
        if spec.manages_iam and state.iam is None and not state.error:
            self.iam.read(spec, state, users)

    def _read_settings(self, spec, state):
        s3 = self.conn.s3
        requested = spec.requested_settings()
        if state.exists is None:
            state.exists = self._bucket_located(spec.bucket)
        if not state.exists:
            return
        for setting in requested:
            if setting.name in state.settings or setting.name in state.unsupported:
                continue
            if setting.name in self.unsupported:
                state.unsupported[setting.name] = self.unsupported[setting.name]
                continue
            try:
                state.settings[setting.name] = setting.read(s3, spec.bucket)
            except ClientError as exc:
                if error_code(exc) in NO_SUCH_BUCKET:  # deleted since the listing
                    state.exists = False
                    state.settings.clear()
                    return
                if not is_not_supported(exc):
                    raise
                self._mark_unsupported(setting, exc, state)

    def _mark_unsupported(self, setting, exc, state):
        options = " / ".join(SETTING_OPTIONS[setting.name])
        message = (f"{setting.name} is not supported by the S3 endpoint {self.conn.where} (it answered "
                   f"{error_code(exc)}); leave {options} unset for this store")
        self.unsupported.setdefault(setting.name, message)
        state.unsupported[setting.name] = message

    def _probe_new_buckets(self, specs, states):
        """A setting requested only for buckets that do not exist yet has not been read anywhere: ask the store once
        (a GET on the missing bucket answers NotImplemented or NoSuchBucket), so check mode and the plan can tell
        an unsupported setting before anything is created."""
        wanted = {}
        for spec in specs:
            state = states[spec.key]
            if state.error or state.exists is not False or spec.state == "absent":
                continue
            for setting in spec.requested_settings():
                wanted.setdefault(setting.name, (setting, spec.bucket))
        read_somewhere = {name for state in states.values() for name in state.settings}
        for name, (setting, bucket) in wanted.items():
            if name in self.unsupported or name in read_somewhere:
                continue
            try:
                setting.fetch(self.conn.s3, bucket)
            except ClientError as exc:
                if is_not_supported(exc):
                    self._mark_unsupported(setting, exc, BucketState())
            except Exception:  # pylint: disable=broad-except
                pass  # inconclusive: the write will tell
        for spec in specs:
            state = states[spec.key]
            if state.exists is False and spec.state != "absent":
                for setting in spec.requested_settings():
                    if setting.name in self.unsupported:
                        state.unsupported[setting.name] = self.unsupported[setting.name]

    def _read_absent(self, spec, state):
        try:
            state.empty = self._is_empty(spec.bucket)
            state.exists = True
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_BUCKET:
                state.exists = False
                return
            raise

    # ----------------------------------------------------------------- plan

    def plan(self, spec, state):
        if state is None:
            state = BucketState(exists=False)
        if state.error:
            raise FleetError(state.error)
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result["bucket"] = spec.bucket
        if spec.state == "absent":
            self._plan_absent(spec, state, plan)
        else:
            self._plan_present(spec, state, plan)
        return plan

    def _plan_present(self, spec, state, plan):
        requested = spec.requested_settings()
        problems = [state.unsupported[s.name] for s in requested if s.name in state.unsupported]
        if problems:
            raise FleetError("; ".join(problems))
        plan.before = {"bucket": spec.bucket, "exists": bool(state.exists)}
        plan.after = {"bucket": spec.bucket, "exists": True}
        if not state.exists:
            plan.add(f"create bucket {spec.bucket}", lambda _r: self._create_bucket(spec.bucket),
                     f"s3:CreateBucket {spec.bucket}" + ("" if self.conn.region == US_EAST_1
                                                         else f" LocationConstraint={self.conn.region}"))
        for setting in requested:
            actual = state.settings[setting.name] if state.exists else setting.new_bucket_value()
            desired = setting.desired(spec, actual)
            if state.exists:
                plan.before[setting.name] = setting.view(actual)
            plan.after[setting.name] = setting.view(desired)
            if setting.view(desired) != setting.view(actual):
                plan.add(f"set {setting.name} of {spec.bucket}", self._writer(setting, spec, desired, actual),
                         setting.record(spec.bucket, desired))
        if spec.manages_iam:
            self.iam.plan(spec, state, plan)

    def _writer(self, setting, spec, desired, actual):
        def apply(_resource):
            s3 = self.conn.s3
            try:
                setting.write(s3, spec.bucket, spec, desired, actual)
            except ClientError as exc:
                if is_not_supported(exc):
                    options = " / ".join(SETTING_OPTIONS[setting.name])
                    raise FleetError(f"{setting.name} is not supported by the S3 endpoint {self.conn.where} (it "
                                     f"answered {error_code(exc)}); leave {options} unset for this store") from None
                raise FleetError(f"setting {setting.name} of bucket {spec.bucket}: "
                                 f"{describe_error(exc, self.conn.where)}") from None
            wanted = setting.view(desired)
            self.wait_until(lambda: setting.view(setting.read(s3, spec.bucket)) == wanted,
                            f"{setting.name} of bucket {spec.bucket}")
        return apply

    def _create_bucket(self, bucket):
        s3 = self.conn.s3
        kwargs = {"Bucket": bucket}
        if self.conn.region != US_EAST_1:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.conn.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == "BucketAlreadyExists":
                raise FleetError(f"bucket {bucket} already exists and belongs to someone else (bucket names are "
                                 "global on AWS): choose another bucket_prefix or bucket") from None
            if code != "BucketAlreadyOwnedByYou":
                raise FleetError(f"creating bucket {bucket}: {describe_error(exc, self.conn.where)}") from None
        self.wait_until(lambda: self._bucket_exists(bucket), f"bucket {bucket}")

    def _bucket_located(self, bucket):
        """Existence of one bucket without listing them all. A GET, unlike HEAD, tells a missing bucket from refused
        credentials; a setting's own read cannot stand in (SeaweedFS answers a missing bucket's encryption with
        "configuration not found")."""
        try:
            self.conn.s3.get_bucket_location(Bucket=bucket)
            return True
        except ClientError as exc:
            code = error_code(exc)
            if code in NO_SUCH_BUCKET:
                return False
            if code == "AccessDenied":
                raise FleetError(f"bucket {bucket}: access denied at {self.conn.where} (it belongs to another "
                                 "account, or the identity may not call GetBucketLocation)") from None
            raise

    def _bucket_exists(self, bucket):
        try:
            self.conn.s3.head_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_BUCKET:
                return False
            raise

    # ----------------------------------------------------------------- absent

    def _plan_absent(self, spec, state, plan):
        plan.before = {"bucket": spec.bucket, "exists": bool(state.exists)}
        plan.after = {"bucket": spec.bucket, "exists": False}
        if state.exists:
            plan.before["empty"] = state.empty
            if not state.empty and not spec.force:
                raise FleetError(f"bucket {spec.bucket} of tenant {spec.key} is not empty: set force: true to delete "
                                 "every object version and delete marker, then the bucket")
            if not state.empty:
                plan.add(f"delete every object version and delete marker in {spec.bucket}",
                         lambda _r: self._empty_bucket(spec.bucket),
                         f"s3:ListObjectVersions+DeleteObjects {spec.bucket} (batches of {DELETE_BATCH})")
            plan.add(f"delete bucket {spec.bucket}", lambda _r: self._delete_bucket(spec.bucket, spec.force),
                     f"s3:DeleteBucket {spec.bucket}")
        self.iam.plan_absent(spec, state.iam, plan)

    def _first_page(self, bucket, limit):
        """Up to ``limit`` object versions and delete markers (or objects, on stores without versioning)."""
        s3 = self.conn.s3
        try:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=limit)
            return [{"Key": item["Key"], "VersionId": item["VersionId"]}
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        except ClientError as exc:
            if not is_not_supported(exc):
                raise
        return [{"Key": item["Key"]} for item in s3.list_objects_v2(Bucket=bucket, MaxKeys=limit).get("Contents", [])]

    def _is_empty(self, bucket):
        return not self._first_page(bucket, 1)

    def _empty_bucket(self, bucket):
        """Delete every version and delete marker in batches of 1,000: list the first page, delete it, repeat (the
        listing restarts each time, so deletions never shift a pagination marker), then abort unfinished uploads."""
        s3 = self.conn.s3
        previous = None
        while True:
            batch = self._first_page(bucket, DELETE_BATCH)
            if not batch:
                break
            if batch == previous:
                raise FleetError(f"emptying bucket {bucket}: the store reports deleted objects again "
                                 f"(first: {batch[0]['Key']}); nothing more was deleted")
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = result.get("Errors") or []
            if errors:
                shown = ", ".join(f"{e.get('Key')} ({e.get('Code')})" for e in errors[:5])
                raise FleetError(f"emptying bucket {bucket}: {len(errors)} objects could not be deleted: {shown}")
            previous = batch
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def _delete_bucket(self, bucket, force):
        # Some stores (SeaweedFS) delete a bucket with everything in it: check again right before deleting.
        if not self._is_empty(bucket):
            raise FleetError(f"bucket {bucket} is not empty (objects were written since it was read"
                             + (" or emptied" if force else "") + "); nothing was deleted")
        try:
            self.conn.s3.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_BUCKET:
                raise FleetError(f"deleting bucket {bucket}: {describe_error(exc, self.conn.where)}") from None
        self.wait_until(lambda: not self._bucket_exists(bucket), f"deletion of bucket {bucket}")

    # ----------------------------------------------------------------- eventual consistency

    def wait_until(self, visible, what):
        """Re-read until a write is visible, for at most ``wait_timeout`` seconds of the monotonic clock; with 0 the
        store is trusted to be read-after-write consistent and nothing is re-read."""
        if not self.wait_timeout:
            return
        seen = poll(visible, bool, self.wait_timeout, interval=0.1, growth=2, clock=self._clock, sleep=self._sleep)[0]
        if not seen:
            raise FleetError(f"{what} was written but is not visible after {self.wait_timeout}s at "
                             f"{self.conn.where} (eventual consistency); run again to converge")
