# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 backend: clients, retries, capability probing, bulk reads, the tenant bucket plan, IAM credentials.

One boto3 client per service is shared by every worker thread (boto3 clients are thread-safe). Transient errors
(throttling, 5xx, connection resets) are retried by botocore's own retry modes with jittered backoff; nothing here
loops around an API call except the bounded wait that re-reads a setting until a write is visible.

Reads are bulk and minimal: one ``ListBuckets`` (or, for a handful of tenants, one read per bucket) decides which
buckets exist, and only the settings a tenant asks to manage are read, so a no-op run of N buckets managing k
settings costs 1 + N*k calls. A store that answers NotImplemented for a setting nobody asked for is never asked.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError,
                                     PartialCredentialsError, SSLError)
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    boto3 = None
    Config = None
    BotoCoreError = ClientError = EndpointConnectionError = NoCredentialsError = None
    PartialCredentialsError = SSLError = None
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = _exc

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan, run_batch
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    Tenant, TenantInputError, validate_bucket_name)

CONNECTION_SPEC = dict(
    endpoint_url=dict(type="str", aliases=["s3_url"]),
    iam_endpoint_url=dict(type="str"),
    region=dict(type="str", default="us-east-1"),
    access_key=dict(type="str", aliases=["aws_access_key_id"], no_log=False),
    secret_key=dict(type="str", aliases=["aws_secret_access_key"], no_log=True),
    session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
    ca_bundle=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    addressing_style=dict(type="str", default="auto", choices=["auto", "path", "virtual"]),
    retry_mode=dict(type="str", default="standard", choices=["standard", "adaptive"]),
    max_attempts=dict(type="int", default=5),
    connect_timeout=dict(type="int", default=10),
    read_timeout=dict(type="int", default=60),
)

US_EAST_1 = "us-east-1"
# Below this many tenants, one GetBucketLocation per bucket tells whether it exists; from it on, one ListBuckets.
LIST_BUCKETS_FROM = 8
DELETE_BATCH = 1000
POLICY_NAME = "harborfleet-tenant-bucket"
RULE_IDS = {
    "abort_incomplete_multipart_days": "harborfleet-abort-incomplete-multipart-uploads",
    "noncurrent_version_expiration_days": "harborfleet-expire-noncurrent-versions",
}
# What a registry's storage driver needs on its bucket, in action names both AWS and SeaweedFS accept
# (SeaweedFS refuses s3:ListBucketMultipartUploads and s3:ListMultipartUploadParts; s3:List* covers them on AWS).
DEFAULT_CREDENTIAL_ACTIONS = ("s3:GetBucketLocation", "s3:List*", "s3:GetObject", "s3:PutObject",
                              "s3:DeleteObject", "s3:AbortMultipartUpload")
BUCKET_PLACEHOLDER = "${bucket}"
NEW_KEY = "(new key)"

NOT_SUPPORTED_CODES = frozenset(("NotImplemented", "NotSupported", "XNotImplemented", "UnsupportedOperation",
                                 "MethodNotAllowed", "InvalidAction", "UnknownOperation"))
AUTH_CODES = frozenset(("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken",
                        "InvalidToken", "TokenRefreshRequired", "AuthFailure", "InvalidSecurity"))
NO_SUCH_BUCKET = frozenset(("NoSuchBucket", "404", "NotFound"))
NO_SUCH_ENTITY = frozenset(("NoSuchEntity",))

ACTION_RE = re.compile(r"s3:[A-Za-z*]+")
KEY_ID_RE = re.compile(r"[A-Za-z0-9]{4,128}")
PAB_FIELDS = (("block_public_acls", "BlockPublicAcls"), ("ignore_public_acls", "IgnorePublicAcls"),
              ("block_public_policy", "BlockPublicPolicy"), ("restrict_public_buckets", "RestrictPublicBuckets"))


# --------------------------------------------------------------------------- errors

def error_code(exc):
    """The error code of a ClientError (S3-style bodies put it at the top level, e.g. SeaweedFS's IAM)."""
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") or response.get("Code")
    if not code:
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(status) if status else "Unknown"
    return str(code)


def error_message(exc):
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Message") or response.get("Message") or "").strip()


def http_status(exc):
    response = getattr(exc, "response", None) or {}
    return (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")


def is_not_supported(exc):
    return error_code(exc) in NOT_SUPPORTED_CODES or http_status(exc) == 501


def _is_client_error(exc):
    return ClientError is not None and isinstance(exc, ClientError)


def describe_error(exc, endpoint=None):
    """One sentence for an exception, naming the endpoint; never a secret (boto errors carry none)."""
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, (FleetError, TenantInputError)):
        return str(exc)
    if _is_client_error(exc):
        code = error_code(exc)
        operation = getattr(exc, "operation_name", "") or "request"
        message = error_message(exc)
        if code in AUTH_CODES:
            return (f"the S3 endpoint{where} refused the credentials ({code} on {operation}): check access_key, "
                    "secret_key and session_token")
        return f"{operation}{where} failed: {code}" + (f": {message}" if message else "")
    if SSLError is not None and isinstance(exc, SSLError):
        return f"TLS error talking to the S3 endpoint{where}: {exc} (see ca_bundle and validate_certs)"
    if EndpointConnectionError is not None and isinstance(exc, EndpointConnectionError):
        return f"the S3 endpoint{where} is unreachable: {exc}"
    if NoCredentialsError is not None and isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return f"no usable S3 credentials: {exc}; set access_key and secret_key (or the AWS_* environment variables)"
    if BotoCoreError is not None and isinstance(exc, BotoCoreError):
        return f"S3 client error{where}: {exc}"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- input checks

def validate_endpoint_url(value, field):
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise TenantInputError(field, f"{value!r} is not a usable URL: it needs http:// or https:// and a host "
                                      "(and a numeric port, if any)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TenantInputError(field, f"{value!r} must not have a path, query or fragment")
    return value


def arn_partition(region):
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# --------------------------------------------------------------------------- policy normalisation

def normalise_policy(value, _in_condition=False):
    """A canonical form of a policy document for comparison: keys sorted, lists deduplicated and sorted (every
    list in a policy is a set), one-item lists as scalars, condition values as strings."""
    if isinstance(value, dict):
        return {key: normalise_policy(value[key], _in_condition or key == "Condition") for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        unique = {}
        for item in value:
            item = normalise_policy(item, _in_condition)
            unique[json.dumps(item, sort_keys=True)] = item
        items = [unique[key] for key in sorted(unique)]
        return items[0] if len(items) == 1 else items
    if _in_condition and isinstance(value, bool):
        return "true" if value else "false"
    if _in_condition and isinstance(value, (int, float)):
        return str(value)
    return value


def substitute_bucket(value, bucket):
    if isinstance(value, dict):
        return {key: substitute_bucket(item, bucket) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_bucket(item, bucket) for item in value]
    if isinstance(value, str):
        return value.replace(BUCKET_PLACEHOLDER, bucket)
    return value


def tenant_policy(bucket, actions, partition="aws"):
    """The inline policy of a tenant's IAM user: its bucket and the objects in it, nothing else."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "HarborfleetTenantBucket", "Effect": "Allow", "Action": list(actions),
        "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"]}]}


# --------------------------------------------------------------------------- connection

class S3Connection:
    """The S3 and IAM clients of one module run, created once and shared by every worker thread."""

    def __init__(self, params, concurrency=8):
        self.params = params
        self.endpoint_url = validate_endpoint_url(params.get("endpoint_url"), "endpoint_url")
        iam_url = params.get("iam_endpoint_url") or self.endpoint_url
        self.iam_endpoint_url = validate_endpoint_url(iam_url, "iam_endpoint_url" if params.get("iam_endpoint_url")
                                                      else "endpoint_url")
        self.region = params.get("region") or US_EAST_1
        if params.get("max_attempts") is not None and params["max_attempts"] < 1:
            raise TenantInputError("max_attempts", "must be at least 1")
        for name in ("connect_timeout", "read_timeout"):
            if params.get(name) is not None and params[name] < 1:
                raise TenantInputError(name, "must be at least 1 second")
        if params.get("ca_bundle") and not os.path.isfile(params["ca_bundle"]):
            raise TenantInputError("ca_bundle", f"{params['ca_bundle']!r} is not a file")
        if bool(params.get("access_key")) != bool(params.get("secret_key")):
            raise TenantInputError("secret_key" if params.get("access_key") else "access_key",
                                   "access_key and secret_key go together")
        self.concurrency = concurrency
        self._clients = {}
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.calls = Counter()

    @property
    def where(self):
        return self.endpoint_url or f"AWS S3 ({self.region})"

    @property
    def iam_where(self):
        return self.iam_endpoint_url or "AWS IAM"

    def config(self, service):
        params = self.params
        options = dict(region_name=self.region, retries={"mode": params.get("retry_mode") or "standard",
                                                         "max_attempts": params.get("max_attempts") or 5},
                       connect_timeout=params.get("connect_timeout") or 10,
                       read_timeout=params.get("read_timeout") or 60,
                       max_pool_connections=max(10, self.concurrency + 2))
        if service == "s3":
            options["s3"] = {"addressing_style": params.get("addressing_style") or "auto"}
            options["signature_version"] = "s3v4"
        return Config(**options)

    def client(self, service):
        with self._lock:
            if service not in self._clients:
                params = self.params
                verify = params.get("ca_bundle") or (params.get("validate_certs") is not False)
                session = boto3.session.Session(aws_access_key_id=params.get("access_key") or None,
                                                aws_secret_access_key=params.get("secret_key") or None,
                                                aws_session_token=params.get("session_token") or None)
                client = session.client(service, endpoint_url=self.endpoint_url if service == "s3"
                                        else self.iam_endpoint_url, verify=verify, config=self.config(service))
                client.meta.events.register("before-call", self._count)
                self._clients[service] = client
            return self._clients[service]

    @property
    def s3(self):
        return self.client("s3")

    @property
    def iam(self):
        return self.client("iam")

    def _count(self, model=None, **_kwargs):
        """Count API operations (retries of one operation count once); tests and benchmarks read ``calls``."""
        name = getattr(model, "name", "unknown")
        service = getattr(getattr(model, "service_model", None), "endpoint_prefix", "")
        with self._count_lock:
            self.calls[f"{service}:{name}"] += 1

    @property
    def call_count(self):
        return sum(self.calls.values())


# --------------------------------------------------------------------------- bucket settings

class Setting:
    """One bucket setting: how to read it into a comparable view, the desired view, and how to write it."""

    name = ""
    missing_codes = frozenset()

    def requested(self, spec):
        return getattr(spec, self.name) is not None

    def fetch(self, s3, bucket):
        raise NotImplementedError

    def read(self, s3, bucket):
        try:
            return self.fetch(s3, bucket)
        except ClientError as exc:
            if error_code(exc) in self.missing_codes:
                return self.new_bucket_value()
            raise

    def new_bucket_value(self):
        return None

    def view(self, value):
        """What the diff shows and what is compared."""
        return value

    def desired(self, spec, actual):
        raise NotImplementedError

    def write(self, s3, bucket, spec, desired, actual):
        """Returns nothing; raises ClientError."""
        raise NotImplementedError

    def record(self, bucket, desired):
        raise NotImplementedError


class Versioning(Setting):
    name = "versioning"

    def fetch(self, s3, bucket):
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        return {"Enabled": "enabled", "Suspended": "suspended"}.get(status, "disabled")

    def new_bucket_value(self):
        return "disabled"

    def desired(self, spec, actual):
        return spec.versioning

    def write(self, s3, bucket, spec, desired, actual):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": desired.capitalize()})

    def record(self, bucket, desired):
        return f"s3:PutBucketVersioning {bucket} Status={desired.capitalize()}"


class Encryption(Setting):
    name = "encryption"
    missing_codes = frozenset(("ServerSideEncryptionConfigurationNotFoundError",))

    def fetch(self, s3, bucket):
        rules = s3.get_bucket_encryption(Bucket=bucket).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            algorithm = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
            if algorithm:
                return algorithm
        return None

    def desired(self, spec, actual):
        return "AES256" if spec.encryption else None

    def write(self, s3, bucket, spec, desired, actual):
        if desired is None:
            s3.delete_bucket_encryption(Bucket=bucket)
        else:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": desired}}]})

    def record(self, bucket, desired):
        if desired is None:
            return f"s3:DeleteBucketEncryption {bucket}"
        return f"s3:PutBucketEncryption {bucket} SSEAlgorithm={desired}"


def _whole_bucket(rule):
    flt = rule.get("Filter")
    if flt is None:
        return rule.get("Prefix", "") == ""
    return flt in ({}, {"Prefix": ""})


class Lifecycle(Setting):
    """The module owns two rules, by ID; rules with other IDs are kept as they are."""

    name = "lifecycle"
    missing_codes = frozenset(("NoSuchLifecycleConfiguration",))
    options = tuple(RULE_IDS)

    def requested(self, spec):
        return any(getattr(spec, option) is not None for option in self.options)

    def fetch(self, s3, bucket):
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])

    def new_bucket_value(self):
        return []

    @staticmethod
    def rule(option, days):
        rule = {"ID": RULE_IDS[option], "Status": "Enabled", "Filter": {"Prefix": ""}}
        if option == "abort_incomplete_multipart_days":
            rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
        else:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
        return rule

    @classmethod
    def _days(cls, option, rules):
        for rule in rules:
            if rule.get("ID") != RULE_IDS[option]:
                continue
            if option == "abort_incomplete_multipart_days":
                days = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
            else:
                days = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
            actions = [key for key in ("Expiration", "Transitions", "NoncurrentVersionTransitions",
                                       "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload") if key in rule]
            if rule.get("Status") == "Enabled" and _whole_bucket(rule) and len(actions) == 1 and days:
                return days
            return f"rule {RULE_IDS[option]} differs from what the module writes"
        return None

    def view(self, value):
        view = {option: self._days(option, value) for option in self.options}
        foreign = [rule.get("ID") or "(no id)" for rule in value if rule.get("ID") not in RULE_IDS.values()]
        if foreign:
            view["other_rules"] = sorted(foreign)
        return view

    def desired(self, spec, actual):
        """The full rule list: other rules untouched, the module's rules as requested (0 removes one)."""
        rules = [rule for rule in actual if rule.get("ID") not in RULE_IDS.values()]
        for option in self.options:
            wanted = getattr(spec, option)
            if wanted is None:
                rules.extend(rule for rule in actual if rule.get("ID") == RULE_IDS[option])
            elif wanted > 0:
                rules.append(self.rule(option, wanted))
        return rules

    def write(self, s3, bucket, spec, desired, actual):
        if desired:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": desired})
        else:
            s3.delete_bucket_lifecycle(Bucket=bucket)

    def record(self, bucket, desired):
        if not desired:
            return f"s3:DeleteBucketLifecycle {bucket}"
        return f"s3:PutBucketLifecycleConfiguration {bucket} Rules={json.dumps(desired, sort_keys=True)}"


class Tags(Setting):
    name = "tags"
    missing_codes = frozenset(("NoSuchTagSet", "NoSuchTagSetError"))

    def fetch(self, s3, bucket):
        return {tag["Key"]: tag["Value"] for tag in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}

    def new_bucket_value(self):
        return {}

    def view(self, value):
        return dict(sorted(value.items()))

    def desired(self, spec, actual):
        if spec.purge_tags:
            return dict(spec.tags)
        return dict(actual, **spec.tags)

    def write(self, s3, bucket, spec, desired, actual):
        if desired:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": key, "Value": value}
                                                                     for key, value in sorted(desired.items())]})
        else:
            s3.delete_bucket_tagging(Bucket=bucket)

    def record(self, bucket, desired):
        if not desired:
            return f"s3:DeleteBucketTagging {bucket}"
        return f"s3:PutBucketTagging {bucket} TagSet={json.dumps(dict(sorted(desired.items())))}"


class Policy(Setting):
    name = "policy"
    missing_codes = frozenset(("NoSuchBucketPolicy",))

    def fetch(self, s3, bucket):
        text = s3.get_bucket_policy(Bucket=bucket).get("Policy")
        return json.loads(text) if text else None

    def view(self, value):
        return normalise_policy(value) if value else None

    def desired(self, spec, actual):
        return spec.policy_for(spec.bucket)

    def write(self, s3, bucket, spec, desired, actual):
        if desired:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(desired))
        else:
            s3.delete_bucket_policy(Bucket=bucket)

    def record(self, bucket, desired):
        if not desired:
            return f"s3:DeleteBucketPolicy {bucket}"
        return f"s3:PutBucketPolicy {bucket} Policy={json.dumps(normalise_policy(desired))}"


class PublicAccessBlock(Setting):
    name = "public_access_block"
    missing_codes = frozenset(("NoSuchPublicAccessBlockConfiguration",))

    def fetch(self, s3, bucket):
        config = s3.get_public_access_block(Bucket=bucket).get("PublicAccessBlockConfiguration", {})
        return {option: bool(config.get(field)) for option, field in PAB_FIELDS}

    def new_bucket_value(self):
        return {option: False for option, _field in PAB_FIELDS}

    def desired(self, spec, actual):
        return {option: bool(spec.public_access_block.get(option)) for option, _field in PAB_FIELDS}

    def write(self, s3, bucket, spec, desired, actual):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            field: desired[option] for option, field in PAB_FIELDS})

    def record(self, bucket, desired):
        return f"s3:PutPublicAccessBlock {bucket} {json.dumps(desired, sort_keys=True)}"


# Write order: the policy last, because on some stores (SeaweedFS) a Deny can lock out even the admin identity.
SETTINGS = (Versioning(), Encryption(), Lifecycle(), Tags(), PublicAccessBlock(), Policy())
SETTING_OPTIONS = {"versioning": ("versioning",), "encryption": ("encryption",), "lifecycle": tuple(RULE_IDS),
                   "tags": ("tags",), "public_access_block": ("public_access_block",), "policy": ("policy",)}


# --------------------------------------------------------------------------- desired state

class BucketSpec:
    """What one tenant should have, validated before any call is made."""

    def __init__(self, params, state, bucket_prefix="harbor-", region=US_EAST_1):
        self.tenant = Tenant(params["tenant"], bucket_prefix)
        self.key = self.tenant.id
        self.state = state
        self.bucket = validate_bucket_name(params["bucket"], "bucket") if params.get("bucket") else self.tenant.bucket
        self.iam_user = self.tenant.iam_user
        self.partition = arn_partition(region)
        self.versioning = params.get("versioning")
        self.encryption = params.get("encryption")
        for option in RULE_IDS:
            value = params.get(option)
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
        self.delete_keys = list(params.get("delete_access_keys") or [])
        for key_id in self.delete_keys:
            if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
                raise TenantInputError("delete_access_keys", f"{key_id!r} is not an access key id")
        if credentials is False and (self.rotate or self.delete_keys):
            raise TenantInputError("credentials", "is false, but rotate_credentials or delete_access_keys ask to "
                                                  "manage the IAM user's keys")
        self.credentials = credentials if credentials is not None else (
            True if (self.rotate or self.delete_keys) else None)
        actions = params.get("credentials_actions") or list(DEFAULT_CREDENTIAL_ACTIONS)
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

class IamState:
    def __init__(self, exists=False):
        self.exists = exists
        self.keys = []          # access key ids
        self.policy = None      # the module's inline policy, as read
        self.policies = []      # every inline policy name (state=absent)
        self.unavailable = None  # why the IAM API could not be used (state=absent, credentials unset)


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
        # store_secret(tenant id, access key id, secret) keeps a new key's secret where its consumer reads it (the
        # tenant's Kubernetes Secret); the secret itself is never returned.
        self.store_secret = store_secret
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
            users = self._list_users(iam_specs, states)
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

    def _list_users(self, iam_specs, states):
        """IAM user names in bulk. When the IAM API fails, each tenant gets the error, or (state=absent without
        credentials, on a store with no IAM API) a note that IAM was skipped; the names are then an empty set."""
        try:
            names = set()
            for page in self.conn.iam.get_paginator("list_users").paginate():
                names.update(user["UserName"] for user in page.get("Users", []))
            return names
        except Exception as exc:  # pylint: disable=broad-except
            message = self._iam_error(exc)
            for spec in iam_specs:
                state = states[spec.key]
                if spec.state == "absent" and spec.credentials is None and self._iam_missing(exc):
                    state.iam = IamState()
                    state.iam.unavailable = message
                else:
                    state.error = message
            return set()

    def _iam_missing(self, exc):
        if _is_client_error(exc):
            return is_not_supported(exc) or http_status(exc) in (404, 405)
        return False

    def _iam_error(self, exc):
        if _is_client_error(exc) and self._iam_missing(exc):
            return (f"credentials: the IAM API at {self.conn.iam_where} is not available ({error_code(exc)}); this "
                    "store cannot create per-tenant keys (set iam_endpoint_url if IAM lives elsewhere)")
        return "credentials: " + describe_error(exc, self.conn.iam_where)

    def _read_tenant(self, spec, state, users):
        if state.error:
            return
        if spec.state == "absent":
            self._read_absent(spec, state)
        else:
            self._read_settings(spec, state)
        if spec.manages_iam and state.iam is None and not state.error:
            self._read_iam(spec, state, users)

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

    def _read_iam(self, spec, state, users):
        iam = self.conn.iam
        try:
            if users is not None:
                exists = spec.iam_user in users
            else:
                try:
                    iam.get_user(UserName=spec.iam_user)
                    exists = True
                except ClientError as exc:
                    if error_code(exc) not in NO_SUCH_ENTITY:
                        raise
                    exists = False
            state.iam = IamState(exists)
            if not exists:
                return
            state.iam.keys = self._list_keys(spec.iam_user)
            if spec.state == "absent":
                state.iam.policies = [name for page in iam.get_paginator("list_user_policies").paginate(
                    UserName=spec.iam_user) for name in page.get("PolicyNames", [])]
            else:
                state.iam.policy = self._read_user_policy(spec.iam_user)
        except Exception as exc:  # pylint: disable=broad-except
            if spec.state == "absent" and spec.credentials is None and self._iam_missing(exc):
                state.iam = IamState()
                state.iam.unavailable = self._iam_error(exc)
                return
            state.error = self._iam_error(exc)

    def _list_keys(self, user):
        pages = self.conn.iam.get_paginator("list_access_keys").paginate(UserName=user)
        return [key["AccessKeyId"] for page in pages for key in page.get("AccessKeyMetadata", [])]

    def _read_user_policy(self, user):
        try:
            document = self.conn.iam.get_user_policy(UserName=user, PolicyName=POLICY_NAME).get("PolicyDocument")
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_ENTITY:
                return None
            raise
        if isinstance(document, str):  # boto3 decodes it; a store might not
            document = json.loads(document)
        return document

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
            self._plan_credentials(spec, state, plan)

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

    def _plan_credentials(self, spec, state, plan):
        iam = state.iam or IamState()
        desired_policy = spec.desired_user_policy()
        user = spec.iam_user
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
            plan.add(f"create IAM user {user}", lambda _r: self._create_user(user), f"iam:CreateUser {user}")
        if not iam.exists or normalise_policy(iam.policy) != normalise_policy(desired_policy):
            plan.add(f"set the bucket policy of IAM user {user}",
                     lambda _r: self._put_user_policy(user, desired_policy),
                     f"iam:PutUserPolicy {user} {POLICY_NAME} {json.dumps(normalise_policy(desired_policy))}")
        if create_key:
            if self.store_secret is None:
                raise TenantInputError("secret_store", f"a new access key for IAM user {user} needs somewhere to keep "
                                                       "its secret: set secret_store (the Kubernetes API holding the "
                                                       "tenant's Secrets); the module never returns a secret")
            plan.add(f"create an access key for IAM user {user}", lambda _r: self._create_key(user, plan),
                     f"iam:CreateAccessKey {user}")
        for key in deleted:
            plan.add(f"delete access key {key} of IAM user {user}",
                     lambda _r, key=key: self._delete_key(user, key, plan), f"iam:DeleteAccessKey {user} {key}")

    def _iam_call(self, what, func, **kwargs):
        try:
            return func(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == "LimitExceeded":
                raise FleetError(f"{what}: the IAM API refused ({code}: {error_message(exc)}); AWS allows two access "
                                 "keys per user: delete one with delete_access_keys first") from None
            raise FleetError(f"{what}: {self._iam_error(exc)}") from None

    def _create_user(self, user):
        try:
            self.conn.iam.create_user(UserName=user)
        except ClientError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise FleetError(f"creating IAM user {user}: {self._iam_error(exc)}") from None
        self.wait_until(lambda: self._user_exists(user), f"IAM user {user}")

    def _user_exists(self, user):
        try:
            self.conn.iam.get_user(UserName=user)
            return True
        except ClientError as exc:
            if error_code(exc) in NO_SUCH_ENTITY:
                return False
            raise

    def _put_user_policy(self, user, document):
        self._iam_call(f"setting the policy of IAM user {user}", self.conn.iam.put_user_policy, UserName=user,
                       PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
        wanted = normalise_policy(document)
        self.wait_until(lambda: normalise_policy(self._read_user_policy(user)) == wanted,
                        f"the policy of IAM user {user}")

    def _create_key(self, user, plan):
        key = self._iam_call(f"creating an access key for IAM user {user}", self.conn.iam.create_access_key,
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
        self.wait_until(lambda: key_id in self._list_keys(user), f"access key {key_id} of IAM user {user}")

    def _delete_key(self, user, key_id, plan):
        try:
            self.conn.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_ENTITY:
                raise FleetError(f"deleting access key {key_id} of IAM user {user}: {self._iam_error(exc)}") from None
        if plan is not None and key_id in plan.result.get("access_keys", []):
            plan.result["access_keys"].remove(key_id)
        self.wait_until(lambda: key_id not in self._list_keys(user), f"deletion of access key {key_id}")

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
        iam = state.iam
        if iam is not None and iam.unavailable:
            plan.result["iam"] = "skipped: " + iam.unavailable
        if iam is not None and iam.exists:
            user = spec.iam_user
            plan.result["iam_user"] = user
            plan.before["credentials"] = {"iam_user": user, "access_keys": list(iam.keys),
                                          "policies": list(iam.policies)}
            plan.after["credentials"] = None
            for key in iam.keys:
                plan.add(f"delete access key {key} of IAM user {user}",
                         lambda _r, key=key: self._delete_key(user, key, None), f"iam:DeleteAccessKey {user} {key}")
            for name in iam.policies:
                plan.add(f"delete policy {name} of IAM user {user}",
                         lambda _r, name=name: self._iam_call(f"deleting policy {name} of IAM user {user}",
                                                              self.conn.iam.delete_user_policy, UserName=user,
                                                              PolicyName=name),
                         f"iam:DeleteUserPolicy {user} {name}")
            plan.add(f"delete IAM user {user}", lambda _r: self._delete_user(user), f"iam:DeleteUser {user}")

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

    def _delete_user(self, user):
        try:
            self.conn.iam.delete_user(UserName=user)
        except ClientError as exc:
            if error_code(exc) not in NO_SUCH_ENTITY:
                raise FleetError(f"deleting IAM user {user}: {self._iam_error(exc)}") from None
        self.wait_until(lambda: not self._user_exists(user), f"deletion of IAM user {user}")

    # ----------------------------------------------------------------- eventual consistency

    def wait_until(self, visible, what):
        """Re-read until a write is visible, for at most ``wait_timeout`` seconds of the monotonic clock; with 0 the
        store is trusted to be read-after-write consistent and nothing is re-read."""
        if not self.wait_timeout:
            return
        deadline = self._clock() + self.wait_timeout
        delay = 0.1
        while True:
            if visible():
                return
            if self._clock() >= deadline:
                raise FleetError(f"{what} was written but is not visible after {self.wait_timeout}s at "
                                 f"{self.conn.where} (eventual consistency); run again to converge")
            self._sleep(delay)
            delay = min(delay * 2, 2.0)
