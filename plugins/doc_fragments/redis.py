# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options for a group of Redis Sentinels, shared by the modules that talk to them."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/harborfleet.fleet.redis) in C(module_defaults) to set the Sentinel connection options once for
        every module of the group.
    support: full
    membership:
      - harborfleet.fleet.redis
options:
  sentinels:
    description:
      - Every sentinel of the group, as C(host:port) (C([v6]:port) for IPv6 addresses).
      - A master set must be monitored by all of them; one that is unreachable is reported by name, with whether a
        majority is still reachable, and fails the run after the reachable ones were converged.
    type: list
    elements: str
    required: true
  sentinel_password:
    description: The sentinels' own password (their C(requirepass)), the same on every sentinel of the group.
    type: str
  socket_timeout:
    description: Seconds to wait for a connection or a reply, from a sentinel or a master.
    type: float
    default: 5.0
  tls:
    description:
      - Connect to the sentinels (and to masters, when a password is checked) with TLS.
      - The server certificate is verified against O(tls_ca_cert), or the system's CA store when unset.
    type: bool
    default: false
  tls_ca_cert:
    description: CA certificate file that signed the sentinels' and masters' TLS certificates.
    type: path
requirements:
  - redis (redis-py) >= 4.5
"""
