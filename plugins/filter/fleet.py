# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the tenants inventory into batch module calls (the logic lives in module_utils/_fleet.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import (
    FleetError, batches, member_settings, retired_keys, storage_keys, upgrade_pending)
from ansible_collections.harborfleet.fleet.plugins.module_utils._postgres import password_matches, scram_verifier


def fleet_batches(tenants, kind, secrets=None, keys=None, versions=None, extra=None, items=None):
    try:
        return batches(tenants, kind, secrets, keys, versions, extra, items)
    except (FleetError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"fleet_batches({kind}): {exc}") from None


def fleet_member(member, kind, logins=None, defaults=None):
    try:
        return member_settings(member, kind, logins, defaults)
    except (FleetError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"fleet_member({kind}): {exc}") from None


def fleet_storage_keys(bucket_results):
    try:
        return storage_keys(bucket_results)
    except (FleetError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"fleet_storage_keys: {exc}") from None


def fleet_retired_keys(bucket_results):
    try:
        return retired_keys(bucket_results)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"fleet_retired_keys: {exc}") from None


def fleet_upgrade_pending(hosts, running, upgrade_to=None):
    try:
        return upgrade_pending(hosts, running or {}, upgrade_to)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"fleet_upgrade_pending: {exc}") from None


def pg_scram_verifier(password, stored="", role=""):
    """``stored`` when it already belongs to ``password``, else a new SCRAM-SHA-256 verifier of it (what PostgreSQL
    stores; it accepts one in place of the plaintext, so the password itself never reaches the server)."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("pg_scram_verifier: the password must be a non-empty string")
    if stored and password_matches(stored, password, role):
        return stored
    return scram_verifier(password)


class FilterModule:
    def filters(self):
        return {"fleet_batches": fleet_batches, "fleet_member": fleet_member, "fleet_storage_keys": fleet_storage_keys,
                "fleet_retired_keys": fleet_retired_keys, "fleet_upgrade_pending": fleet_upgrade_pending,
                "pg_scram_verifier": pg_scram_verifier}
