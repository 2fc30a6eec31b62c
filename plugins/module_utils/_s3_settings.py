# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bucket settings a tenant may manage, one class each: how to read, compare, write and record them.

Each setting is read and written only when the tenant asks to manage it; an unset option is unmanaged.
"""

from __future__ import annotations

import json

from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import ClientError, error_code, normalise_policy

RULE_IDS = {
    "abort_incomplete_multipart_days": "harborfleet-abort-incomplete-multipart-uploads",
    "noncurrent_version_expiration_days": "harborfleet-expire-noncurrent-versions",
}
PAB_FIELDS = (("block_public_acls", "BlockPublicAcls"), ("ignore_public_acls", "IgnorePublicAcls"),
              ("block_public_policy", "BlockPublicPolicy"), ("restrict_public_buckets", "RestrictPublicBuckets"))


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
