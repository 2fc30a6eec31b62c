# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 IAM identities: one user per tenant, an inline policy limited to its bucket, and its access keys.

Used by the bucket backend (``_s3_buckets.py``) for tenants that manage credentials. A new key's secret goes to the
``store_secret`` callback (the tenant's Kubernetes Secret) and is never returned.

The user is named like the tenant's bucket (the fleet's bucket prefix + the tenant id), so two fleets sharing an
account never share a user. A user is the collection's to change or delete only when it carries the collection's
inline policy naming the tenant's bucket (the ownership marker, readable on every store with inline policies); a
user of that name without it (holding keys or other policies) belongs to someone else and is left alone, naming
it in the error.
"""

from __future__ import annotations

import json
import re

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, describe_error)
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import (
    NO_SUCH_ENTITY, ClientError, error_code, error_message, http_status, is_not_supported, is_client_error,
    normalise_policy)

POLICY_NAME = "harborfleet-tenant-bucket"
# What a registry's storage driver needs on its bucket, in action names both AWS and SeaweedFS accept
# (SeaweedFS refuses s3:ListBucketMultipartUploads and s3:ListMultipartUploadParts; s3:List* covers them on AWS).
DEFAULT_CREDENTIAL_ACTIONS = ("s3:GetBucketLocation", "s3:List*", "s3:GetObject", "s3:PutObject",
                              "s3:DeleteObject", "s3:AbortMultipartUpload")
NEW_KEY = "(new key)"
KEY_ID_RE = re.compile(r"[A-Za-z0-9]{4,128}")
ACTION_RE = re.compile(r"s3:[A-Za-z*]+")


class IamState:
    def __init__(self, exists=False, user=None):
        self.exists = exists
        self.user = user        # the user's name when it is not the tenant model's (a legacy name kept)
        self.keys = []          # access key ids
        self.policy = None      # the module's inline policy, as read
        self.policies = []      # every inline policy name (state=absent)
        self.unavailable = None  # why the IAM API could not be used (state=absent, credentials unset)


class IamIdentities:
    """Read, plan and write tenants' IAM users, policies and keys over one connection."""

    def __init__(self, connection, wait_until, store_secret=None):
        self.conn = connection
        self.wait_until = wait_until
        # store_secret(tenant id, access key id, secret) keeps a new key's secret where its consumer reads it (the
        # tenant's Kubernetes Secret); the secret itself is never returned.
        self.store_secret = store_secret

    def list_users(self, iam_specs, states):
        """IAM user names in bulk. When the IAM API fails, each tenant gets the error, or (state=absent without
        credentials, on a store with no IAM API) a note that IAM was skipped; the names are then an empty set."""
        try:
            names = set()
            for page in self.conn.iam.get_paginator("list_users").paginate():
                names.update(user["UserName"] for user in page.get("Users", []))
            return names
        except Exception as exc:  # pylint: disable=broad-except
            message = self.error(exc)
            for spec in iam_specs:
                state = states[spec.key]
                if spec.state == "absent" and spec.credentials is None and self.missing(exc):
                    state.iam = IamState()
                    state.iam.unavailable = message
                else:
                    state.error = message
            return set()

    def missing(self, exc):
        if is_client_error(exc):
            return is_not_supported(exc) or http_status(exc) in (404, 405)
        return False

    def error(self, exc):
        if is_client_error(exc) and self.missing(exc):
            return (f"credentials: the IAM API at {self.conn.iam_where} is not available ({error_code(exc)}); this "
                    "store cannot create per-tenant keys (set iam_endpoint_url if IAM lives elsewhere)")
        return "credentials: " + describe_error(exc, self.conn.iam_where)

    def read(self, spec, state, users):
        iam = self.conn.iam
        try:
            user = spec.iam_user
            exists = self.has_user(user, users)
            if not exists and spec.legacy_iam_user != user and self.has_user(spec.legacy_iam_user, users) \
                    and self.owns(spec, self.read_user_policy(spec.legacy_iam_user)):
                user, exists = spec.legacy_iam_user, True  # created before users were named per fleet: kept
            state.iam = IamState(exists, user)
            if not exists:
                return
            state.iam.keys = self.list_keys(user)
            state.iam.policy = self.read_user_policy(user)
            if spec.state == "absent" or state.iam.policy is None:
                state.iam.policies = [name for page in iam.get_paginator("list_user_policies").paginate(
                    UserName=user) for name in page.get("PolicyNames", [])]
        except Exception as exc:  # pylint: disable=broad-except
            if spec.state == "absent" and spec.credentials is None and self.missing(exc):
                state.iam = IamState()
                state.iam.unavailable = self.error(exc)
                return
            state.error = self.error(exc)

    def has_user(self, user, users):
        if users is not None:
            return user in users
        try:
            self.conn.iam.get_user(UserName=user)
            return True
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_ENTITY:
                raise
            return False

    @staticmethod
    def owns(spec, policy):
        """The ownership marker: the collection's inline policy, naming the tenant's bucket."""
        statements = (policy or {}).get("Statement") or []
        resources = []
        for statement in statements if isinstance(statements, list) else [statements]:
            found = statement.get("Resource") if isinstance(statement, dict) else None
            resources.extend(found if isinstance(found, list) else [found])
        return f"arn:{spec.partition}:s3:::{spec.bucket}" in resources

    def check_owned(self, spec, iam, doing):
        # A user with no key and no policy grants nothing to anyone: one left by a run stopped between CreateUser
        # and PutUserPolicy is taken over (its name is this fleet's bucket's).
        if not self.owns(spec, iam.policy) and (iam.keys or iam.policies):
            raise FleetError(f"IAM user {iam.user or spec.iam_user} exists but was not created for bucket "
                             f"{spec.bucket} (it has no {POLICY_NAME} policy naming it), so it is not this fleet's to "
                             f"{doing}: nothing was changed for tenant {spec.key}. Remove or rename that user, or give "
                             "this fleet a bucket prefix of its own")

    def list_keys(self, user):
        pages = self.conn.iam.get_paginator("list_access_keys").paginate(UserName=user)
        return [key["AccessKeyId"] for page in pages for key in page.get("AccessKeyMetadata", [])]

    def read_user_policy(self, user):
        try:
            document = self.conn.iam.get_user_policy(UserName=user, PolicyName=POLICY_NAME).get("PolicyDocument")
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_ENTITY:
                return None
            raise
        if isinstance(document, str):  # boto3 decodes it; a store might not
            document = json.loads(document)
        return document

    def plan(self, spec, state, plan):
        iam = state.iam or IamState()
        if iam.exists:
            self.check_owned(spec, iam, "manage")
        desired_policy = spec.desired_user_policy()
        user = iam.user or spec.iam_user
        plan.result["iam_user"] = user
        plan.before["credentials"] = ({"iam_user": user, "access_keys": list(iam.keys),
                                       "policy": normalise_policy(iam.policy) if iam.policy else None}
                                      if iam.exists else None)
        deleted = [key for key in iam.keys if key in spec.delete_keys]
        remaining = [key for key in iam.keys if key not in deleted]
        create_key = spec.rotate or not remaining
        plan.after["credentials"] = {"iam_user": user, "access_keys": remaining + ([NEW_KEY] if create_key else []),
                                     "policy": normalise_policy(desired_policy)}
        plan.result["access_keys"] = list(remaining)
        if not iam.exists:
            plan.add(f"create IAM user {user}", lambda _r: self.create_user(user), f"iam:CreateUser {user}")
        if not iam.exists or normalise_policy(iam.policy) != normalise_policy(desired_policy):
            plan.add(f"set the bucket policy of IAM user {user}",
                     lambda _r: self.put_user_policy(user, desired_policy),
                     f"iam:PutUserPolicy {user} {POLICY_NAME} {json.dumps(normalise_policy(desired_policy))}")
        if create_key:
            if self.store_secret is None:
                raise TenantInputError("secret_store", f"a new access key for IAM user {user} needs somewhere to keep "
                                                       "its secret: set secret_store (the Kubernetes API holding the "
                                                       "tenant's Secrets); the module never returns a secret")
            plan.add(f"create an access key for IAM user {user}", lambda _r: self.create_key(user, plan),
                     f"iam:CreateAccessKey {user}")
        for key in deleted:
            plan.add(f"delete access key {key} of IAM user {user}",
                     lambda _r, key=key: self.delete_key(user, key, plan), f"iam:DeleteAccessKey {user} {key}")

    def call(self, what, func, **kwargs):
        try:
            return func(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == "LimitExceeded":
                raise FleetError(f"{what}: the IAM API refused ({code}: {error_message(exc)}); AWS allows two access "
                                 "keys per user: delete one with delete_access_keys first") from None
            raise FleetError(f"{what}: {self.error(exc)}") from None

    def create_user(self, user):
        try:
            self.conn.iam.create_user(UserName=user)
        except ClientError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise FleetError(f"creating IAM user {user}: {self.error(exc)}") from None
        self.wait_until(lambda: self.user_exists(user), f"IAM user {user}")

    def user_exists(self, user):
        try:
            self.conn.iam.get_user(UserName=user)
            return True
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_ENTITY:
                return False
            raise

    def put_user_policy(self, user, document):
        self.call(f"setting the policy of IAM user {user}", self.conn.iam.put_user_policy, UserName=user,
                  PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
        wanted = normalise_policy(document)
        self.wait_until(lambda: normalise_policy(self.read_user_policy(user)) == wanted,
                        f"the policy of IAM user {user}")

    def create_key(self, user, plan):
        key = self.call(f"creating an access key for IAM user {user}", self.conn.iam.create_access_key,
                        UserName=user)["AccessKey"]
        key_id = key["AccessKeyId"]
        try:
            stored = self.store_secret(plan.key, key_id, key["SecretAccessKey"])
        except Exception as exc:  # pylint: disable=broad-except
            # A key whose secret nobody holds is useless: take it back rather than leave it behind.
            try:
                self.conn.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
            except ClientError:
                pass
            raise FleetError(f"storing the secret of the new access key {key_id} of IAM user {user} failed, so the "
                             f"key was deleted again: {exc}") from None
        plan.result["access_key_id"] = key_id
        plan.result["secret_stored_in"] = stored
        plan.result.setdefault("access_keys", []).append(key_id)
        self.wait_until(lambda: key_id in self.list_keys(user), f"access key {key_id} of IAM user {user}")

    def delete_key(self, user, key_id, plan):
        try:
            self.conn.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_ENTITY:
                raise FleetError(f"deleting access key {key_id} of IAM user {user}: {self.error(exc)}") from None
        if plan is not None and key_id in plan.result.get("access_keys", []):
            plan.result["access_keys"].remove(key_id)
        self.wait_until(lambda: key_id not in self.list_keys(user), f"deletion of access key {key_id}")

    def delete_user(self, user):
        try:
            self.conn.iam.delete_user(UserName=user)
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_ENTITY:
                raise FleetError(f"deleting IAM user {user}: {self.error(exc)}") from None
        self.wait_until(lambda: not self.user_exists(user), f"deletion of IAM user {user}")

    def plan_absent(self, spec, iam, plan):
        """Delete the tenant's keys, inline policies and user (after its bucket)."""
        if iam is not None and iam.unavailable:
            plan.result["iam"] = "skipped: " + iam.unavailable
        if iam is None or not iam.exists:
            return
        self.check_owned(spec, iam, "delete")
        user = iam.user or spec.iam_user
        plan.result["iam_user"] = user
        plan.before["credentials"] = {"iam_user": user, "access_keys": list(iam.keys), "policies": list(iam.policies)}
        plan.after["credentials"] = None
        for key in iam.keys:
            plan.add(f"delete access key {key} of IAM user {user}",
                     lambda _r, key=key: self.delete_key(user, key, None), f"iam:DeleteAccessKey {user} {key}")
        for name in iam.policies:
            plan.add(f"delete policy {name} of IAM user {user}",
                     lambda _r, name=name: self.call(f"deleting policy {name} of IAM user {user}",
                                                     self.conn.iam.delete_user_policy, UserName=user, PolicyName=name),
                     f"iam:DeleteUserPolicy {user} {name}")
        plan.add(f"delete IAM user {user}", lambda _r: self.delete_user(user), f"iam:DeleteUser {user}")
