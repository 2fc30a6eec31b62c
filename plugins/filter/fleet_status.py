# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for fleet_status.yml: join the tenants of the inventory with their clusters, and print the table."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import DEFAULT_CAPACITY, Tenant

# Conditions that are bad when True; every other condition is bad when not True.
BAD_WHEN_TRUE = ("InProgress", "Failed")
STATUS_ORDER = ("healthy", "provisioning", "unknown", "unhealthy", "missing")
COLUMNS = ("TENANT", "PLAN", "REGION", "WANTED", "DEPLOYED", "STATUS", "READY", "PROBLEM")
SHOWN = 10  # names listed in the summary lines before "... and N more"
TIERS = (("kubernetes", "kubernetes"), ("postgres", "postgres"), ("sentinel_groups", "sentinel_group"),
         ("s3", "s3"))


def _topology(hosts):
    """Per tier member: tenants placed against capacity, fullest first (members without a capacity last); and
    tenants per region. What an operator plans capacity with."""
    tiers = (hosts[0].get("harbor_fleet_tiers") or {}) if hosts else {}
    members = []
    for kind, key in TIERS:
        used = {}
        for host in hosts:
            name = (host.get("harbor_placement") or {}).get(key)
            used[name] = used.get(name, 0) + 1
        for name, member in sorted((tiers.get(kind) or {}).items()):
            capacity = member.get("capacity", DEFAULT_CAPACITY.get(kind))
            members.append({"kind": kind, "name": name, "regions": list(member.get("regions") or []),
                            "used": used.get(name, 0), "capacity": capacity,
                            "fill": round(used.get(name, 0) / capacity, 3) if capacity else None})
    members.sort(key=lambda m: (m["fill"] is None, -(m["fill"] or 0), m["kind"], m["name"]))
    regions = {}
    for host in hosts:
        region = host.get("harbor_region") or "(none)"
        regions[region] = regions.get(region, 0) + 1
    return {"members": members, "regions": [{"region": r, "tenants": n} for r, n in sorted(regions.items())]}


def _failing(cluster):
    """The conditions that keep a cluster from being healthy; a message that only repeats an earlier one's is
    flagged (``repeats``), so the report shows it once."""
    failing, shown = [], []
    for cond in cluster.get("conditions") or []:
        if (cond.get("status") == "True") != (cond.get("type") in BAD_WHEN_TRUE):
            continue
        message = cond.get("message") or ""
        failing.append(dict(cond, repeats=any(earlier in message for earlier in shown)))
        if message:
            shown.append(message)
    return failing


def _problem(cluster, failing, key, wanted, drift):
    problems = []
    if cluster is None:
        problems.append(f"no HarborCluster {key}")
    elif failing:
        first = failing[0]
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        problems.append(f"{first['type']}: {first.get('reason') or first.get('status')}{more}")
    elif not cluster.get("ready"):
        problems.append((cluster.get("reasons") or ["not ready"])[0])
    if drift:
        problems.append(f"version {cluster.get('version')}, wanted {wanted}")
    return "; ".join(problems)


def _version_order(version):
    parts = (str(version) + ".0.0.0").split(".")
    numbers = []
    for part in parts[:3]:
        try:
            numbers.append(int(part))
        except ValueError:
            numbers.append(0)
    return (*numbers, str(version))


def fleet_status_report(clusters, hosts, selector=None, generated=None):
    """The report's data: a row per tenant host (plan, region, wanted and deployed version, status, readiness, the
    first problem), the clusters of the selector no tenant owns, and counts by status, version and plan.

    ``clusters``: harbor_cluster_info's ``clusters``; ``hosts``: the tenants' host variables.
    """
    try:
        live = {f"{c['namespace']}/{c['name']}": c for c in clusters or []}
        rows, owned = [], set()
        for host in sorted(hosts or [], key=lambda h: h["harbor_tenant"]):
            names = Tenant(host["harbor_tenant"], bucket_prefix="")
            key = f"{names.namespace}/{names.cluster_name}"
            cluster = live.get(key)
            failing = _failing(cluster) if cluster else []
            if cluster:
                owned.add(key)
            wanted = host.get("harbor_version")
            drift = cluster is not None and wanted is not None and cluster.get("version") != wanted
            rows.append({
                "id": host["harbor_tenant"], "plan": host.get("harbor_plan"), "region": host.get("harbor_region"),
                "wanted": wanted, "deployed": cluster.get("version") if cluster else None,
                "status": cluster.get("status") if cluster else "missing",
                "ready": bool(cluster and cluster.get("ready") is True), "drift": drift,
                "namespace": names.namespace, "name": names.cluster_name,
                "external_url": host.get("harbor_external_url"), "failing": failing,
                "reasons": (cluster.get("reasons") or []) if cluster else [],
                "problem": _problem(cluster, failing, key, wanted, drift)})
        unknown = [{"namespace": c["namespace"], "name": c["name"], "tenant": c.get("tenant"),
                    "version": c.get("version"), "status": c.get("status"), "ready": bool(c.get("ready"))}
                   for key, c in sorted(live.items()) if key not in owned]
        topology = _topology(list(hosts or []))
        # Problems first (not ready, missing, drift), then by id: at fleet size the table starts with what to fix.
        rows.sort(key=lambda row: (row["ready"] and not row["drift"], row["id"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"fleet_status_report: unexpected input ({type(exc).__name__}: {exc})") from None
    return {"tenants": rows, "unknown": unknown, "topology": topology,
            "missing": [row["id"] for row in rows if row["status"] == "missing"],
            "fleet_file": (hosts[0].get("harbor_fleet_file") if hosts else None),
            "selector": selector or "app.kubernetes.io/managed-by=harborfleet", "generated": generated,
            "counts": _counts(rows, unknown, len(clusters or []))}


def _counts(rows, unknown, clusters):
    by_status, by_plan, by_version = {}, {}, {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        plan = by_plan.setdefault(str(row["plan"] or "(none)"), {"tenants": 0, "ready": 0})
        plan["tenants"] += 1
        plan["ready"] += 1 if row["ready"] else 0
        for kind in ("wanted", "deployed"):
            if row[kind]:
                by_version.setdefault(str(row[kind]), {"wanted": 0, "deployed": 0})[kind] += 1
    statuses = [s for s in STATUS_ORDER if s in by_status] + sorted(set(by_status) - set(STATUS_ORDER))
    ready = sum(1 for row in rows if row["ready"])
    return {"tenants": len(rows), "clusters": clusters, "ready": ready, "not_ready": len(rows) - ready,
            "missing": sum(1 for row in rows if row["status"] == "missing"), "unknown": len(unknown),
            "drift": sum(1 for row in rows if row["drift"]),
            "by_status": [{"status": s, "count": by_status[s]} for s in statuses],
            "by_version": [dict(seen, version=version) for version, seen in
                           sorted(by_version.items(), key=lambda item: _version_order(item[0]))],
            "by_plan": [dict(by_plan[plan], plan=plan) for plan in sorted(by_plan)]}


def _capped(names, what="more"):
    shown = ", ".join(names[:SHOWN])
    return shown + (f" ... and {len(names) - SHOWN} {what}" if len(names) > SHOWN else "")


def fleet_status_table(report):
    """The terminal view of a report: the tenant table, then one line per count."""
    try:
        table = [COLUMNS] + [tuple(str(cell) for cell in (
            row["id"], row["plan"] or "-", row["region"] or "-", row["wanted"] or "-", row["deployed"] or "-",
            row["status"], "yes" if row["ready"] else "no", row["problem"] or "-")) for row in report["tenants"]]
        widths = [max(len(cells[column]) for cells in table) for column in range(len(COLUMNS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in table]
        counts = report["counts"]
        lines += [
            "",
            f"{counts['tenants']} tenants: {counts['ready']} ready, {counts['not_ready']} not ready, "
            f"{counts['missing']} without a cluster; {counts['unknown']} unknown clusters; {counts['drift']} on "
            "another version than wanted",
            "by status: " + (", ".join(f"{s['status']} {s['count']}" for s in counts["by_status"]) or "-"),
            "by version (deployed/wanted): " + (", ".join(f"{v['version']} {v['deployed']}/{v['wanted']}"
                                                          for v in counts["by_version"]) or "-"),
            "by plan (ready/tenants): " + (", ".join(f"{p['plan']} {p['ready']}/{p['tenants']}"
                                                     for p in counts["by_plan"]) or "-"),
        ]
        members = (report.get("topology") or {}).get("members") or []
        if members:
            lines.append("fullest tier members: " + ", ".join(
                f"{m['kind']}/{m['name']} {m['used']}/{m['capacity'] if m['capacity'] is not None else '-'}"
                + (f" ({round(100 * m['fill'])}%)" if m["fill"] is not None else "") for m in members[:5]))
        if report["missing"]:
            lines.append("missing clusters: " + _capped(report["missing"]))
        if report["unknown"]:
            names = [f"{u['namespace']}/{u['name']} ({u['status']})" for u in report["unknown"]]
            lines.append("unknown clusters (not in the fleet file): " + _capped(names, "more (see the report)"))
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"fleet_status_table: not a fleet_status_report ({type(exc).__name__}: {exc})") \
            from None
    return lines


class FilterModule:
    def filters(self):
        return {"fleet_status_report": fleet_status_report, "fleet_status_table": fleet_status_table}
