# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet description: tenants, plans and shared tiers, validated, with deterministic placement.

A fleet file (YAML) holds what people edit::

    defaults: {plan: small, region: eu, harbor_version: 2.6.4, domain: registry.example.com}
    plans: {small: {...}, large: {...}}
    tiers:
      kubernetes: [{name: k8s-eu-1, context: eu-1, regions: [eu], capacity: 300}]
      postgres: [{name: pg-a, host: ..., port: 5432, capacity: 400, regions: [eu]}]
      sentinel_groups: [{name: sg-a, sentinels: ["10.0.0.1:26379", ...], capacity: 120, redis_hosts: [...]}]
      s3: [{name: s3-eu, endpoint: https://..., region: eu-west-1, bucket_prefix: corp-harbor-, wait_timeout: 60}]
    tenants:
      - {id: acme, plan: large, external_url: https://registry.acme.example}
      - {id: globex, placement: {postgres: pg-b}}        # pinned by hand

Placement (which Kubernetes cluster, PostgreSQL server, sentinel group and S3 endpoint a tenant lives on, and its
Redis port in that group: the lowest free port from the group's ``redis_port_base``, default 7000) is recorded on
the tenant's namespace in its cluster (``_k8s_placement``; a legacy ``<fleet file>.placement.yml`` beside the fleet
file is still read). Without a ``kubernetes`` tier every tenant is on the one cluster the connection options name
(the fleet's kubeconfig, the K8S_AUTH_* variables). A tenant keeps its
recorded or pinned placement forever: nothing here ever moves a tenant. New tenants go, in id order, to the tier
member with the most free capacity in their region (ties by name), so the same inputs always give the same
answer, and a full tier is an error naming the tenant, never an overfilled server.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import stat
import tempfile
from urllib.parse import urlparse

try:
    import yaml
    YAML_LOADER = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader  # the C loader is ~5x faster
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    yaml = None

from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    FleetError, TenantInputError, read_ca_bundle)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    DEFAULT_BUCKET_PREFIX, DEFAULT_CAPACITY, DEFAULT_PG_PORT, DEFAULT_PG_SSL_MODE, DEFAULT_REDIS_PORT_BASE,
    DEFAULT_S3_REGION, DEFAULT_S3_WAIT_TIMEOUT, EPHEMERAL_PORTS, PG_SSL_MODES, Tenant, check_spec_overrides,
    validate_dns_label, validate_tenant_id)

PLACED_TIERS = ("kubernetes", "postgres", "sentinel_groups", "s3")
PLACEMENT_KEYS = {"kubernetes": "kubernetes", "postgres": "postgres", "sentinel_groups": "sentinel_group", "s3": "s3"}
TIER_KINDS = PLACED_TIERS
# Tiers added after tenants were recorded: a recorded tenant without one of these was on its first member.
FIRST_MEMBER_TIERS = ("s3", "kubernetes")
# Admin logins never live in the fleet file (it is committed and copied into every tenant's view): they come from
# credentials (vault, the Automation Platform's credentials) by tier member name.
UNBOUNDED = 10 ** 9
GROUP_HOST_KEYS = frozenset(("name", "redis", "sentinel", "address", "sentinel_port", "port_offset", "vars"))
SECRET_KEY_RE = re.compile(r"pass|secret|token|credential|api_key|access_key|private", re.IGNORECASE)
TENANT_KEYS = {"id", "plan", "region", "harbor_version", "external_url", "placement", "overrides", "notary",
               "labels"}


def _tenant_value_problems(tenant):
    """(key, problem) for each tenant value of the wrong type or shape (defaults included), before any use."""
    for key in ("plan", "region"):
        value = tenant.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            yield key, f"{value!r} is not a name"
    version = tenant.get("harbor_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int, float))):
        yield "harbor_version", f"{version!r} is not a version"
    if tenant.get("external_url") is not None and not isinstance(tenant["external_url"], str):
        yield "external_url", "must be a URL string"
    if tenant.get("notary") is not None and not isinstance(tenant["notary"], bool):
        yield "notary", "must be true or false"
    labels = tenant.get("labels")
    if labels is not None and (not isinstance(labels, dict)
                               or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        yield "labels", "must be a mapping of strings to strings"
    if tenant.get("placement") is not None and not isinstance(tenant["placement"], dict):
        yield "placement", "must be a mapping of tier kinds to member names"


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


def merge_records(file_records, cluster_records, record_path="the placement record"):
    """The placement of every tenant recorded somewhere: a legacy record file stays authoritative for the tenants it
    holds (they are copied into the cluster), the cluster's records hold the rest. Where both hold a tenant they
    must agree."""
    merged = dict(cluster_records or {})
    for tid, chosen in (file_records or {}).items():
        recorded = merged.get(tid)
        if recorded is not None and any(recorded.get(k) != v for k, v in chosen.items() if k in recorded):
            raise FleetError(f"tenant {tid!r}: {record_path} places it on {chosen} but the cluster records "
                             f"{recorded}; fix one of them by hand (a tenant is never moved)")
        merged[tid] = dict(recorded or {}, **chosen)
    return merged


def load_fleet(fleet_path, record_path=None):
    """The fleet file and its placement record (``<fleet>.placement.yml`` unless given): ``(Fleet, record)``."""
    record_path = record_path or placement_path(fleet_path)
    recorded = load_yaml(record_path, "placement record") if os.path.exists(record_path) else None
    data = load_yaml(fleet_path, "fleet file")
    try:
        return Fleet(data, recorded, os.path.dirname(os.path.abspath(fleet_path))), recorded
    except FleetError as exc:
        raise FleetError(f"{fleet_path}: {exc}") from None


class Fleet:
    """A validated fleet description plus its recorded placement."""

    def __init__(self, data, placement=None, base_dir=None):
        self.base_dir = base_dir
        if not isinstance(data, dict):
            raise FleetError("the fleet file must be a mapping with 'tenants' (and optionally defaults, plans, tiers)")
        # The fleet's name scopes its placement records: fleets sharing a cluster never count each other's tenants.
        self.name = validate_dns_label(data.get("name") or "default", "name")
        self.defaults = dict(data.get("defaults") or {})
        self.plans = dict(data.get("plans") or {})
        tiers = data.get("tiers") or {}
        if not isinstance(tiers, dict):
            raise FleetError(f"tiers: must be a mapping of tier kind ({', '.join(TIER_KINDS)}) to its members")
        unknown = sorted(set(tiers) - set(TIER_KINDS))
        if unknown:
            raise FleetError(f"tiers.{unknown[0]}: unknown tier kind (one of {', '.join(TIER_KINDS)})")
        self.tiers = {name: list(tiers.get(name) or []) for name in TIER_KINDS}
        self.recorded = self.check_recorded(placement)
        self._members = {}
        self._check_tiers()
        self._by_name = {kind: {m['name']: m for m in members} for kind, members in self.tiers.items()}
        self.tenants = self._check_tenants(data.get("tenants") or [])

    # ------------------------------------------------------------------ validation
    def _check_tiers(self):
        hosts_seen = {}
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
                secret = sorted(key for key in member if SECRET_KEY_RE.search(str(key)))
                if secret:
                    raise FleetError(f"{where}.{secret[0]}: admin credentials do not belong in the fleet file (it is "
                                     "committed and copied into every tenant's view); give them as credentials "
                                     "(vault or the Automation Platform) by member name: fleet_postgres_logins, "
                                     "fleet_s3_logins, fleet_kubernetes_logins")
                capacity = member.get("capacity")
                if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool)
                                             or capacity < 0):
                    raise FleetError(f"{where}.capacity: must be a whole number >= 0")
                if kind in ("postgres", "s3"):
                    self._check_transport(kind, member, where)
                if kind == "sentinel_groups":
                    self._check_group_hosts(member, where, hosts_seen)
                    self._check_group_ports(member, where)
                    if not member.get("sentinels"):
                        raise FleetError(f"{where}.sentinels: a sentinel group needs at least one sentinel host:port "
                                         "(or hosts running sentinels)")

    def _check_transport(self, kind, member, where):
        """TLS unless the fleet says otherwise: a PostgreSQL member's ``ssl_mode`` (verify-full by default), an S3
        member's endpoint (https, or http with ``allow_plain: true``); and ``ca_cert``, a file of the CA certificates
        that sign the store's, relative to the fleet file (kept beside it in the project), read into the member's
        ``ca_bundle``."""
        if kind == "postgres":
            mode = member.get("ssl_mode", DEFAULT_PG_SSL_MODE)
            if mode not in PG_SSL_MODES:
                raise FleetError(f"{where}.ssl_mode: {mode!r} is not one of {', '.join(PG_SSL_MODES)} (default "
                                 f"{DEFAULT_PG_SSL_MODE}; plain transport only by setting disable, allow or prefer)")
        else:
            endpoint = member.get("endpoint")
            if endpoint is not None and (not isinstance(endpoint, str)
                                         or urlparse(endpoint).scheme not in ("http", "https")):
                raise FleetError(f"{where}.endpoint: {endpoint!r} is not an http(s) URL")
            if endpoint and urlparse(endpoint).scheme == "http" and member.get("allow_plain") is not True:
                raise FleetError(f"{where}.endpoint: {endpoint} is plain http, where keys and images travel in "
                                 "clear; use https, or say allow_plain: true on the member")
        ca_cert = member.pop("ca_cert", None)
        if ca_cert is None:
            return
        if not isinstance(ca_cert, str) or not ca_cert:
            raise FleetError(f"{where}.ca_cert: must be the path of a PEM file of CA certificates")
        if self.base_dir and not os.path.isabs(ca_cert):
            ca_cert = os.path.join(self.base_dir, ca_cert)
        try:
            # the certificates travel with the inventory: a job runs in another copy of the project than the sync
            member["ca_bundle"] = read_ca_bundle(ca_cert, f"{where}.ca_cert")
        except TenantInputError as exc:
            raise FleetError(str(exc)) from None

    @staticmethod
    def _check_group_ports(member, where):
        """The group's tenant Redis ports (``redis_port_base`` up to its capacity, plus any host's ``port_offset``)
        stay out of Linux's default ephemeral range, where an outgoing connection can take a port before its
        instance starts; ``ephemeral_ports_reserved: true`` says the hosts reserve them (ip_local_reserved_ports)."""
        base = member.get("redis_port_base", DEFAULT_REDIS_PORT_BASE)
        if not isinstance(base, int) or isinstance(base, bool) or not 0 < base < 65536:
            raise FleetError(f"{where}.redis_port_base: must be a port number")
        if member.get("ephemeral_ports_reserved") is True:
            return
        capacity = member.get("capacity")
        capacity = DEFAULT_CAPACITY["sentinel_groups"] if capacity is None else capacity
        offsets = [h.get("port_offset", 0) for h in member.get("hosts") or [] if isinstance(h, dict)]
        offsets = [o for o in offsets if isinstance(o, int) and not isinstance(o, bool)] or [0]
        low, high = base + min(offsets), base + max(offsets) + max(capacity, 1) - 1
        if low <= EPHEMERAL_PORTS[1] and high >= EPHEMERAL_PORTS[0]:
            raise FleetError(f"{where}.redis_port_base: ports {low}-{high} (base, capacity and port offsets) overlap "
                             f"the kernel's ephemeral range {EPHEMERAL_PORTS[0]}-{EPHEMERAL_PORTS[1]}, where any "
                             "outgoing connection can hold a tenant's port; choose a base below it (default "
                             f"{DEFAULT_REDIS_PORT_BASE}), or reserve the ports on the hosts (ip_local_reserved_ports) "
                             "and set ephemeral_ports_reserved: true")

    @staticmethod
    def _check_group_hosts(member, where, seen):
        """The machines of a sentinel group (``hosts``): each runs the group's sentinel and/or tenant Redis
        instances, belongs to one group only; ``sentinels`` defaults to their addresses."""
        hosts = member.get("hosts")
        if hosts is None:
            return
        if not isinstance(hosts, list) or not hosts:
            raise FleetError(f"{where}.hosts: must be a list of hosts (name, and optionally redis, sentinel, address, "
                             "sentinel_port, port_offset, vars)")
        derived = []
        for index, host in enumerate(hosts):
            at = f"{where}.hosts[{index}]"
            if not isinstance(host, dict) or not host.get("name"):
                raise FleetError(f"{at}: every host needs a name")
            unknown = sorted(set(host) - GROUP_HOST_KEYS)
            if unknown:
                raise FleetError(f"{at}: unknown keys {', '.join(unknown)} (one of {', '.join(sorted(GROUP_HOST_KEYS))})")
            if host["name"] in seen:
                raise FleetError(f"{at}.name: {host['name']!r} is already a host of sentinel group {seen[host['name']]!r} "
                                 "(a host belongs to one group)")
            seen[host["name"]] = member["name"]
            if host.get("sentinel", True):
                derived.append(f"{host.get('address') or host['name']}:{int(host.get('sentinel_port', 26379))}")
        if not any(host.get("redis", True) for host in hosts):
            raise FleetError(f"{where}.hosts: no host runs the tenants' Redis instances (redis: true)")
        member.setdefault("sentinels", derived)

    @staticmethod
    def check_recorded(placement, where="placement record"):
        """A placement record ({tenants: {id: {postgres, sentinel_group, redis_port, s3}}}) as {id: placement}; ids
        by the one id rule, every problem naming ``where`` and the field."""
        if placement is None:
            return {}
        if not isinstance(placement, dict) or not isinstance(placement.get("tenants") or {}, dict):
            raise FleetError(f"{where}: must be a mapping with 'tenants' mapping each tenant id to its placement")
        recorded = {}
        for tid, chosen in (placement.get("tenants") or {}).items():
            try:
                validate_tenant_id(tid, f"{where} tenants key")
            except TenantInputError as exc:
                raise FleetError(str(exc)) from None
            if not isinstance(chosen, dict):
                raise FleetError(f"{where} tenants.{tid}: must be a mapping (postgres, sentinel_group, redis_port)")
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
            try:
                check_spec_overrides(item.get("overrides"), f"{where}.overrides")
            except TenantInputError as exc:
                errors.append(str(exc))
            problems = [f"{where}.{key}: {problem}" for key, problem in _tenant_value_problems(tenant)]
            errors.extend(problems)
            plan = tenant.get("plan")
            if not problems and plan is not None and plan not in self.plans:
                errors.append(f"{where}.plan: unknown plan {plan!r} (plans: {', '.join(sorted(self.plans)) or 'none'})")
            tenants.append(tenant)
        if errors:
            raise FleetError("invalid tenants: " + "; ".join(errors))
        return tenants

    # ------------------------------------------------------------------ placement
    def members(self, kind, region=None):
        """The members of a tier a tenant of ``region`` may be placed on (computed once per kind and region)."""
        key = (kind, region)
        if key not in self._members:
            self._members[key] = [m for m in self.tiers[kind]
                                  if region is None or not m.get("regions") or region in m["regions"]]
        return self._members[key]

    def placement(self):
        """Every tenant's placement: pinned in the fleet file, else recorded, else newly computed.

        Returns ``(placement, new, unplaced)``: {tenant id: {postgres, sentinel_group, redis_port}}, the ids placed
        now, and {tenant id: reason} for tenants that fit nowhere (they are left out of ``placement``, and nothing
        is overfilled: one tenant that does not fit never stops the others).
        """
        result, new, unplaced = {}, {}, {}  # new: an ordered set (dict keys)
        load = {kind: {m["name"]: 0 for m in self.tiers[kind]} for kind in PLACED_TIERS}
        # Tenants gone from the fleet file keep their record (and their load) until they are removed from the
        # backends (their namespace, which holds the record, goes last).
        current = {tenant["id"]: tenant for tenant in self.tenants}
        for tid in sorted(set(current) | set(self.recorded)):
            chosen = dict(self.recorded.get(tid, {}))
            chosen.update((current.get(tid) or {}).get("placement") or {})
            for kind in FIRST_MEMBER_TIERS:
                if tid in self.recorded and kind not in chosen and self.tiers[kind]:
                    # Recorded before this tier was placed: such tenants used its first member; they stay there.
                    chosen[kind] = self.tiers[kind][0]["name"]
                    new[tid] = True
            result[tid] = chosen
            for kind in PLACED_TIERS:
                name = chosen.get(PLACEMENT_KEYS[kind])
                if name is None:
                    continue
                if name not in load[kind]:
                    raise FleetError(f"tenant {tid!r}: placed on {kind} member {name!r}, which is not in "
                                     f"tiers.{kind}; a tenant is never moved silently: fix the fleet file")
                load[kind][name] += 1
        capacity = {kind: {m["name"]: self._capacity(m, kind) for m in self.tiers[kind]} for kind in PLACED_TIERS}
        for tenant in sorted(self.tenants, key=lambda t: t["id"]):
            tid, chosen, taken = tenant["id"], result[tenant["id"]], []
            for kind in PLACED_TIERS:
                key = PLACEMENT_KEYS[kind]
                if chosen.get(key) or not self.tiers[kind]:
                    continue
                best, used, caps = None, load[kind], capacity[kind]
                for member in self.members(kind, tenant.get("region")):  # the most free capacity, ties by name
                    name = member["name"]
                    free = caps[name] - used[name]
                    if free > 0 and (best is None or (-free, name) < best):
                        best = (-free, name)
                if best is None:
                    unplaced[tid] = (f"no {kind} member with free capacity"
                                     + (f" in region {tenant.get('region')!r}" if tenant.get("region") else "")
                                     + "; add a member or raise a capacity")
                    break
                taken.append((kind, key, best[1]))
            if tid in unplaced:
                del result[tid]
                continue
            for kind, key, name in taken:
                chosen[key] = name
                load[kind][name] += 1
            if taken:
                new[tid] = True
        self._assign_redis_ports(result, new)
        return result, list(new), unplaced

    def _assign_redis_ports(self, result, new):
        """Each tenant's Redis port in its sentinel group: the lowest free one from the group's redis_port_base.
        Two tenants of one group on one port (a hand edit) is an error naming both."""
        taken = {}
        for tid, chosen in sorted(result.items()):
            port, group = chosen.get("redis_port"), chosen.get("sentinel_group")
            if port is None or not group:
                continue
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise FleetError(f"tenant {tid!r}: redis_port {port!r} is not a port number")
            other = taken.setdefault(group, {}).get(port)
            if other is not None:
                raise FleetError(f"tenants {other!r} and {tid!r} both have Redis port {port} in sentinel group "
                                 f"{group!r}; give one of them a free port")
            taken[group][port] = tid
        for tid in sorted(result):
            chosen = result[tid]
            group = chosen.get("sentinel_group")
            if group is None or chosen.get("redis_port") is not None:
                continue
            member = self._member("sentinel_groups", group)
            port = int(member.get("redis_port_base", DEFAULT_REDIS_PORT_BASE))
            used = taken.setdefault(group, {})
            while port in used:
                port += 1
            chosen["redis_port"] = port
            used[port] = tid
            new[tid] = True

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
        """Tenants a member takes; an S3 endpoint without a capacity takes any number."""
        capacity = member.get("capacity", DEFAULT_CAPACITY.get(kind))
        return UNBOUNDED if capacity is None else capacity

    def usage(self, placement):
        """{kind: {member: (used, capacity)}} for reports and the capacity check."""
        out = {}
        for kind in PLACED_TIERS:
            out[kind] = {m["name"]: [0, m.get("capacity", DEFAULT_CAPACITY.get(kind))] for m in self.tiers[kind]}
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
        """One tenant's own variables, compact: its settings and its placement (tier members by name; the members
        and the plans themselves are in ``group_vars``, once for the whole fleet)."""
        tid = tenant["id"]
        domain = self.defaults.get("domain")
        external_url = tenant.get("external_url") or (Tenant(tid).external_url(domain) if domain else None)
        out = {
            "harbor_tenant": tid,
            "harbor_plan": tenant.get("plan"),
            "harbor_region": tenant.get("region"),
            "harbor_version": str(tenant["harbor_version"]) if tenant.get("harbor_version") is not None else None,
            "harbor_external_url": external_url,
            "harbor_notary": bool(tenant.get("notary", False)),
            "harbor_placement": dict(placement.get(tid, {})),
        }
        if tenant.get("overrides"):
            out["harbor_overrides"] = copy.deepcopy(tenant["overrides"])
        if tenant.get("labels"):
            out["harbor_labels"] = dict(tenant["labels"])
        return out

    def group_vars(self):
        """What every tenant shares, set once on the group ``tenants``: tier members by kind and name, plans."""
        return {"harbor_fleet_name": self.name,
                "harbor_fleet_tiers": {kind: {m["name"]: copy.deepcopy(m) for m in members}
                                       for kind, members in self.tiers.items()},
                "harbor_fleet_plans": copy.deepcopy(self.plans)}

    def _member(self, kind, name):
        return self._by_name[kind].get(name)


# --------------------------------------------------------------------------- from inventory hosts to module calls

# batch kind -> the tier whose members the batches are per
BATCH_TIERS = {"placement": "kubernetes", "secrets": "kubernetes", "database": "postgres", "redis": "sentinel_groups",
               "bucket": "s3", "cluster": "kubernetes", "database_removal": "postgres",
               "redis_removal": "sentinel_groups", "backup": "postgres"}
BATCH_KINDS = tuple(BATCH_TIERS)

# The cluster of a fleet without a kubernetes tier: the connection options' (fleet_kubeconfig, K8S_AUTH_*).
KUBERNETES = {"name": "kubernetes"}


def _require(values, tenant, purpose, what):
    value = (values.get(tenant) or {}).get(purpose)
    if not value:
        raise FleetError(f"tenant {tenant!r}: no {purpose} {what}; run the secrets step first")
    return value


def batches(tenants, kind, secrets=None, storage_keys=None, versions=None, extra=None, items=None):
    """Group tenants (inventory host variables) into one module call per tier member.

    Returns ``[{"member": <tier member>, "tenants": [<items for the module's tenants option>]}]`` in member order;
    bucket batches are per S3 endpoint and Kubernetes cluster (a new key's secret goes to the tenant's cluster) and
    also carry ``cluster``. ``secrets`` maps tenant → passwords (the ``tenant_passwords`` lookup); ``storage_keys``
    maps tenant → S3 access key id; ``versions`` maps tenant → the Harbor version it runs now: a tenant whose wanted
    version differs keeps it because version changes roll out in gated batches (upgrade_fleet.yml), never all at
    once. ``extra`` is merged into every item; ``items`` (dicts with a ``tenant``) are merged into their tenant's
    item, and tenants without one are left out. Tier connection details stay in ``member``; items only carry what
    differs per tenant.
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
        plan = (host.get("harbor_fleet_plans") or {}).get(host.get("harbor_plan")) or {}
        member = placed_member(host, BATCH_TIERS[kind])
        if not member:
            raise FleetError(f"tenant {tid!r}: no {BATCH_TIERS[kind]} tier member (check the fleet file's tiers)")
        item = {"tenant": tid}
        if kind == "placement":
            item["placement"] = dict(host.get("harbor_placement") or {})
        elif kind == "database":
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
        key = (member["name"],)
        batch = {"member": member, "tenants": []}
        if kind == "bucket":
            batch["cluster"] = placed_member(host, "kubernetes")
            key += (batch["cluster"]["name"],)
        groups.setdefault(key, batch)["tenants"].append(item)
    return [groups[key] for key in sorted(groups)]


def placed_member(host, kind):
    """The tier member of ``kind`` a tenant (inventory host variables) is placed on, from the fleet's tiers; a
    fleet without Kubernetes clusters has the one its connection options name (``KUBERNETES``)."""
    members = (host.get("harbor_fleet_tiers") or {}).get(kind) or {}
    if kind == "kubernetes" and not members:
        return KUBERNETES
    name = (host.get("harbor_placement") or {}).get(PLACEMENT_KEYS[kind])
    return members.get(name) if name else None


def _cluster_item(host, plan, storage_keys):
    tid = host["harbor_tenant"]
    postgres, sentinels = placed_member(host, "postgres"), placed_member(host, "sentinel_groups")
    s3 = placed_member(host, "s3") or {}
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
                     "ssl_mode": postgres.get("ssl_mode", DEFAULT_PG_SSL_MODE), "ca_cert": ca_file(postgres)},
        "cache": {"host": sentinel_host, "port": int(sentinel_port)},
        "storage": {"region": s3.get("region", DEFAULT_S3_REGION), "endpoint": s3.get("endpoint"),
                    "access_key": storage_keys.get(tid), "ca_cert": ca_file(s3)},
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


MEMBER_KINDS = ("s3", "postgres", "kubernetes")
KUBERNETES_CONNECTION = ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs")


def member_settings(member, kind, logins=None, defaults=None):
    """A tier member's connection as module options: its own values over the defaults table, plus its admin login
    from ``logins`` (member name → {access_key, secret_key} for S3, {user, password} for PostgreSQL, any of
    kubeconfig, context, host, api_key, ca_cert, validate_certs for a Kubernetes cluster). A cluster's options left
    unset come from ``defaults`` (the play's connection, such as fleet_kubeconfig), else stay None: the module then
    falls back to the K8S_AUTH_* variables."""
    if kind not in MEMBER_KINDS:
        raise FleetError(f"unknown tier kind {kind!r} (one of {', '.join(MEMBER_KINDS)})")
    if not isinstance(member, dict) or not member.get("name"):
        raise FleetError(f"a {kind} tier member needs a name")
    login = (logins or {}).get(member["name"]) or {}
    if not isinstance(login, dict):
        raise FleetError(f"the admin login of {kind} member {member['name']!r} must be a mapping")
    if kind == "kubernetes":
        out = {}
        for key in KUBERNETES_CONNECTION:
            for source in (login, member, defaults or {}):
                if source.get(key) not in (None, ""):
                    out[key] = source[key]
                    break
            else:
                out[key] = None
        return out
    if kind == "s3":
        prefix, wait = member.get("bucket_prefix"), member.get("wait_timeout")
        return {"endpoint_url": member.get("endpoint") or None, "region": member.get("region") or DEFAULT_S3_REGION,
                "bucket_prefix": DEFAULT_BUCKET_PREFIX if prefix is None else prefix,
                "wait_timeout": DEFAULT_S3_WAIT_TIMEOUT if wait is None else int(wait),
                "access_key": login.get("access_key") or None, "secret_key": login.get("secret_key") or None,
                "ca_bundle": ca_file(member)}
    return {"login_host": member.get("host"), "login_port": int(member.get("port") or DEFAULT_PG_PORT),
            "ssl_mode": member.get("ssl_mode") or DEFAULT_PG_SSL_MODE, "ca_cert": ca_file(member),
            "login_user": login.get("user") or None, "login_password": login.get("password") or None}


def ca_file(member):
    """A path to a tier member's CA certificates for the clients that read a file (libpq, the HarborCluster's trust
    Secret): its ``ca_bundle`` written once per content to the controller's temporary directory; or its own
    ``ca_cert`` path; or None. A file of that name is used only if it is ours and holds exactly these certificates
    (another account on a shared controller could have planted its own CA there)."""
    pem = member.get("ca_bundle")
    if not pem:
        return member.get("ca_cert") or None
    path = os.path.join(tempfile.gettempdir(), f"harborfleet-ca-{hashlib.sha256(pem.encode()).hexdigest()[:20]}.crt")
    try:
        found = os.lstat(path)
        if stat.S_ISREG(found.st_mode) and found.st_uid == os.getuid():
            with open(path, encoding="ascii") as handle:
                if handle.read() == pem:
                    return path
    except (OSError, UnicodeDecodeError):
        pass
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".harborfleet-ca-", suffix=".crt")
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write(pem)
    os.chmod(partial, 0o644)
    try:
        os.replace(partial, path)
    except OSError:  # a file of that name we may not replace: keep our own
        return partial
    return path


def upgrade_pending(hosts, running, target=None):
    """The tenants (inventory host variables) whose cluster runs a version other than ``target`` (or, without it,
    their own ``harbor_version``), in the order given; tenants without a cluster are not upgraded."""
    return [host["inventory_hostname"] for host in hosts
            if host["inventory_hostname"] in running
            and running[host["inventory_hostname"]] != (target or host.get("harbor_version"))]


def fleet_clusters(fleet, logins=None, defaults=None):
    """``[(member, connection)]`` for every Kubernetes cluster of a fleet: a member's own connection (fleet file, its
    login) over ``defaults``; a fleet without a kubernetes tier has the one cluster ``defaults`` name."""
    return [(member, member_settings(member, "kubernetes", logins if fleet.tiers["kubernetes"] else None, defaults))
            for member in fleet.tiers["kubernetes"] or [KUBERNETES]]


# tier -> the variable naming the file of its members' logins (how credentials inject them) and each login's keys
LOGIN_FILES = {"postgres": ("HARBORFLEET_POSTGRES_LOGINS", ("user", "password"), ()),
               "s3": ("HARBORFLEET_S3_LOGINS", ("access_key", "secret_key"), ()),
               "kubernetes": ("HARBORFLEET_KUBERNETES_LOGINS", (), KUBERNETES_CONNECTION)}


def read_logins(tier, environ=None):
    """Member name → admin login of a tier, from the file its variable names (empty when unset)."""
    if tier not in LOGIN_FILES:
        raise FleetError(f"unknown tier {tier!r} (one of {', '.join(LOGIN_FILES)})")
    variable, required, allowed = LOGIN_FILES[tier]
    path = (os.environ if environ is None else environ).get(variable)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            logins = yaml.load(handle, Loader=YAML_LOADER) or {}  # nosec - a safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise FleetError(f"cannot read the file named by {variable} ({type(exc).__name__})") from None
    keys = ", ".join(required or allowed)
    if not isinstance(logins, dict) or not all(
            isinstance(v, dict) and set(required) <= set(v) and (not allowed or set(v) <= set(allowed))
            for v in logins.values()):
        raise FleetError(f"the file named by {variable} must map each {tier} member name to {{{keys}}}")
    return logins


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
