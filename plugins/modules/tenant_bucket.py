#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_bucket
short_description: A Harbor tenant's S3 bucket and least-privilege credentials
version_added: 0.1.0
description:
  - Creates or converges a tenant's bucket on an S3-compatible store (AWS, Ceph RGW, MinIO, SeaweedFS, OVH,
    DigitalOcean Spaces...) and, where the store has an IAM API, an IAM user whose key can use that bucket and
    nothing else.
  - The bucket is C(<bucket_prefix><tenant>) unless O(bucket) is given; the IAM user is C(<bucket_prefix><tenant>)
    too, so two fleets (bucket prefixes) in one account never share a user. A user created before users were
    named per fleet (C(harbor-<tenant>)) keeps being used while it exists and carries the policy naming the bucket.
  - The module changes or deletes only IAM users it created, which carry its inline policy
    C(harborfleet-tenant-bucket) naming the tenant's bucket. A user of that name with keys or other policies and
    without it belongs to someone else; the tenant then fails naming the user, and nothing is done for it.
  - Only the settings you set are read and managed. An option left unset is neither read nor compared, so a store
    that does not implement a setting is only a problem for a tenant that asks for it; that tenant then fails with
    an error naming the setting and the endpoint, before anything is created.
  - Reads are done in bulk (one C(ListBuckets) from 8 tenants on, below that one C(GetBucketLocation) per bucket)
    and per-bucket settings are read over O(concurrency) threads sharing one client. A no-op run of N buckets
    managing k settings makes 1 + N*k calls (lifecycle counts once; below 8 tenants N*(1+k)).
  - After every write the setting is read back until it is visible (at most O(wait_timeout) seconds), so a run
    that returns has converged even on eventually consistent stores. On a store that is read-after-write
    consistent for bucket settings and IAM (SeaweedFS, for one), O(wait_timeout=0) skips those re-reads and
    halves the calls a new bucket costs.
  - With O(state=absent) the bucket is deleted only when empty, unless O(force=true); the tenant's IAM user, its
    keys and inline policies are deleted too.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.s3
  - harborfleet.fleet.batch
  - harborfleet.fleet.attributes
options:
  tenant:
    description:
      - The tenant id (single form). Lowercase letters, digits and single hyphens, starting with a letter, at most
        40 characters.
      - Mutually exclusive with O(tenants).
    type: str
  tenants:
    description:
      - The list form. Each item is one tenant and takes the per-tenant options below; an option an item leaves
        out takes its top-level value.
    type: list
    elements: dict
    suboptions:
      tenant:
        description: The tenant id.
        type: str
        required: true
      bucket:
        description: See the top-level O(bucket).
        type: str
      versioning:
        description: See the top-level O(versioning).
        type: str
        choices: [enabled, suspended]
      encryption:
        description: See the top-level O(encryption).
        type: bool
      abort_incomplete_multipart_days:
        description: See the top-level O(abort_incomplete_multipart_days).
        type: int
      noncurrent_version_expiration_days:
        description: See the top-level O(noncurrent_version_expiration_days).
        type: int
      tags:
        description: See the top-level O(tags).
        type: dict
      purge_tags:
        description: See the top-level O(purge_tags).
        type: bool
      policy:
        description: See the top-level O(policy).
        type: json
      public_access_block:
        description: See the top-level O(public_access_block).
        type: dict
        suboptions:
          block_public_acls:
            description: See the top-level O(public_access_block.block_public_acls).
            type: bool
          ignore_public_acls:
            description: See the top-level O(public_access_block.ignore_public_acls).
            type: bool
          block_public_policy:
            description: See the top-level O(public_access_block.block_public_policy).
            type: bool
          restrict_public_buckets:
            description: See the top-level O(public_access_block.restrict_public_buckets).
            type: bool
      credentials:
        description: See the top-level O(credentials).
        type: bool
      credentials_actions:
        description: See the top-level O(credentials_actions).
        type: list
        elements: str
      rotate_credentials:
        description: See the top-level O(rotate_credentials).
        type: bool
      delete_access_keys:
        description: See the top-level O(delete_access_keys).
        type: list
        elements: str
  state:
    description: Whether the tenant's bucket (and IAM user) should exist.
    type: str
    choices: [present, absent]
    default: present
  bucket_prefix:
    description:
      - Fleet-wide prefix of bucket names; the bucket is C(<bucket_prefix><tenant>). Bucket names are global on
        AWS, so pick something of your own there. V("") uses the tenant id alone.
      - The resulting name must follow the DNS-compatible S3 naming rules; it is checked before any call.
    type: str
    default: harbor-
  bucket:
    description:
      - The bucket name, instead of the one derived from O(bucket_prefix) and the tenant id.
      - Checked against the DNS-compatible S3 naming rules (3-63 characters, lowercase letters, digits, C(.) and
        C(-), no IP address form, no reserved prefix or suffix) before any call.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  versioning:
    description:
      - V(enabled) or V(suspended). A bucket that never had versioning shows as C(disabled); S3 cannot go back to
        that state. Unset leaves versioning alone.
    type: str
    choices: [enabled, suspended]
  encryption:
    description:
      - V(true) sets SSE-S3 (C(AES256)) default encryption; V(false) removes the default encryption configuration.
        Unset leaves it alone.
      - AWS encrypts every bucket with SSE-S3 and cannot remove it, so V(false) never converges there.
    type: bool
  abort_incomplete_multipart_days:
    description:
      - Lifecycle rule C(harborfleet-abort-incomplete-multipart-uploads) aborting multipart uploads not completed
        after this many days. V(0) removes the rule; unset leaves it alone.
      - Lifecycle rules with other IDs are kept as they are.
    type: int
  noncurrent_version_expiration_days:
    description:
      - Lifecycle rule C(harborfleet-expire-noncurrent-versions) deleting object versions this many days after they
        stopped being current. V(0) removes the rule; unset leaves it alone.
    type: int
  tags:
    description:
      - Bucket tags. Values are strings (numbers and booleans are converted). Unset leaves the tags alone.
      - With O(purge_tags=true) the bucket gets exactly these tags (V({}) removes all); with V(false) they are added
        to or updated in the existing ones.
    type: dict
  purge_tags:
    description: Remove tags not in O(tags). Only used when O(tags) is set.
    type: bool
    default: true
  policy:
    description:
      - Bucket policy document (a dictionary or a JSON string). V({}) removes the policy; unset leaves it alone.
      - The text C(${bucket}) in any string is replaced by the tenant's bucket name, so one policy can be the
        top-level default for a whole list of tenants.
      - Compared in a normalised form (keys sorted, lists as sets, one-item lists as scalars, condition values as
        strings), so a store that rewrites the document does not cause changes on every run.
      - On SeaweedFS a C(Deny) statement can lock out even the administrative identity; AWS would not.
    type: json
  public_access_block:
    description:
      - The bucket's public access block. Fields left out are V(false), as in the S3 API. Unset leaves it alone.
      - Not every store implements it (SeaweedFS answers C(NotImplemented)); setting it there fails the tenant.
    type: dict
    suboptions:
      block_public_acls:
        description: C(BlockPublicAcls).
        type: bool
      ignore_public_acls:
        description: C(IgnorePublicAcls).
        type: bool
      block_public_policy:
        description: C(BlockPublicPolicy).
        type: bool
      restrict_public_buckets:
        description: C(RestrictPublicBuckets).
        type: bool
  credentials:
    description:
      - V(true) makes sure the tenant's IAM user exists with the inline policy C(harborfleet-tenant-bucket)
        allowing O(credentials_actions) on the bucket and its objects (C(arn:aws:s3:::<bucket>) and
        C(arn:aws:s3:::<bucket>/*)) and nothing else, and that it has an access key.
      - "An access key is created when the user has none (or with O(rotate_credentials)). Its secret goes straight
        into the tenant's storage Secret through O(secret_store) (the store never shows it again) and is never
        returned; its id is RV(access_key_id). If storing fails, the new key is deleted again and the tenant fails.
        If a secret is lost, rotate."
      - With O(state=present), V(false) or unset leaves IAM alone. With O(state=absent), unset deletes the IAM user
        when the store has an IAM API, V(true) requires that, V(false) leaves IAM alone.
      - IAM writes are slow on some stores as users accumulate (measured on SeaweedFS, CreateAccessKey took ~16 ms at 10
        users, ~860 ms at 136).
    type: bool
  credentials_actions:
    description:
      - The S3 actions the tenant's key is allowed on its bucket and the objects in it (C(s3:Name), wildcards
        allowed). The resources are always the bucket and its objects.
      - The default is what a registry's storage driver needs, in names AWS and SeaweedFS both accept.
    type: list
    elements: str
    default: [s3:GetBucketLocation, s3:List*, s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload]
  rotate_credentials:
    description:
      - Create a new access key for the tenant's IAM user and return it, keeping the old ones. Implies
        O(credentials=true). This is an action, not a state; every run with it creates a key (AWS allows two per user).
      - After the consumer switched to the new key, delete the old one with O(delete_access_keys).
    type: bool
    default: false
  delete_access_keys:
    description:
      - Ids of access keys of the tenant's IAM user to delete (the retirement step of a rotation). Ids the user
        does not have are ignored. Implies O(credentials=true).
      - A new key is created first when the user would otherwise have none left (or with O(rotate_credentials)).
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: list
    elements: str
  secret_store:
    description:
      - The Kubernetes API holding the tenants' Secrets. The secret of an access key this run creates is written to
        the tenant's storage Secret (C(<tenant>-storage) in C(harbor-<tenant>), data key C(secret), the key the
        Harbor Operator reads), the namespace being created when missing.
      - Required whenever a key is to be created; a tenant that would need one without it fails before anything is
        changed.
      - Takes the same connection options as the collection's Kubernetes modules; an empty mapping uses the
        client's defaults and the E(K8S_AUTH_*) environment variables.
    type: dict
    suboptions:
      kubeconfig:
        description: Path to a kubeconfig file.
        type: path
      context:
        description: The kubeconfig context to use.
        type: str
      host:
        description: The API server URL, instead of a kubeconfig.
        type: str
      api_key:
        description: A bearer token for O(secret_store.host).
        type: str
      ca_cert:
        description: CA bundle to verify the API server with.
        type: path
      validate_certs:
        description: Verify the API server's certificate (the default).
        type: bool
      request_timeout:
        description: Seconds per API request.
        type: int
        default: 30
  force:
    description:
      - With O(state=absent), delete a non-empty bucket by first deleting every object version and delete marker
        (listed and deleted in batches of 1,000) and aborting unfinished multipart uploads.
      - Without it a non-empty bucket fails the tenant and nothing is deleted.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait, after each write, for the store to show the change (eventual consistency).
      - V(0) trusts the store's answer to the write and reads nothing back; use it only on stores that are
        read-after-write consistent for bucket settings and IAM. AWS S3 propagates bucket configuration
        eventually, so keep the default there.
    type: int
    default: 60
notes:
  - Check mode reads and plans exactly as a real run does and writes nothing; a tenant whose real run would fail
    on a known problem (unsupported setting, non-empty bucket without O(force)) fails in check mode too.
  - No secret is ever part of the result, its diff or its call records.
  - SeaweedFS deletes a non-empty bucket with everything in it when asked; the module checks emptiness itself, and
    once more right before deleting.
"""

EXAMPLES = r"""
- name: A tenant's bucket with versioning, encryption, lifecycle rules, tags and its own key
  harborfleet.fleet.tenant_bucket:
    endpoint_url: https://s3.internal.example.net
    access_key: "{{ vault_s3_admin_access_key }}"
    secret_key: "{{ vault_s3_admin_secret_key }}"
    tenant: acme
    versioning: enabled
    encryption: true
    abort_incomplete_multipart_days: 7
    noncurrent_version_expiration_days: 30
    tags:
      tenant: acme
      owner: platform
    credentials: true
    secret_store:
      kubeconfig: ~/.kube/fleet  # a new key's secret goes to the Secret acme-storage in harbor-acme
  register: acme_bucket

- name: A whole fleet in one call (top-level values are defaults for the items)
  harborfleet.fleet.tenant_bucket:
    endpoint_url: https://s3.internal.example.net
    access_key: "{{ vault_s3_admin_access_key }}"
    secret_key: "{{ vault_s3_admin_secret_key }}"
    bucket_prefix: example-harbor-
    versioning: enabled
    encryption: true
    policy:
      Version: "2012-10-17"
      Statement:
        - Sid: DenyInsecureTransport
          Effect: Deny
          Principal: "*"
          Action: "s3:*"
          Resource: ["arn:aws:s3:::${bucket}", "arn:aws:s3:::${bucket}/*"]
          Condition: {Bool: {"aws:SecureTransport": "false"}}
    concurrency: 16
    tenants:
      - tenant: acme
      - tenant: globex
        tags: {tier: gold}

- name: Rotate a tenant's key (step 1 of 2) - stores the new key's secret, keeps the old key
  harborfleet.fleet.tenant_bucket:
    endpoint_url: https://s3.internal.example.net
    access_key: "{{ vault_s3_admin_access_key }}"
    secret_key: "{{ vault_s3_admin_secret_key }}"
    tenant: acme
    rotate_credentials: true
    secret_store:
      kubeconfig: ~/.kube/fleet
  register: rotated

- name: Retire the old key (step 2 of 2), once Harbor uses the new one
  harborfleet.fleet.tenant_bucket:
    endpoint_url: https://s3.internal.example.net
    access_key: "{{ vault_s3_admin_access_key }}"
    secret_key: "{{ vault_s3_admin_secret_key }}"
    tenant: acme
    delete_access_keys: "{{ rotated.access_keys | reject('equalto', rotated.access_key_id) | list }}"

- name: Remove a tenant's bucket with all its data, and its IAM user
  harborfleet.fleet.tenant_bucket:
    endpoint_url: https://s3.internal.example.net
    access_key: "{{ vault_s3_admin_access_key }}"
    secret_key: "{{ vault_s3_admin_secret_key }}"
    tenant: acme
    state: absent
    force: true
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
  sample: acme
bucket:
  description: The tenant's bucket.
  returned: single form
  type: str
  sample: harbor-acme
iam_user:
  description: The tenant's IAM user.
  returned: single form, when IAM is managed and (state=absent) the user existed
  type: str
  sample: harbor-acme
access_key_id:
  description: Id of the access key created by this run.
  returned: single form, when a key was created (not in check mode)
  type: str
  sample: AKIAIOSFODNN7EXAMPLE
secret_stored_in:
  description: The Secret (C(namespace/name)) that holds the secret of the access key created by this run.
  returned: single form, when a key was created (not in check mode)
  type: str
  sample: harbor-acme/acme-storage
access_keys:
  description: Ids of the IAM user's access keys after the run (in check mode, without the key a run would create).
  returned: single form, state=present with credentials
  type: list
  elements: str
  sample: [AKIAIOSFODNN7EXAMPLE]
iam:
  description: Why the IAM user was not looked at (state=absent on a store without an IAM API).
  returned: when IAM was skipped
  type: str
actions:
  description: What changed (or would change in check mode), in order.
  returned: single form
  type: list
  elements: str
  sample: ["create bucket harbor-acme", "set versioning of harbor-acme"]
calls:
  description: The API calls that made the changes (or would, in check mode), with their non-secret parameters.
  returned: single form
  type: list
  elements: str
  sample: ["s3:CreateBucket harbor-acme", "s3:PutBucketVersioning harbor-acme Status=Enabled"]
results:
  description: One entry per tenant, in order, with the single-form fields plus C(changed), C(failed), C(msg).
  returned: list form
  type: list
  elements: dict
failed_tenants:
  description: Ids of the tenants that failed.
  returned: list form
  type: list
  elements: str
summary:
  description: Counts of tenants C(total), C(changed), C(failed), C(skipped).
  returned: list form
  type: dict
  sample: {total: 50, changed: 2, failed: 0, skipped: 0}
"""

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    CONNECTION_SPEC as KUBERNETES_CONNECTION_SPEC)
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import FleetModule
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_buckets import (
    BucketBackend, BucketSpec, check_unique_buckets)
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_client import (
    BOTO3_IMPORT_ERROR, CONNECTION_SPEC, S3Connection, boto3)
from ansible_collections.harborfleet.fleet.plugins.module_utils._s3_iam import DEFAULT_CREDENTIAL_ACTIONS
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant_secrets import SecretStore

TENANT_SPEC = dict(
    bucket=dict(type="str"),
    versioning=dict(type="str", choices=["enabled", "suspended"]),
    encryption=dict(type="bool"),
    abort_incomplete_multipart_days=dict(type="int"),
    noncurrent_version_expiration_days=dict(type="int"),
    tags=dict(type="dict"),
    purge_tags=dict(type="bool", default=True),
    policy=dict(type="json"),
    public_access_block=dict(type="dict", options=dict(
        block_public_acls=dict(type="bool"),
        ignore_public_acls=dict(type="bool"),
        block_public_policy=dict(type="bool"),
        restrict_public_buckets=dict(type="bool"),
    )),
    credentials=dict(type="bool", no_log=False),
    credentials_actions=dict(type="list", elements="str", no_log=False,
                             default=list(DEFAULT_CREDENTIAL_ACTIONS)),
    rotate_credentials=dict(type="bool", default=False, no_log=False),
    delete_access_keys=dict(type="list", elements="str", no_log=False),
)

ARGUMENT_SPEC = dict(
    CONNECTION_SPEC,
    state=dict(type="str", default="present", choices=["present", "absent"]),
    bucket_prefix=dict(type="str", default="harbor-"),
    secret_store=dict(type="dict", no_log=False, options=KUBERNETES_CONNECTION_SPEC),
    force=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=60),
)


def main():
    fm = FleetModule(ARGUMENT_SPEC, TENANT_SPEC, per_tenant_only=("bucket", "delete_access_keys"),
                     libraries={"boto3": (boto3, BOTO3_IMPORT_ERROR)})
    params = fm.params

    def prepare():
        items = fm.tenant_params()
        if params["wait_timeout"] < 0:
            raise TenantInputError("wait_timeout", "must not be negative")
        connection = S3Connection(params, params["concurrency"])
        specs = [BucketSpec(dict(item, force=params["force"]), params["state"], params["bucket_prefix"],
                            connection.region) for item in items]
        return connection, check_unique_buckets(specs)

    connection, specs = fm.guard(prepare)
    store = SecretStore(params["secret_store"]) if params["secret_store"] is not None else None
    backend = BucketBackend(connection, concurrency=params["concurrency"], wait_timeout=params["wait_timeout"],
                            store_secret=store)
    try:
        fm.converge(backend, specs)
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    main()
