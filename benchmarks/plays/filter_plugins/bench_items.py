# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper filters: shape the benchmark's tenant list into the ``tenants`` items of each batch module.

``tenants`` is the list the harness writes (``tenant``, ``group``, ``master_port``, ``cache_password``,
``cache_host``, ``cache_port``); ``passwords`` is what the ``harborfleet.fleet.tenant_passwords`` lookup read from
the tenants' Secrets (tenant id to {database, cache, admin}), as the fleet playbooks get them.
"""

from __future__ import annotations


def secret_items(tenants):
    """tenant_secrets: the Redis password comes from the Redis tier; the others are generated once."""
    return [{"tenant": t["tenant"], "values": {"cache": t["cache_password"]}} for t in tenants]


def database_items(tenants, passwords):
    return [{"tenant": t["tenant"], "password": passwords[t["tenant"]]["database"]} for t in tenants]


def sentinel_items(tenants, group):
    return [{"tenant": t["tenant"], "master_port": t["master_port"], "password": t["cache_password"]}
            for t in tenants if t["group"] == group]


def bucket_items(tenants):
    return [{"tenant": t["tenant"]} for t in tenants]


def cluster_items(tenants):
    """harbor_cluster: no passwords. tenant_secrets has just written the tenant's Secrets (the source of truth)
    with the operator's data keys, and harbor_cluster keeps an existing Secret when no value is given. Passing
    the passwords again would only cost time: every one becomes a no_log value that Ansible scrubs from every
    string of the result, O(tenants x strings) (65% of a 1,000-tenant no-op of harbor_cluster, measured)."""
    return [{"tenant": t["tenant"], "cache": {"host": t["cache_host"], "port": t["cache_port"]}} for t in tenants]


class FilterModule:
    """The filters, prefixed so they cannot shadow anything else."""

    def filters(self):
        return {
            "harborfleet_bench_secret_items": secret_items,
            "harborfleet_bench_database_items": database_items,
            "harborfleet_bench_sentinel_items": sentinel_items,
            "harborfleet_bench_bucket_items": bucket_items,
            "harborfleet_bench_cluster_items": cluster_items,
        }
