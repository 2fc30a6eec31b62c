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
      - When neither O(kubeconfig), O(context) nor O(host) is set (nor their environment variables), the client
        uses C(KUBECONFIG) or C(~/.kube/config), or the pod's service account when it runs inside a cluster.
      - Unset, E(K8S_AUTH_KUBECONFIG) is used.
    type: path
  context:
    description:
      - The kubeconfig context to use instead of its current context.
      - Unset, E(K8S_AUTH_CONTEXT) is used.
    type: str
  host:
    description:
      - URL of the API server, e.g. C(https://k8s.example.com:6443). Takes precedence over O(kubeconfig).
      - Use with O(api_key) and O(ca_cert).
      - Unset, E(K8S_AUTH_HOST) is used (what the Automation Platform's Kubernetes credential injects).
    type: str
  api_key:
    description:
      - A bearer token for O(host).
      - Unset, E(K8S_AUTH_API_KEY) is used.
    type: str
  ca_cert:
    description:
      - CA certificate file to verify the API server with.
      - Unset, E(K8S_AUTH_SSL_CA_CERT) is used.
    type: path
  validate_certs:
    description:
      - Verify the API server's TLS certificate (the default).
      - Unset, E(K8S_AUTH_VERIFY_SSL) is used when it is set.
    type: bool
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
