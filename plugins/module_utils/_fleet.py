# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet description: tenants, plans and shared tiers, validated, with deterministic placement.

A fleet file (YAML) holds what people edit::

    defaults: {plan: small, region: eu, harbor_version: 2.6.4, domain: registry.example.com}
    plans: {small: {...}, large: {...}}
    tiers:
      postgres: [{name: pg-a, host: ..., port: 5432, capacity: 400, regions: [eu]}]
      sentinel_groups: [{name: sg-a, sentinels: ["10.0.0.1:26379", ...], capacity: 120, redis_hosts: [...]}]
      s3: [{name: s3-eu, endpoint: https://..., region: eu-west-1, bucket_prefix: corp-harbor-, wait_timeout: 60}]
    tenants:
      - {id: acme, plan: large, external_url: https://registry.acme.example}
      - {id: globex, placement: {postgres: pg-b}}        # pinned by hand

Placement (which PostgreSQL server and which sentinel group a tenant lives on, and its Redis port in that group:
the lowest free port from the group's ``redis_port_base``, default 7000) is recorded in a machine-written
sidecar, ``<fleet file>.placement.yml``, committed next to the fleet file like a lock file. A tenant keeps its
recorded or pinned placement forever: nothing here ever moves a tenant. New tenants go, in id order, to the tier
member with the most free capacity in their region (ties by name), so the same inputs always give the same
answer, and a full tier is an error naming the tenant, never an overfilled server.
"""

from __future__ import annotations

import copy
import os
from urllib.parse import urlparse

try:
    import yaml
    YAML_LOADER = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader  # the C loader is ~5x faster
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    yaml = None

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError, TenantInputError
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    DEFAULT_BUCKET_PREFIX, DEFAULT_CAPACITY, DEFAULT_PG_PORT, DEFAULT_PG_SSL_MODE, DEFAULT_REDIS_PORT_BASE,
    DEFAULT_S3_REGION, DEFAULT_S3_WAIT_TIMEOUT, Tenant, validate_dns_label, validate_tenant_id)

PLACED_TIERS = ("postgres", "sentinel_groups")
PLACEMENT_KEYS = {"postgres": "postgres", "sentinel_groups": "sentinel_group"}
TENANT_KEYS = {"id", "plan", "region", "harbor_version", "external_url", "placement", "overrides", "notary",
               "labels"}


def placement_path(fleet_path):
    """The placement record beside a fleet file: fleet.yml → fleet.placement.yml."""
    root, ext = os.path.splitext(fleet_path)
    return (root if ext in (".yml", ".yaml") else fleet_path) + ".placement.yml"


def load_yaml(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=YAML_LOADER)  # nosec - a safe loader
    except OSError as exc:
        raise FleetError(f"cannot read {what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{what} {path} is not valid YAML: {exc}") from None


def load_fleet(fleet_path, record_path=None):
    """The fleet file and its placement record (``<fleet>.placement.yml`` unless given): ``(Fleet, record)``."""
    record_path = record_path or placement_path(fleet_path)
    recorded = load_yaml(record_path, "placement record") if os.path.exists(record_path) else None
    data = load_yaml(fleet_path, "fleet file")
    try:
        return Fleet(data, recorded), recorded
    except FleetError as exc:
        raise FleetError(f"{fleet_path}: {exc}") from None


class Fleet:
    """A validated fleet description plus its recorded placement."""

    def __init__(self, data, placement=None):
        if not isinstance(data, dict):
            raise FleetError("the fleet file must be a mapping with 'tenants' (and optionally defaults, plans, tiers)")
        self.defaults = dict(data.get("defaults") or {})
        self.plans = dict(data.get("plans") or {})
        self.tiers = {name: list((data.get("tiers") or {}).get(name) or []) for name in
                      ("postgres", "sentinel_groups", "s3", "kubernetes")}
        self.recorded = self._check_recorded(placement)
        self._check_tiers()
        self.tenants = self._check_tenants(data.get("tenants") or [])

    # ------------------------------------------------------------------ validation
    def _check_tiers(self):
        for kind, members in self.tiers.items():
            seen = set()
            for index, member in enumerate(members):
                where = f"tiers.{kind}[{index}]"
                if not isinstance(member, dict) or not member.get("name"):
                    raise FleetError(f"{where}: every tier member needs a name")
                validate_dns_label(member["name"], f"{where}.name")
                if member["name"] in seen:
                    raise FleetError(f"{where}: name {member['name']!r} is used twice")
                seen.add(member["name"])
                if kind in DEFAULT_CAPACITY:
                    capacity = member.get("capacity", DEFAULT_CAPACITY[kind])
                    if not isinstance(capacity, int) or capacity < 0:
                        raise FleetError(f"{where}.capacity: must be a whole number >= 0")
                if kind == "sentinel_groups" and not member.get("sentinels"):
                    raise FleetError(f"{where}.sentinels: a sentinel group needs at least one sentinel host:port")

    @staticmethod
    def _check_recorded(placement):
        """The placement record: {tenants: {id: {postgres, sentinel_group, redis_port}}}, ids by the one id rule."""
        if placement is None:
            return {}
        if not isinstance(placement, dict) or not isinstance(placement.get("tenants") or {}, dict):
            raise FleetError("placement record: must be a mapping with 'tenants' mapping each tenant id to its "
                             "placement")
        recorded = {}
        for tid, chosen in (placement.get("tenants") or {}).items():
            try:
                validate_tenant_id(tid, "placement record tenants key")
            except TenantInputError as exc:
                raise FleetError(str(exc)) from None
            if not isinstance(chosen, dict):
                raise FleetError(f"placement record tenants.{tid}: must be a mapping (postgres, sentinel_group, "
                                 "redis_port)")
            recorded[tid] = dict(chosen)
        return recorded

    def _check_tenants(self, raw):
        if not isinstance(raw, list):
            raise FleetError("tenants: must be a list")
        tenants, errors, seen = [], [], {}
        for index, item in enumerate(raw):
            where = f"tenants[{index}]"
            if not isinstance(item, dict):
                errors.append(f"{where}: must be a mapping with at least an id")
                continue
            unknown = sorted(set(item) - TENANT_KEYS)
            if unknown:
                errors.append(f"{where} ({item.get('id')!r}): unknown keys {', '.join(unknown)}")
            try:
                Tenant(item.get("id"), field=f"{where}.id")
            except TenantInputError as exc:
                errors.append(str(exc))
                continue
            if item["id"] in seen:
                errors.append(f"{where}.id: duplicate tenant id {item['id']!r} (also tenants[{seen[item['id']]}])")
                continue
            seen[item["id"]] = index
            tenant = dict(self.defaults)
            tenant.pop("domain", None)
            tenant.update(item)
            plan = tenant.get("plan")
            if plan is not None and plan not in self.plans:
                errors.append(f"{where}.plan: unknown plan {plan!r} (plans: {', '.join(sorted(self.plans)) or 'none'})")
            tenants.append(tenant)
        if errors:
            raise FleetError("invalid tenants: " + "; ".join(errors))
        return tenants

    # ------------------------------------------------------------------ placement
    def members(self, kind, region=None):
        return [m for m in self.tiers[kind] if region is None or not m.get("regions") or region in m["regions"]]

    def placement(self):
        """Every tenant's placement: pinned in the fleet file, else recorded, else newly computed.

        Returns ``(placement, new)``: {tenant id: {postgres: name, sentinel_group: name}} and the ids placed now.
        """
        result, new = {}, []
        load = {kind: {m["name"]: 0 for m in self.tiers[kind]} for kind in PLACED_TIERS}
        # Tenants gone from the fleet file keep their record (and their load) until they are removed from the
        # backends and forgotten: the removal needs to know where they live.
        current = {tenant["id"]: tenant for tenant in self.tenants}
        for tid in sorted(set(current) | set(self.recorded)):
            chosen = dict(self.recorded.get(tid, {}))
            chosen.update((current.get(tid) or {}).get("placement") or {})
            result[tid] = chosen
            for kind in PLACED_TIERS:
                name = chosen.get(PLACEMENT_KEYS[kind])
                if name is None:
                    continue
                if name not in load[kind]:
                    raise FleetError(f"tenant {tid!r}: placed on {kind} member {name!r}, which is not in "
                                     f"tiers.{kind}; a tenant is never moved silently: fix the fleet file")
                load[kind][name] += 1
        for tenant in sorted(self.tenants, key=lambda t: t["id"]):
            chosen = result[tenant["id"]]
            for kind in PLACED_TIERS:
                key = PLACEMENT_KEYS[kind]
                if chosen.get(key) or not self.tiers[kind]:
                    continue
                candidates = [(self._capacity(m, kind) - load[kind][m["name"]], m["name"])
                              for m in self.members(kind, tenant.get("region"))]
                candidates = [c for c in candidates if c[0] > 0]
                if not candidates:
                    raise FleetError(f"tenant {tenant['id']!r}: no {kind} member with free capacity"
                                     + (f" in region {tenant.get('region')!r}" if tenant.get("region") else "")
                                     + "; add a member or raise a capacity")
                free, name = sorted(candidates, key=lambda c: (-c[0], c[1]))[0]
                chosen[key] = name
                load[kind][name] += 1
                if tenant["id"] not in new:
                    new.append(tenant["id"])
        self._assign_redis_ports(result, new)
        return result, new

    def _assign_redis_ports(self, result, new):
        """Each tenant's Redis port in its sentinel group: the lowest free one from the group's redis_port_base."""
        taken = {}
        for tid, chosen in result.items():
            if chosen.get("redis_port") is not None and chosen.get("sentinel_group"):
                taken.setdefault(chosen["sentinel_group"], set()).add(chosen["redis_port"])
        for tid in sorted(result):
            chosen = result[tid]
            group = chosen.get("sentinel_group")
            if group is None or chosen.get("redis_port") is not None:
                continue
            member = self._member("sentinel_groups", group)
            port = int(member.get("redis_port_base", DEFAULT_REDIS_PORT_BASE))
            used = taken.setdefault(group, set())
            while port in used:
                port += 1
            chosen["redis_port"] = port
            used.add(port)
            if tid not in new:
                new.append(tid)

    def forget(self, tenant_ids):
        """Drop removed tenants from the record; a tenant still in the fleet file cannot be forgotten."""
        current = {tenant["id"] for tenant in self.tenants}
        still = sorted(set(tenant_ids) & current)
        if still:
            raise FleetError(f"cannot forget {', '.join(still)}: still in the fleet file (remove them there first)")
        for tid in tenant_ids:
            self.recorded.pop(tid, None)

    @staticmethod
    def _capacity(member, kind):
        return member.get("capacity", DEFAULT_CAPACITY[kind])

    def usage(self, placement):
        """{kind: {member: (used, capacity)}} for reports and the capacity check."""
        out = {}
        for kind in PLACED_TIERS:
            out[kind] = {m["name"]: [0, self._capacity(m, kind)] for m in self.tiers[kind]}
            for chosen in placement.values():
                name = chosen.get(PLACEMENT_KEYS[kind])
                if name in out[kind]:
                    out[kind][name][0] += 1
        return out

    def placement_document(self, placement):
        """The sidecar file's content: every tenant's placement, sorted, nothing else."""
        return {"tenants": {tid: dict(sorted(placement[tid].items())) for tid in sorted(placement)}}

    # ------------------------------------------------------------------ per-tenant view
    def tenant_vars(self, tenant, placement):
        """Everything a play needs for one tenant: its settings, plan, names and resolved tiers."""
        tid = tenant["id"]
        chosen = placement.get(tid, {})
        s3 = self.tiers["s3"][0] if self.tiers["s3"] else {}
        model = Tenant(tid, bucket_prefix=s3.get("bucket_prefix", DEFAULT_BUCKET_PREFIX))
        domain = self.defaults.get("domain")
        external_url = tenant.get("external_url") or (model.external_url(domain) if domain else None)
        out = {
            "harbor_tenant": tid,
            "harbor_plan": tenant.get("plan"),
            "harbor_plan_settings": copy.deepcopy(self.plans.get(tenant.get("plan"), {})),
            "harbor_region": tenant.get("region"),
            "harbor_version": str(tenant["harbor_version"]) if tenant.get("harbor_version") is not None else None,
            "harbor_external_url": external_url,
            "harbor_notary": bool(tenant.get("notary", False)),
            "harbor_overrides": copy.deepcopy(tenant.get("overrides") or {}),
            "harbor_names": model.names(bool(tenant.get("notary", False))),
            "harbor_placement": dict(chosen),
            "harbor_postgres": self._member("postgres", chosen.get("postgres")),
            "harbor_sentinel_group": self._member("sentinel_groups", chosen.get("sentinel_group")),
            "harbor_s3": copy.deepcopy(s3),
        }
        if tenant.get("labels"):
            out["harbor_labels"] = dict(tenant["labels"])
        return out

    def _member(self, kind, name):
        for member in self.tiers[kind]:
            if member["name"] == name:
                return copy.deepcopy(member)
        return None


# --------------------------------------------------------------------------- from inventory hosts to module calls

BATCH_KINDS = ("secrets", "database", "redis", "bucket", "cluster", "database_removal", "redis_removal", "backup")


KUBERNETES = {"name": "kubernetes"}


def _require(values, tenant, purpose, what):
    value = (values.get(tenant) or {}).get(purpose)
    if not value:
        raise FleetError(f"tenant {tenant!r}: no {purpose} {what}; run the secrets step first")
    return value


def batches(tenants, kind, secrets=None, storage_keys=None, versions=None, extra=None, items=None):
    """Group tenants (inventory host variables) into one module call per tier member.

    Returns ``[{"member": <tier member>, "tenants": [<items for the module's tenants option>]}]`` in member order.
    ``secrets`` maps tenant → passwords (the ``tenant_passwords`` lookup); ``storage_keys`` maps tenant → S3 access
    key id; ``versions`` maps tenant → the Harbor version it runs now: a tenant whose wanted version differs keeps it
    because version changes roll out in gated batches (upgrade_fleet.yml), never all at once. ``extra`` is merged
    into every item; ``items`` (dicts with a ``tenant``) are merged into their tenant's item, and tenants without
    one are left out. Tier connection details stay in ``member``; items only carry what differs per tenant.
    """
    if kind not in BATCH_KINDS:
        raise FleetError(f"unknown batch kind {kind!r} (one of {', '.join(BATCH_KINDS)})")
    secrets = secrets or {}
    storage_keys = storage_keys or {}
    only = None if items is None else {item["tenant"]: item for item in items}
    groups = {}
    for host in tenants:
        tid = host["harbor_tenant"]
        if only is not None and tid not in only:
            continue
        if not host.get("harbor_placement_recorded", True):
            raise FleetError(f"tenant {tid!r}: placement not recorded yet; run harborfleet.fleet.fleet_placement")
        plan = host.get("harbor_plan_settings") or {}
        member = {"database": host.get("harbor_postgres"), "redis": host.get("harbor_sentinel_group"),
                  "bucket": host.get("harbor_s3"), "cluster": KUBERNETES, "secrets": KUBERNETES,
                  "database_removal": host.get("harbor_postgres"), "backup": host.get("harbor_postgres"),
                  "redis_removal": host.get("harbor_sentinel_group")}[kind]
        if not member:
            raise FleetError(f"tenant {tid!r}: no {kind} tier member (check the fleet file's tiers)")
        item = {"tenant": tid}
        if kind == "database":
            item["password"] = _require(secrets, tid, "database", "password")
            item["notary"] = bool(host.get("harbor_notary"))
            for option in ("database_connection_limit", "role_connection_limit"):
                if plan.get(option) is not None:
                    item[option] = plan[option]
        elif kind == "redis":
            item["port"] = host["harbor_placement"]["redis_port"]
            item["password"] = _require(secrets, tid, "cache", "password")
            if plan.get("redis_maxmemory"):
                item["maxmemory"] = plan["redis_maxmemory"]
        elif kind == "bucket" and secrets and not (secrets.get(tid) or {}).get("storage"):
            # No secret key stored for this tenant (first run, or its Secret was lost): a new key is created and
            # stored; keys whose secret nobody has are retired once Harbor runs on the new one.
            item["rotate_credentials"] = True
        elif kind in ("database_removal", "backup"):  # what a dump or the drop needs: the names, no password
            item["notary"] = bool(host.get("harbor_notary"))
        elif kind == "redis_removal":
            item.update(port=host["harbor_placement"]["redis_port"], state="absent")
        elif kind == "cluster":
            item.update(_cluster_item(host, plan, storage_keys))
            running = (versions or {}).get(tid)
            if running and running != item["version"]:
                item["version"] = running
        item.update(extra or {})
        item.update((only or {}).get(tid) or {})
        groups.setdefault(member["name"], {"member": member, "tenants": []})["tenants"].append(item)
    return [groups[name] for name in sorted(groups)]


def _cluster_item(host, plan, storage_keys):
    tid = host["harbor_tenant"]
    postgres, sentinels, s3 = host["harbor_postgres"], host["harbor_sentinel_group"], host.get("harbor_s3") or {}
    sentinel_host, sentinel_port = sentinels["sentinels"][0].rsplit(":", 1)
    external_url = host["harbor_external_url"]
    if not external_url:
        raise FleetError(f"tenant {tid!r}: no external_url (set it, or defaults.domain in the fleet file)")
    ingress_host = urlparse(external_url).hostname
    model = Tenant(tid)
    item = {
        "version": host["harbor_version"],
        "external_url": external_url,
        "expose": {"host": ingress_host, "tls_secret": model.tls_secret},
        "database": {"host": postgres["host"], "port": int(postgres.get("port", DEFAULT_PG_PORT)),
                     "ssl_mode": postgres.get("ssl_mode", DEFAULT_PG_SSL_MODE)},
        "cache": {"host": sentinel_host, "port": int(sentinel_port)},
        "storage": {"region": s3.get("region", DEFAULT_S3_REGION), "endpoint": s3.get("endpoint"),
                    "access_key": storage_keys.get(tid)},
    }
    item["storage"] = {k: v for k, v in item["storage"].items() if v is not None}
    item["bucket_prefix"] = s3.get("bucket_prefix", DEFAULT_BUCKET_PREFIX)
    for option in ("replicas", "core_max_idle_connections", "core_max_open_connections", "log_level"):
        if plan.get(option) is not None:
            item[option] = plan[option]
    if host.get("harbor_notary"):
        item["notary"] = {"enabled": True, "host": Tenant.notary_host(ingress_host)}
    if host.get("harbor_overrides"):
        item["spec_overrides"] = host["harbor_overrides"]
    return item


MEMBER_KINDS = ("s3", "postgres")


def member_settings(member, kind, logins=None):
    """A tier member's connection as module options: its own values over the defaults table, plus its admin login
    from ``logins`` (member name → {access_key, secret_key} for S3, {user, password} for PostgreSQL)."""
    if kind not in MEMBER_KINDS:
        raise FleetError(f"unknown tier kind {kind!r} (one of {', '.join(MEMBER_KINDS)})")
    if not isinstance(member, dict) or not member.get("name"):
        raise FleetError(f"a {kind} tier member needs a name")
    login = (logins or {}).get(member["name"]) or {}
    if not isinstance(login, dict):
        raise FleetError(f"the admin login of {kind} member {member['name']!r} must be a mapping")
    if kind == "s3":
        prefix, wait = member.get("bucket_prefix"), member.get("wait_timeout")
        return {"endpoint_url": member.get("endpoint") or None, "region": member.get("region") or DEFAULT_S3_REGION,
                "bucket_prefix": DEFAULT_BUCKET_PREFIX if prefix is None else prefix,
                "wait_timeout": DEFAULT_S3_WAIT_TIMEOUT if wait is None else int(wait),
                "access_key": login.get("access_key") or None, "secret_key": login.get("secret_key") or None}
    return {"login_host": member.get("host"), "login_port": int(member.get("port") or DEFAULT_PG_PORT),
            "ssl_mode": member.get("ssl_mode") or DEFAULT_PG_SSL_MODE, "ca_cert": member.get("ca_cert") or None,
            "login_user": login.get("user") or None, "login_password": login.get("password") or None}


def tenant_results(results):
    """Per-tenant results from a list-form call's ``results``, or from a loop of such calls (one per tier member,
    each registered item holding its own ``results``): the members' results are kept, never overwritten."""
    out = []
    for result in results or []:
        if "tenant" not in result and isinstance(result.get("results"), list):
            out.extend(tenant_results(result["results"]))
        elif "tenant" in result:
            out.append(result)
    return out


def storage_keys(bucket_results):
    """tenant → the S3 access key id Harbor should use, from tenant_bucket's list-form results.

    A key created by this run wins; otherwise the tenant's only key. Several keys and none created means a
    rotation is half done: an error naming the tenant, rather than a guess.
    """
    keys = {}
    for result in tenant_results(bucket_results):
        tid = result["tenant"]
        if result.get("access_key_id"):
            keys[tid] = result["access_key_id"]
        elif len(result.get("access_keys") or []) == 1:
            keys[tid] = result["access_keys"][0]
        elif result.get("access_keys"):
            raise FleetError(f"tenant {tid!r} has {len(result['access_keys'])} access keys and none was created "
                             "now: finish the key rotation (playbooks/rotate_credentials.yml) first")
    return keys


def retired_keys(bucket_results):
    """tenant_bucket items deleting every key but the one a rotation run has just created (per tenant)."""
    items = []
    for result in tenant_results(bucket_results):
        new = result.get("access_key_id")
        old = [key for key in result.get("access_keys") or [] if key != new]
        if new and old:
            items.append({"tenant": result["tenant"], "delete_access_keys": old})
    return items
