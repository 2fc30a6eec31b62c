"""fleet_status_report and fleet_status_table: the join of tenants and clusters, problems first, counts, the table."""
from ansible_collections.harborfleet.fleet.plugins.filter.fleet_status import fleet_status_report, fleet_status_table


def host(tid, plan="small", version="2.6.4"):
    return {"harbor_tenant": tid, "harbor_plan": plan, "harbor_region": "eu", "harbor_version": version,
            "harbor_external_url": f"https://{tid}.example.test", "harbor_fleet_file": "/f/fleet.yml"}


def cluster(tid, ready=True, version="2.6.4", status="healthy", conditions=(), reasons=()):
    return {"namespace": f"harbor-{tid}", "name": tid, "tenant": tid, "version": version, "status": status,
            "ready": ready, "conditions": list(conditions), "reasons": list(reasons)}


def test_rows_problems_and_counts():
    failing = [{"type": "DatabaseReady", "status": "False", "reason": "AuthenticationFailed", "message": "bad pw"},
               {"type": "Failed", "status": "True", "reason": "Dependency", "message": "DatabaseReady: bad pw"},
               {"type": "ServiceReady", "status": "True", "reason": "OK", "message": ""}]
    clusters = [cluster("a"), cluster("b", ready=False, status="unhealthy", conditions=failing),
                cluster("c", version="2.6.3"), cluster("stray")]
    report = fleet_status_report(clusters, [host("c"), host("a"), host("b"), host("d", plan="large")],
                                 generated="now")
    rows = {row["id"]: row for row in report["tenants"]}
    assert [row["id"] for row in report["tenants"]] == ["b", "c", "d", "a"]  # problems first
    assert rows["a"]["problem"] == "" and rows["a"]["ready"] is True
    assert rows["b"]["problem"] == "DatabaseReady: AuthenticationFailed (+1 more)"
    assert [c["repeats"] for c in rows["b"]["failing"]] == [False, True]
    assert rows["c"]["drift"] is True and rows["c"]["problem"] == "version 2.6.3, wanted 2.6.4"
    assert rows["d"]["status"] == "missing" and rows["d"]["problem"] == "no HarborCluster harbor-d/d"
    assert report["missing"] == ["d"] and [u["name"] for u in report["unknown"]] == ["stray"]
    counts = report["counts"]
    assert (counts["tenants"], counts["clusters"], counts["ready"], counts["drift"]) == (4, 4, 2, 1)
    assert counts["by_status"] == [{"status": "healthy", "count": 2}, {"status": "unhealthy", "count": 1},
                                   {"status": "missing", "count": 1}]
    assert [v["version"] for v in counts["by_version"]] == ["2.6.3", "2.6.4"]
    assert counts["by_plan"] == [{"plan": "large", "tenants": 1, "ready": 0}, {"plan": "small", "tenants": 3, "ready": 2}]


def test_table_is_aligned_and_long_lists_are_capped():
    hosts = [host(f"t{i:02d}") for i in range(12)]
    lines = fleet_status_table(fleet_status_report([], hosts))
    assert lines[0].split() == ["TENANT", "PLAN", "REGION", "WANTED", "DEPLOYED", "STATUS", "READY", "PROBLEM"]
    assert lines[1].index("small") == lines[0].index("PLAN")
    assert "12 tenants: 0 ready, 12 not ready, 12 without a cluster" in lines[14]
    assert lines[-1].startswith("missing clusters: t00, t01") and lines[-1].endswith("... and 2 more")


def test_topology_shows_members_fullest_first_and_tenants_per_region():
    tiers = {"postgres": {"pg-a": {"capacity": 4}, "pg-b": {"capacity": 2, "regions": ["us"]}},
             "sentinel_groups": {"sg-a": {}}, "s3": {"s3-eu": {}}}
    hosts = []
    for tid, pg, region in (("a", "pg-a", "eu"), ("b", "pg-b", "us"), ("c", "pg-b", "us")):
        hosts.append(dict(host(tid), harbor_region=region, harbor_fleet_tiers=tiers,
                          harbor_placement={"postgres": pg, "sentinel_group": "sg-a", "s3": "s3-eu"}))
    topology = fleet_status_report([], hosts)["topology"]
    assert [(m["kind"], m["name"], m["used"], m["capacity"]) for m in topology["members"]] == [
        ("postgres", "pg-b", 2, 2), ("postgres", "pg-a", 1, 4), ("sentinel_groups", "sg-a", 3, 150),
        ("s3", "s3-eu", 3, None)]
    assert topology["regions"] == [{"region": "eu", "tenants": 1}, {"region": "us", "tenants": 2}]
    lines = fleet_status_table(fleet_status_report([], hosts))
    assert any(line.startswith("fullest tier members: postgres/pg-b 2/2 (100%), postgres/pg-a 1/4 (25%)")
               for line in lines)
