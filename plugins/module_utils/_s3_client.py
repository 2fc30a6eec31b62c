# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection: boto3 clients, retries, error codes and their description, endpoint checks, policy documents.

One boto3 client per service is shared by every worker thread (boto3 clients are thread-safe). Transient errors
(throttling, 5xx, connection resets) are retried by botocore's own retry modes with jittered backoff; nothing here
loops around an API call.
"""

from __future__ import annotations

import json
import os
import threading
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

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError, register_errors

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

NOT_SUPPORTED_CODES = frozenset(("NotImplemented", "NotSupported", "XNotImplemented", "UnsupportedOperation",
                                 "MethodNotAllowed", "InvalidAction", "UnknownOperation"))
AUTH_CODES = frozenset(("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken",
                        "InvalidToken", "TokenRefreshRequired", "AuthFailure", "InvalidSecurity"))
NO_SUCH_BUCKET = frozenset(("NoSuchBucket", "404", "NotFound"))
NO_SUCH_ENTITY = frozenset(("NoSuchEntity",))
BUCKET_PLACEHOLDER = "${bucket}"


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


def is_client_error(exc):
    return ClientError is not None and isinstance(exc, ClientError)


def _describe_boto(exc, endpoint=None):
    """One sentence for a boto error, naming the endpoint; never a secret (boto errors carry none)."""
    where = f" at {endpoint}" if endpoint else ""
    if is_client_error(exc):
        code = error_code(exc)
        operation = getattr(exc, "operation_name", "") or "request"
        message = error_message(exc)
        if code in AUTH_CODES:
            return (f"the S3 endpoint{where} refused the credentials ({code} on {operation}): check access_key, "
                    "secret_key and session_token")
        return f"{operation}{where} failed: {code}" + (f": {message}" if message else "")
    if isinstance(exc, SSLError):
        return f"TLS error talking to the S3 endpoint{where}: {exc} (see ca_bundle and validate_certs)"
    if isinstance(exc, EndpointConnectionError):
        return f"the S3 endpoint{where} is unreachable: {exc}"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return f"no usable S3 credentials: {exc}; set access_key and secret_key (or the AWS_* environment variables)"
    return f"S3 client error{where}: {exc}"


if boto3 is not None:
    register_errors((ClientError, BotoCoreError), _describe_boto)


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
