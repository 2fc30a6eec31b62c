# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options for S3-compatible object stores (and their IAM API), shared by the modules that use them."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/harborfleet.fleet.s3) in C(module_defaults) to set the S3 connection options once for
        every module of the group.
    support: full
    membership:
      - harborfleet.fleet.s3
options:
  endpoint_url:
    description:
      - URL of the S3 API, for example C(https://s3.example.net) or C(http://127.0.0.1:8333) (MinIO, Ceph RGW,
        SeaweedFS, OVH, DigitalOcean Spaces...). Leave unset for AWS S3.
      - Must be C(http://) or C(https://) with a host and no path; it is checked before any call is made.
    type: str
    aliases: [s3_url]
  iam_endpoint_url:
    description:
      - URL of the IAM API used for per-tenant credentials.
      - Defaults to O(endpoint_url) when that is set (SeaweedFS serves IAM on its S3 port), otherwise to AWS's
        global IAM endpoint.
    type: str
  region:
    description:
      - Region used to sign requests and, when not C(us-east-1), as the C(LocationConstraint) of new buckets.
      - Also chooses the ARN partition of IAM policies (C(cn-*) is C(aws-cn), C(us-gov-*) is C(aws-us-gov)).
    type: str
    default: us-east-1
  access_key:
    description:
      - Access key id of the administrative identity. With O(secret_key); when both are unset, boto3's own
        credential chain applies (C(AWS_ACCESS_KEY_ID) and friends, shared credentials files, instance roles).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description: Secret access key of O(access_key). Never logged or returned.
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description: Session token for temporary credentials. Never logged or returned.
    type: str
    aliases: [aws_session_token]
  ca_bundle:
    description: CA certificate bundle (PEM file) to verify the endpoints' TLS certificates with.
    type: path
  validate_certs:
    description: Verify TLS certificates. Only set V(false) for a lab; O(ca_bundle) is the better answer.
    type: bool
    default: true
  addressing_style:
    description:
      - V(path) puts the bucket in the URL path (most self-hosted stores), V(virtual) in the host name,
        V(auto) lets botocore choose.
    type: str
    default: auto
    choices: [auto, path, virtual]
  retry_mode:
    description:
      - botocore's retry mode for transient errors (throttling such as C(SlowDown), HTTP 5xx, connection errors),
        with jittered exponential backoff. V(adaptive) also rate-limits the client when the store throttles.
    type: str
    default: standard
    choices: [standard, adaptive]
  max_attempts:
    description: Attempts per API call, the first included, before a transient error is reported.
    type: int
    default: 5
  connect_timeout:
    description: Seconds to wait for a connection to an endpoint.
    type: int
    default: 10
  read_timeout:
    description: Seconds to wait for a response.
    type: int
    default: 60
requirements:
  - boto3 >= 1.28
"""
