# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options for the Kubernetes API, shared by the modules that talk to it."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/harborfleet.fleet.kubernetes) in C(module_defaults) to set the Kubernetes connection options once for
        every module of the group.
    support: full
    membership:
      - harborfleet.fleet.kubernetes
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - When neither O(kubeconfig), O(context) nor O(host) is set, the client uses C(KUBECONFIG) or
        C(~/.kube/config), or the pod's service account when it runs inside a cluster.
    type: path
  context:
    description: The kubeconfig context to use instead of its current context.
    type: str
  host:
    description:
      - URL of the API server, e.g. C(https://k8s.example.com:6443). Takes precedence over O(kubeconfig).
      - Use with O(api_key) and O(ca_cert).
    type: str
  api_key:
    description: A bearer token for O(host).
    type: str
  ca_cert:
    description: CA certificate file to verify the API server with.
    type: path
  validate_certs:
    description: Verify the API server's TLS certificate.
    type: bool
    default: true
  request_timeout:
    description: Seconds to wait for each API call.
    type: int
    default: 30
requirements:
  - kubernetes (the Python client) >= 30
notes:
  - One API client per module run, shared by all tenants; throttling (HTTP 429) and unavailable servers
    (502/503/504, connection errors) are retried with back-off, other errors are reported at once.
"""
