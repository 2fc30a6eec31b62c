# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The list form shared by every tenant module."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  concurrency:
    description:
      - List form only. How many tenants are changed at the same time.
      - Reads are done in bulk for all tenants first; only tenants with changes use a worker.
    type: int
    default: 8
  fail_fast:
    description:
      - List form only. Stop starting new tenants after the first failure (tenants already running finish).
      - By default every tenant is attempted and the module fails at the end, listing the tenants that failed.
    type: bool
    default: false
notes:
  - "Two forms: O(tenant) with per-tenant options at the top level converges one tenant; O(tenants) converges a
    list, each item setting any per-tenant option, with the top-level value as the default for items that leave
    it out. Options that identify a single tenant's resources or secrets cannot be set at the top level together
    with O(tenants)."
  - The list form returns RV(results) (one entry per tenant, in order), RV(failed_tenants) and RV(summary); the
    single form returns the same per-tenant fields at the top level.
  - Bad input is refused before anything is changed, with a message naming the option and a C(field) key holding
    its name. Errors in the call as a whole (a tenant listed twice, a per-tenant-only option at the top level, a
    concurrency out of range, a malformed endpoint or connection option) and values that can be checked on their
    own (an id, a name, a prefix, a number out of range) fail the task before any server is contacted. A value
    that only the servers' state can rule out fails that tenant alone, before any of its changes, and the others
    are converged unless O(fail_fast=true); its entry in RV(results) carries C(msg) and C(field).
"""
