# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant model: the one place where every name a tenant owns is derived and every tenant input is checked.

A tenant id is a short DNS label (lowercase letters, digits, single hyphens). From it come the Kubernetes
namespace and object names, the PostgreSQL database prefix and login role, the S3 bucket and IAM user, and the
Redis Sentinel master set. Keeping the derivation here means a module, a role, the inventory plugin and the lab
all agree on what "tenant acme" owns.
"""

from __future__ import annotations

import re
import secrets
import string

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

TENANT_ID_MAX = 40
# Every pattern is used with ``fullmatch``: ``re.match`` with ``$`` would accept a trailing newline, which a
# sentinel then writes into its config file (and refuses to start on).
TENANT_ID_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PG_IDENTIFIER_MAX = 63
PG_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
MASTER_SET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# Harbor Operator database names, joined to the prefix with no separator (<prefix>core).
CORE_DATABASES = ("core",)
NOTARY_DATABASES = ("notaryserver", "notarysigner")
LONGEST_DATABASE = max(CORE_DATABASES + NOTARY_DATABASES, key=len)

PASSWORD_ALPHABET = string.ascii_letters + string.digits

# The defaults table: every default a fleet name or size comes from, in one place.
PREFIX = "harbor-"                 # namespaces, login roles, master sets
DEFAULT_BUCKET_PREFIX = "harbor-"  # buckets and IAM users; bucket names are global on AWS: fleets set their own
# tenants per tier member (docs/redis-sizing.md); None: any number
DEFAULT_CAPACITY = {"postgres": 500, "sentinel_groups": 150, "s3": None, "kubernetes": None}
DEFAULT_REDIS_PORT_BASE = 7000     # first tenant Redis port of a sentinel group (below the ephemeral range)
EPHEMERAL_PORTS = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range
DEFAULT_S3_REGION = "us-east-1"
DEFAULT_S3_WAIT_TIMEOUT = 60
DEFAULT_PG_PORT = 5432
# TLS by default: PostgreSQL connections verify the server's certificate and name (plain only when a fleet says so)
DEFAULT_PG_SSL_MODE = "verify-full"
PG_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# How the fleet's objects are labelled, wherever they live.
MANAGER = "harborfleet"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TENANT_LABEL = "harborfleet.io/tenant"


def validate_tenant_id(value, field="tenant"):
    """The one id rule for modules, the inventory plugin and placement: a string (never a number), fully matching
    the DNS-label pattern, with nothing after it (no trailing newline)."""
    if value is None or value == "":
        raise TenantInputError(field, "a tenant id is required")
    if not isinstance(value, str):
        raise TenantInputError(field, f"a tenant id must be a string, not {type(value).__name__} ({value!r}): "
                                      "quote it in YAML")
    if len(value) > TENANT_ID_MAX:
        raise TenantInputError(field, f"{value!r} is longer than {TENANT_ID_MAX} characters")
    if not TENANT_ID_RE.fullmatch(value):
        raise TenantInputError(
            field, f"{value!r} is not a valid tenant id: use lowercase letters, digits and single hyphens, "
                   "starting with a letter and not ending with a hyphen")
    return value


def validate_db_prefix(value, field="prefix"):
    """A database prefix must leave room for the longest database name the operator appends."""
    limit = PG_IDENTIFIER_MAX - len(LONGEST_DATABASE)
    if not isinstance(value, str) or not value:
        raise TenantInputError(field, "a database prefix is required")
    if len(value) > limit:
        raise TenantInputError(field, f"{value!r} is longer than {limit} characters "
                                      f"(<prefix>{LONGEST_DATABASE} must fit PostgreSQL's 63-byte limit)")
    if not PG_NAME_RE.fullmatch(value):
        raise TenantInputError(field, f"{value!r} may only contain lowercase letters, digits and '_', "
                                      "and must not start with a digit")
    return value


def validate_pg_name(value, field):
    if not isinstance(value, str) or not value or len(value) > PG_IDENTIFIER_MAX or not PG_NAME_RE.fullmatch(value):
        raise TenantInputError(field, f"{value!r} is not a valid PostgreSQL name: lowercase letters, digits and "
                                      f"'_', not starting with a digit, at most {PG_IDENTIFIER_MAX} characters")
    return value


def validate_bucket_name(value, field="bucket"):
    """S3 bucket naming rules for DNS-compatible (virtual-host addressable) buckets."""
    problem = None
    if not isinstance(value, str) or not BUCKET_RE.fullmatch(value or ""):
        problem = ("must be 3-63 characters of lowercase letters, digits, '.' and '-', "
                   "beginning and ending with a letter or digit")
    elif ".." in value or ".-" in value or "-." in value:
        problem = "must not contain '..', '.-' or '-.'"
    elif IPV4_RE.fullmatch(value):
        problem = "must not look like an IP address"
    elif value.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or value.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        problem = "uses a prefix or suffix S3 reserves"
    if problem:
        raise TenantInputError(field, f"{value!r} is not a valid bucket name: it {problem}")
    return value


def validate_dns_label(value, field):
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL_RE.fullmatch(value):
        raise TenantInputError(field, f"{value!r} is not a valid DNS label (RFC 1123): lowercase letters, "
                                      "digits and '-', at most 63 characters")
    return value


def validate_master_set(value, field="master_set"):
    if not isinstance(value, str) or not MASTER_SET_RE.fullmatch(value):
        raise TenantInputError(field, f"{value!r} is not a valid master set name: letters, digits, '.', '_' "
                                      "and '-', at most 100 characters")
    return value


# HarborCluster fields the tenant model derives: where the tenant's database, cache, bucket, admin password and
# hostnames are. An override may not set or remove them (nor their parents), or a tenant could be pointed at
# another tenant's database, master set, bucket or hostname.
_PG, _REDIS, _S3 = ("database", "spec", "postgresql"), ("cache", "spec", "redis"), ("storage", "spec", "s3")
MODEL_OWNED_SPEC_FIELDS = (
    ("database", "kind"), _PG + ("hosts",), _PG + ("username",), _PG + ("passwordRef",), _PG + ("prefix",),
    ("cache", "kind"), _REDIS + ("host",), _REDIS + ("port",), _REDIS + ("sentinelMasterSet",),
    _REDIS + ("passwordRef",),
    ("storage", "kind"), _S3 + ("bucket",), _S3 + ("regionendpoint",), _S3 + ("region",), _S3 + ("accesskey",),
    _S3 + ("secretkeyRef",),
    ("harborAdminPasswordRef",), ("externalURL",), ("expose", "core", "ingress", "host"),
    ("expose", "notary", "ingress", "host"))


def check_spec_overrides(overrides, field="spec_overrides"):
    """Refuse overrides that are not a mapping or that touch a field the tenant model owns, naming the field."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise TenantInputError(field, "must be a mapping of HarborCluster spec fields")

    def walk(node, path):
        for key, value in node.items():
            here = path + (str(key),)
            for owned in MODEL_OWNED_SPEC_FIELDS:
                if here == owned[:len(here)] and (len(here) == len(owned) or not isinstance(value, dict)):
                    raise TenantInputError(field, f"spec.{'.'.join(here)} is set by the fleet from the tenant's "
                                                  f"placement and names (spec.{'.'.join(owned)}); overrides may not "
                                                  "change it")
            if isinstance(value, dict):
                walk(value, here)
    walk(overrides, ())
    return overrides


def generate_password(length=40):
    """A URL-safe password (letters and digits only): the operator breaks on URL-special characters."""
    return "".join(secrets.SystemRandom().choices(PASSWORD_ALPHABET, k=length))


def is_url_safe_password(value):
    return isinstance(value, str) and bool(value) and all(ch in PASSWORD_ALPHABET for ch in value)


class Tenant:
    """Every name a tenant owns, derived from its id (and, for buckets, a fleet-wide prefix).

    S3 bucket names are global on AWS, so fleets usually set ``bucket_prefix`` to something of their own.
    """

    __slots__ = ("id", "bucket_prefix")

    def __init__(self, tenant_id, bucket_prefix=DEFAULT_BUCKET_PREFIX, field="tenant"):
        self.id = validate_tenant_id(tenant_id, field)
        if bucket_prefix is not None and not isinstance(bucket_prefix, str):
            raise TenantInputError("bucket_prefix", f"{bucket_prefix!r} is not a string")
        self.bucket_prefix = bucket_prefix or ""
        if self.bucket_prefix:
            validate_bucket_name(self.bucket_prefix + self.id, "bucket_prefix")

    def __repr__(self):
        return f"Tenant({self.id!r})"

    @property
    def slug(self):
        """The id with '-' as '_', for PostgreSQL names."""
        return self.id.replace("-", "_")

    # Kubernetes
    @property
    def namespace(self):
        return f"{PREFIX}{self.id}"

    @property
    def cluster_name(self):
        return self.id

    @property
    def labels(self):
        return {MANAGED_BY_LABEL: MANAGER, TENANT_LABEL: self.id}

    @property
    def tls_secret(self):
        """The Secret holding the TLS certificate of the tenant's ingress."""
        return f"{self.id}-tls"

    def external_url(self, domain):
        """The registry's URL under a fleet-wide domain."""
        return f"https://{self.id}.{domain}"

    @staticmethod
    def notary_host(ingress_host):
        return f"notary.{ingress_host}"

    def secret_name(self, purpose):
        """Secret names by purpose: database, cache, admin, storage; trust holds the CA certificates that sign the
        tenant's stores (no secret, but a Secret is what the operator's certificateRefs name)."""
        if purpose not in ("database", "cache", "admin", "storage", "trust"):
            raise ValueError(f"unknown secret purpose {purpose!r}")
        return f"{self.id}-{purpose}"

    # PostgreSQL
    @property
    def db_prefix(self):
        return f"{self.slug}_"

    @property
    def db_role(self):
        return f"{PREFIX.replace('-', '_')}{self.slug}"

    def databases(self, notary=False, prefix=None):
        names = CORE_DATABASES + (NOTARY_DATABASES if notary else ())
        return [f"{prefix if prefix is not None else self.db_prefix}{name}" for name in names]

    # S3
    @property
    def bucket(self):
        return f"{self.bucket_prefix}{self.id}" if self.bucket_prefix else self.id

    @property
    def iam_user(self):
        """Named like the bucket: per fleet (two fleets in one account never share a user), within IAM's 64."""
        return self.bucket

    @property
    def legacy_iam_user(self):
        """The name IAM users had before they were named per fleet (still used where it exists and is ours)."""
        return f"{PREFIX}{self.id}"

    # Redis Sentinel
    @property
    def master_set(self):
        return f"{PREFIX}{self.id}"

    def names(self, notary=False):
        """Everything at once, e.g. for an inventory host's variables or a status report."""
        return {
            "tenant": self.id,
            "namespace": self.namespace,
            "cluster_name": self.cluster_name,
            "db_prefix": self.db_prefix,
            "db_role": self.db_role,
            "databases": self.databases(notary),
            "bucket": self.bucket,
            "iam_user": self.iam_user,
            "master_set": self.master_set,
            "secrets": {purpose: self.secret_name(purpose) for purpose in ("database", "cache", "admin", "storage")},
        }
