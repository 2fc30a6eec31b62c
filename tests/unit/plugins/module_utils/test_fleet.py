"""The fleet description: validation and deterministic, capacity-respecting, sticky placement."""
import pytest

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import Fleet, FleetError, placement_path


def fleet_data(tenants, pg_capacity=(2, 2), sg_capacity=(3,), **extra):
    data = {
        "defaults": {"plan": "small", "harbor_version": "2.6.4", "domain": "registry.example.test"},
        "plans": {"small": {"replicas": 1}, "large": {"replicas": 3}},
        "tiers": {
            "postgres": [{"name": f"pg-{chr(97 + i)}", "host": f"10.0.0.{i}", "capacity": c}
                         for i, c in enumerate(pg_capacity)],
            "sentinel_groups": [{"name": f"sg-{chr(97 + i)}", "sentinels": ["10.0.1.1:26379"], "capacity": c}
                                for i, c in enumerate(sg_capacity)],
            "s3": [{"name": "s3", "endpoint": "https://s3.example.test", "bucket_prefix": "corp-"}],
        },
        "tenants": [{"id": t} if isinstance(t, str) else t for t in tenants],
    }
    data.update(extra)
    return data


def test_new_tenants_spread_by_free_capacity_in_id_order():
    placement, new, unplaced = Fleet(fleet_data(["c", "a", "b"])).placement()
    assert new == ["a", "b", "c"] and unplaced == {}
    assert {t: p["postgres"] for t, p in placement.items()} == {"a": "pg-a", "b": "pg-b", "c": "pg-a"}
    assert all(p["sentinel_group"] == "sg-a" for p in placement.values())


def test_placement_is_deterministic():
    data = fleet_data(["t%d" % i for i in range(4)], pg_capacity=(3, 3), sg_capacity=(2, 2))
    assert Fleet(data).placement() == Fleet(data).placement()


def test_recorded_tenants_never_move_even_when_tiers_change():
    fleet = Fleet(fleet_data(["a", "b"]))
    placement = fleet.placement()[0]
    record = fleet.placement_document(placement)
    grown = fleet_data(["a", "b", "c"], pg_capacity=(2, 2, 10))  # a new, emptier server arrives
    placement2, new = Fleet(grown, record).placement()[:2]
    assert new == ["c"] and placement2["c"]["postgres"] == "pg-c"
    assert placement2["a"] == placement["a"] and placement2["b"] == placement["b"]


def test_a_tenant_that_fits_nowhere_is_left_unplaced_with_its_reason_and_the_others_are_placed():
    placement, new, unplaced = Fleet(fleet_data(["a", "b", "c", "d"], pg_capacity=(5,), sg_capacity=(3,))).placement()
    assert unplaced == {"d": "no sentinel_groups member with free capacity; add a member or raise a capacity"}
    assert sorted(placement) == ["a", "b", "c"] and new == ["a", "b", "c"]


def test_regions_restrict_members():
    data = fleet_data([{"id": "eu1", "region": "eu"}, {"id": "us1", "region": "us"}])
    data["tiers"]["postgres"][0]["regions"] = ["us"]
    data["tiers"]["postgres"][1]["regions"] = ["eu"]
    placement = Fleet(data).placement()[0]
    assert placement["eu1"]["postgres"] == "pg-b" and placement["us1"]["postgres"] == "pg-a"


def test_pinned_placement_wins_and_unknown_members_are_errors():
    placement = Fleet(fleet_data(["a", {"id": "b", "placement": {"postgres": "pg-a"}}])).placement()[0]
    assert placement["b"]["postgres"] == "pg-a" and placement["a"]["postgres"] == "pg-b"
    with pytest.raises(FleetError, match="'x'.*not in tiers.postgres"):
        Fleet(fleet_data([{"id": "x", "placement": {"postgres": "pg-zz"}}])).placement()


def test_removed_tenants_keep_their_record_and_load_until_forgotten():
    fleet = Fleet(fleet_data(["a", "b"], pg_capacity=(1, 1)))
    record = fleet.placement_document(fleet.placement()[0])
    shrunk = Fleet(fleet_data(["b", "c"], pg_capacity=(1, 1)), record)
    assert "c" in shrunk.placement()[2]  # a's server is still occupied by a
    shrunk.forget(["a"])
    placement, new = shrunk.placement()[:2]
    assert new == ["c"] and placement["c"]["postgres"] == record["tenants"]["a"]["postgres"]
    with pytest.raises(FleetError, match="still in the fleet file"):
        shrunk.forget(["b"])


@pytest.mark.parametrize("tenants, message", [
    (["acme", "acme"], "duplicate tenant id 'acme'"),
    (["Bad_Id"], "tenants[0].id"),
    ([{"id": "a", "plan": "huge"}], "unknown plan 'huge'"),
    ([{"id": "a", "colour": "red"}], "unknown keys colour"),
    # overrides may not point a tenant at another tenant's bucket, master set, database or hostname
    ([{"id": "a", "overrides": {"storage": {"spec": {"s3": {"bucket": "harbor-b"}}}}}],
     "tenants[0].overrides: spec.storage.spec.s3.bucket is set by the fleet"),
    ([{"id": "a", "overrides": {"cache": {"spec": {"redis": {"sentinelMasterSet": "harbor-b"}}}}}],
     "tenants[0].overrides: spec.cache.spec.redis.sentinelMasterSet"),
    ([{"id": "a", "overrides": {"database": None}}], "tenants[0].overrides: spec.database is set by the fleet"),
    ([{"id": "a", "overrides": {"expose": {"core": {"ingress": {"host": "b.registry.example.test"}}}}}],
     "spec.expose.core.ingress.host is set by the fleet"),
    ([{"id": "a", "overrides": {"expose": None}}], "spec.expose is set by the fleet"),
    ([{"id": "a", "overrides": ["logLevel", "debug"]}], "tenants[0].overrides: must be a mapping"),
])
def test_invalid_tenants_are_named(tenants, message):
    with pytest.raises(FleetError) as err:
        Fleet(fleet_data(tenants))
    assert message in str(err.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(FleetError) as err:
        Fleet(fleet_data(["ok", "Bad", "ok", "x--y"]))
    text = str(err.value)
    assert "tenants[1].id" in text and "duplicate tenant id 'ok'" in text and "tenants[3].id" in text


def test_tenant_vars_are_compact_and_the_fleet_shares_tiers_and_plans_once():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import placed_member
    fleet = Fleet(fleet_data([{"id": "acme", "plan": "large", "notary": True}]))
    placement = fleet.placement()[0]
    tv = fleet.tenant_vars(fleet.tenants[0], placement)
    assert tv == {"harbor_tenant": "acme", "harbor_plan": "large", "harbor_region": None, "harbor_version": "2.6.4",
                  "harbor_external_url": "https://acme.registry.example.test", "harbor_notary": True,
                  "harbor_placement": {"postgres": "pg-a", "sentinel_group": "sg-a", "redis_port": 7000, "s3": "s3"}}
    host = dict(tv, **fleet.group_vars())
    assert host["harbor_fleet_plans"]["large"] == {"replicas": 3}
    assert placed_member(host, "postgres")["host"] == "10.0.0.0"
    assert placed_member(host, "sentinel_groups")["name"] == "sg-a" and placed_member(host, "s3")["name"] == "s3"


def test_sidecar_path():
    assert placement_path("/x/fleet.yml") == "/x/fleet.placement.yml"
    assert placement_path("/x/fleet.yaml") == "/x/fleet.placement.yml"


def test_redis_ports_are_the_lowest_free_and_sticky():
    data = fleet_data(["a", "b", "c"], sg_capacity=(5,))
    data["tiers"]["sentinel_groups"][0]["redis_port_base"] = 7100
    fleet = Fleet(data)
    placement = fleet.placement()[0]
    assert [placement[t]["redis_port"] for t in "abc"] == [7100, 7101, 7102]
    record = fleet.placement_document(placement)
    del record["tenants"]["b"]
    data["tenants"] = [{"id": t} for t in ("a", "c", "d", "e")]
    placement2 = Fleet(data, record).placement()[0]
    assert placement2["a"]["redis_port"] == 7100 and placement2["c"]["redis_port"] == 7102
    assert placement2["d"]["redis_port"] == 7101 and placement2["e"]["redis_port"] == 7103


@pytest.mark.parametrize("group, message", [
    ({"redis_port_base": 41600}, "ports 41600-41602"),
    ({"redis_port_base": 32700, "capacity": 100}, "ports 32700-32799"),
    ({"redis_port_base": 32600, "capacity": 100, "hosts": [{"name": "r1"}, {"name": "r2", "port_offset": 100}]},
     "ports 32600-32799"),
    ({"redis_port_base": "7000"}, "must be a port number"),
])
def test_redis_ports_in_the_ephemeral_range_are_refused_naming_the_group(group, message):
    data = fleet_data(["a"])
    data["tiers"]["sentinel_groups"][0].update(group)
    with pytest.raises(FleetError) as raised:
        Fleet(data)
    assert str(raised.value).startswith("tiers.sentinel_groups[0].redis_port_base: ") and message in str(raised.value)


def test_reserved_ephemeral_ports_and_ports_below_the_range_are_accepted():
    data = fleet_data(["a"], sg_capacity=(100,))
    data["tiers"]["sentinel_groups"][0].update(redis_port_base=32668)  # 32668-32767: just below
    assert Fleet(data).placement()[0]["a"]["redis_port"] == 32668
    data["tiers"]["sentinel_groups"][0].update(redis_port_base=41600, ephemeral_ports_reserved=True)
    assert Fleet(data).placement()[0]["a"]["redis_port"] == 41600


def host_vars(data, secrets=True):
    fleet = Fleet(data)
    placement = fleet.placement()[0]
    hosts = [dict(fleet.tenant_vars(t, placement), harbor_placement_recorded=True, **fleet.group_vars())
             for t in fleet.tenants]
    values = {h["harbor_tenant"]: {"database": "db-" + h["harbor_tenant"], "cache": "c" + h["harbor_tenant"]}
              for h in hosts} if secrets else {}
    return hosts, values


def test_batches_group_by_tier_member_and_carry_what_differs():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches
    hosts, secrets = host_vars(fleet_data(["a", "b", "c"]))
    db = batches(hosts, "database", secrets)
    assert [b["member"]["name"] for b in db] == ["pg-a", "pg-b"]
    assert db[0]["tenants"] == [{"tenant": "a", "password": "db-a", "notary": False},
                                {"tenant": "c", "password": "db-c", "notary": False}]
    redis = batches(hosts, "redis", secrets)
    assert redis[0]["tenants"][0] == {"tenant": "a", "port": 7000, "password": "ca"}
    bucket = batches(hosts, "bucket", secrets)
    assert all(item["rotate_credentials"] for item in bucket[0]["tenants"])  # no storage secret yet
    cluster = batches(hosts, "cluster", storage_keys={"a": "AKIA1"})
    item = cluster[0]["tenants"][0]
    assert item["expose"] == {"host": "a.registry.example.test", "tls_secret": "a-tls"} and item["storage"]["access_key"] == "AKIA1"
    assert item["database"] == {"host": "10.0.0.0", "port": 5432, "ssl_mode": "verify-full", "ca_cert": None}
    assert item["cache"] == {"host": "10.0.1.1", "port": 26379} and item["bucket_prefix"] == "corp-"


def test_batches_refuse_missing_passwords_and_unknown_members():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches
    hosts = host_vars(fleet_data(["a"]), secrets=False)[0]
    with pytest.raises(FleetError, match="no database password"):
        batches(hosts, "database", {})
    hosts[0]["harbor_placement"] = dict(hosts[0]["harbor_placement"], postgres="pg-gone")
    with pytest.raises(FleetError, match="no postgres tier member"):
        batches(hosts, "database_removal")


def test_running_versions_are_kept_until_the_upgrade_playbook():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches
    hosts = host_vars(fleet_data(["a", "b"]))[0]
    items = batches(hosts, "cluster", versions={"a": "2.6.3"})[0]["tenants"]
    assert [i["version"] for i in items] == ["2.6.3", "2.6.4"]


def test_storage_key_choice_and_rotation_helpers():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import (
        retired_keys, storage_keys)
    results = [{"tenant": "a", "access_key_id": "NEW", "access_keys": ["OLD", "NEW"]},
               {"tenant": "b", "access_keys": ["ONLY"]},
               {"tenant": "c", "access_keys": []}]
    assert storage_keys(results) == {"a": "NEW", "b": "ONLY"}
    assert retired_keys(results) == [{"tenant": "a", "delete_access_keys": ["OLD"]}]
    with pytest.raises(FleetError, match="finish the key rotation"):
        storage_keys([{"tenant": "d", "access_keys": ["K1", "K2"]}])


@pytest.mark.parametrize("tid, message", [
    ("acme\n", "tenants[0].id: 'acme\\n' is not a valid tenant id"),
    (123, "tenants[0].id: a tenant id must be a string, not int"),
])
def test_the_one_id_rule_applies_to_the_fleet_file(tid, message):
    with pytest.raises(FleetError) as info:
        Fleet(fleet_data([{"id": tid}]))
    assert message in str(info.value)


@pytest.mark.parametrize("record, message", [
    ({"tenants": {"acme\n": {"postgres": "pg-a"}}}, "placement record tenants key"),
    ({"tenants": {7: {"postgres": "pg-a"}}}, "must be a string"),
    ([{"acme": {"postgres": "pg-a"}}], "placement record: must be a mapping"),
    ({"tenants": [{"acme": "pg-a"}]}, "placement record: must be a mapping"),
    ({"tenants": {"acme": "pg-a"}}, "placement record tenants.acme: must be a mapping"),
])
def test_a_malformed_placement_record_is_named(record, message):
    with pytest.raises(FleetError, match=message.replace(".", r"\.")):
        Fleet(fleet_data(["acme"]), record)


def test_backup_batches_name_the_databases_but_carry_no_password():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches
    hosts = host_vars(fleet_data(["a", {"id": "b", "notary": True}]))[0]
    batch = batches(hosts, "backup")
    assert [item for b in batch for item in b["tenants"]] == [{"tenant": "a", "notary": False},
                                                              {"tenant": "b", "notary": True}]


def test_a_tier_member_resolves_to_module_options_with_the_defaults_table():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import member_settings
    s3 = member_settings({"name": "s3-eu", "endpoint": "https://s3.eu"}, "s3",
                         {"s3-eu": {"access_key": "AK", "secret_key": "SK"}})
    assert s3 == {"endpoint_url": "https://s3.eu", "region": "us-east-1", "bucket_prefix": "harbor-",
                  "wait_timeout": 60, "access_key": "AK", "secret_key": "SK", "ca_bundle": None}
    assert member_settings({"name": "s", "bucket_prefix": "", "wait_timeout": 0}, "s3")["bucket_prefix"] == ""
    pg = member_settings({"name": "pg-a", "host": "db", "ssl_mode": "verify-full"}, "postgres",
                         {"pg-a": {"user": "admin", "password": "pw"}})
    assert pg == {"login_host": "db", "login_port": 5432, "ssl_mode": "verify-full", "ca_cert": None,
                  "login_user": "admin", "login_password": "pw"}
    with pytest.raises(FleetError, match="unknown tier kind"):
        member_settings({"name": "x"}, "redis")


def test_loop_results_are_kept_per_member_and_extra_and_items_shape_the_batches():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches, storage_keys
    looped = [{"results": [{"tenant": "a", "access_key_id": "K1"}], "changed": True},
              {"results": [{"tenant": "b", "access_keys": ["K2"]}]}, {"skipped": True}]
    assert storage_keys(looped) == {"a": "K1", "b": "K2"}
    hosts = host_vars(fleet_data(["a", "b"]))[0]
    (batch,) = batches(hosts, "bucket", extra={"rotate_credentials": True})
    assert [item["rotate_credentials"] for item in batch["tenants"]] == [True, True]
    (batch,) = batches(hosts, "bucket", items=[{"tenant": "b", "delete_access_keys": ["OLD"]}])
    assert batch["tenants"] == [{"tenant": "b", "delete_access_keys": ["OLD"]}]


def test_two_tenants_on_one_redis_port_are_named():
    fleet = Fleet(fleet_data(["a", "b"], sg_capacity=(5,)))
    record = fleet.placement_document(fleet.placement()[0])
    record["tenants"]["b"]["redis_port"] = record["tenants"]["a"]["redis_port"]
    with pytest.raises(FleetError, match="tenants 'a' and 'b' both have Redis port 7000 in sentinel group 'sg-a'"):
        Fleet(fleet_data(["a", "b"], sg_capacity=(5,)), record).placement()


def test_s3_endpoints_are_placed_in_the_tenants_region_and_legacy_records_keep_the_first():
    data = fleet_data([{"id": "eu1", "region": "eu"}, {"id": "us1", "region": "us"}])
    data["tiers"]["s3"] = [{"name": "s3-eu", "regions": ["eu"]}, {"name": "s3-us", "regions": ["us"]}]
    placement = Fleet(data).placement()[0]
    assert placement["eu1"]["s3"] == "s3-eu" and placement["us1"]["s3"] == "s3-us"
    legacy = {"tenants": {"us1": {"postgres": "pg-a", "sentinel_group": "sg-a", "redis_port": 7000}}}
    assert Fleet(data, legacy).placement()[0]["us1"]["s3"] == "s3-eu"  # where it has always been


@pytest.mark.parametrize("key", ["password", "admin_password", "secret_key", "access_key", "token"])
def test_credentials_in_a_tier_entry_are_refused(key):
    data = fleet_data(["a"])
    data["tiers"]["postgres"][0][key] = "hunter2"
    with pytest.raises(FleetError, match=f"tiers.postgres\\[0\\].{key}: admin credentials do not belong"):
        Fleet(data)


def regions_data():
    """Two regions, each with its own cluster, PostgreSQL server, sentinel group and S3 endpoint."""
    data = fleet_data([{"id": "eu1", "region": "eu"}, {"id": "eu2", "region": "eu"}, {"id": "us1", "region": "us"}])
    data["tiers"] = {
        kind: [dict(member(region), regions=[region]) for region in ("eu", "us")]
        for kind, member in (
            ("kubernetes", lambda r: {"name": f"k8s-{r}", "context": f"ctx-{r}"}),
            ("postgres", lambda r: {"name": f"pg-{r}", "host": f"pg.{r}.test"}),
            ("sentinel_groups", lambda r: {"name": f"sg-{r}", "sentinels": [f"sentinel.{r}.test:26379"]}),
            ("s3", lambda r: {"name": f"s3-{r}", "endpoint": f"https://s3.{r}.test"}))}
    return data


def test_every_tier_places_a_tenant_inside_its_region():
    placement = Fleet(regions_data()).placement()[0]
    for tid, region in (("eu1", "eu"), ("eu2", "eu"), ("us1", "us")):
        assert placement[tid] == {"kubernetes": f"k8s-{region}", "postgres": f"pg-{region}",
                                  "sentinel_group": f"sg-{region}", "s3": f"s3-{region}", "redis_port": placement[tid]["redis_port"]}


def test_a_region_without_a_cluster_leaves_its_tenants_unplaced():
    data = regions_data()
    data["tiers"]["kubernetes"].pop()
    placement, _new, unplaced = Fleet(data).placement()
    assert set(placement) == {"eu1", "eu2"}
    assert unplaced == {"us1": "no kubernetes member with free capacity in region 'us'; add a member or raise a capacity"}


def test_tenants_recorded_before_the_cluster_tier_stay_on_its_first_member():
    legacy = {"tenants": {"us1": {"postgres": "pg-us", "sentinel_group": "sg-us", "redis_port": 7000, "s3": "s3-us"}}}
    placement, new, _unplaced = Fleet(regions_data(), legacy).placement()
    assert placement["us1"]["kubernetes"] == "k8s-eu" and "us1" in new  # recorded again, with its cluster


def test_unknown_tier_kinds_are_named():
    data = fleet_data(["a"])
    data["tiers"]["clusters"] = []
    with pytest.raises(FleetError, match="tiers.clusters: unknown tier kind"):
        Fleet(data)


def test_kubernetes_batches_are_per_cluster_and_buckets_per_endpoint_and_cluster():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import batches
    data = regions_data()
    data["tiers"]["s3"] = [{"name": "s3-all", "endpoint": "https://s3.test"}]  # one store for both regions
    hosts, secrets = host_vars(data)
    assert [(b["member"]["name"], [i["tenant"] for i in b["tenants"]]) for b in batches(hosts, "secrets")] == \
        [("k8s-eu", ["eu1", "eu2"]), ("k8s-us", ["us1"])]
    placed = batches(hosts, "placement")
    assert placed[1]["tenants"] == [{"tenant": "us1", "placement": hosts[2]["harbor_placement"]}]
    bucket = batches(hosts, "bucket", secrets)
    assert [(b["member"]["name"], b["cluster"]["name"], len(b["tenants"])) for b in bucket] == \
        [("s3-all", "k8s-eu", 2), ("s3-all", "k8s-us", 1)]


def test_a_fleet_without_clusters_has_the_one_of_the_connection_options():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import KUBERNETES, batches
    hosts, secrets = host_vars(fleet_data(["a", "b"]))
    assert [b["member"] for b in batches(hosts, "cluster")] == [KUBERNETES]
    assert [b["cluster"] for b in batches(hosts, "bucket", secrets)] == [KUBERNETES]


def test_a_clusters_connection_is_its_login_over_the_fleet_file_over_the_plays():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import member_settings
    member = {"name": "k8s-eu", "context": "ctx-eu", "host": ""}
    assert member_settings(member, "kubernetes", None, {"kubeconfig": "/play/kubeconfig", "context": "other"}) == {
        "kubeconfig": "/play/kubeconfig", "context": "ctx-eu", "host": None, "api_key": None, "ca_cert": None,
        "validate_certs": None}
    login = {"k8s-eu": {"host": "https://eu.test:6443", "api_key": "token-eu"}}
    got = member_settings(member, "kubernetes", login, {"kubeconfig": ""})
    assert got["host"] == "https://eu.test:6443" and got["api_key"] == "token-eu" and got["kubeconfig"] is None


def test_logins_files_are_read_by_tier(tmp_path):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import read_logins
    path = tmp_path / "k8s.yml"
    path.write_text("k8s-eu: {kubeconfig: /run/eu.kubeconfig}\n")
    assert read_logins("kubernetes", {"HARBORFLEET_KUBERNETES_LOGINS": str(path)}) == \
        {"k8s-eu": {"kubeconfig": "/run/eu.kubeconfig"}}
    assert read_logins("kubernetes", {}) == {}
    path.write_text("k8s-eu: {password: x}\n")
    with pytest.raises(FleetError, match="HARBORFLEET_KUBERNETES_LOGINS must map each kubernetes member"):
        read_logins("kubernetes", {"HARBORFLEET_KUBERNETES_LOGINS": str(path)})
    with pytest.raises(FleetError, match="HARBORFLEET_S3_LOGINS must map each s3 member"):
        read_logins("s3", {"HARBORFLEET_S3_LOGINS": str(path)})


def test_overrides_of_fields_the_model_does_not_own_are_kept():
    fleet = Fleet(fleet_data([{"id": "a", "overrides": {"logLevel": "debug", "expose": {"core": {"tls": None}}}}]))
    assert fleet.tenant_vars(fleet.tenants[0], {})["harbor_overrides"]["logLevel"] == "debug"


# --------------------------------------------------------------------------- TLS to PostgreSQL: the tier's CA

PEM = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"


def test_a_postgres_members_ca_is_read_relative_to_the_fleet_file_and_travels_as_text(tmp_path):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import (
        batches, load_fleet, member_settings)
    import yaml
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "pg-ca.crt").write_text(PEM)
    data = fleet_data(["a"])
    data["tiers"]["postgres"][0]["ca_cert"] = "pki/pg-ca.crt"
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(data))
    fleet = load_fleet(str(tmp_path / "fleet.yml"))[0]
    member = fleet.tiers["postgres"][0]
    # the inventory carries the certificate itself: a job runs in another copy of the project than the sync
    assert member["ca_bundle"] == PEM and "ca_cert" not in member
    settings = member_settings(member, "postgres")
    assert settings["ssl_mode"] == "verify-full" and open(settings["ca_cert"]).read() == PEM
    hosts = host_vars(fleet_data(["a"]))[0]
    for host in hosts:
        host["harbor_fleet_tiers"]["postgres"]["pg-a"]["ca_bundle"] = PEM
    item = batches(hosts, "cluster", storage_keys={})[0]["tenants"][0]
    assert item["database"]["ca_cert"] == settings["ca_cert"]


@pytest.mark.parametrize("member, field", [
    ({"ca_cert": "missing.crt"}, "tiers.postgres[0].ca_cert"),
    ({"ca_cert": 5}, "tiers.postgres[0].ca_cert"),
    ({"ssl_mode": "sometimes"}, "tiers.postgres[0].ssl_mode"),
])
def test_a_postgres_members_transport_is_checked_naming_the_field(tmp_path, member, field):
    data = fleet_data(["a"])
    data["tiers"]["postgres"][0].update(member)
    with pytest.raises(FleetError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Fleet(data, base_dir=str(tmp_path))


def test_an_s3_member_is_https_unless_plain_is_allowed_and_its_ca_travels_as_text(tmp_path):
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import member_settings
    data = fleet_data(["a"])
    data["tiers"]["s3"][0]["endpoint"] = "http://minio.internal:9000"
    with pytest.raises(FleetError, match=r"tiers\.s3\[0\]\.endpoint: http://minio.internal:9000 is plain http"):
        Fleet(data)
    data["tiers"]["s3"][0]["allow_plain"] = True
    Fleet(data)  # the explicit opt-in
    (tmp_path / "s3-ca.crt").write_text(PEM)
    data = fleet_data(["a"])
    data["tiers"]["s3"][0]["ca_cert"] = "s3-ca.crt"
    member = Fleet(data, base_dir=str(tmp_path)).tiers["s3"][0]
    assert member["ca_bundle"] == PEM
    assert open(member_settings(member, "s3")["ca_bundle"]).read() == PEM


def test_a_ca_file_of_that_name_is_used_only_when_it_holds_these_certificates(tmp_path, monkeypatch):
    import tempfile
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import ca_file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = ca_file({"ca_bundle": PEM})
    assert open(first).read() == PEM and ca_file({"ca_bundle": PEM}) == first  # written once per content
    planted = PEM.replace("QUJD", "WFla")
    with open(first, "w") as handle:  # someone else's CA under the expected name
        handle.write(planted)
    again = ca_file({"ca_bundle": PEM})
    assert open(again).read() == PEM
    assert ca_file({"ca_cert": "/etc/ssl/pg.crt"}) == "/etc/ssl/pg.crt" and ca_file({}) is None


def test_the_tenants_to_upgrade_are_those_whose_cluster_runs_another_version():
    from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import upgrade_pending
    hosts = [{"inventory_hostname": "a", "harbor_version": "2.6.5"}, {"inventory_hostname": "b", "harbor_version": "2.6.4"},
             {"inventory_hostname": "new", "harbor_version": "2.6.5"}]
    running = {"a": "2.6.4", "b": "2.6.4"}
    assert upgrade_pending(hosts, running) == ["a"]  # b runs what it wants; new has no cluster yet
    assert upgrade_pending(hosts, running, "2.6.5") == ["a", "b"]
    assert upgrade_pending(hosts, {"a": "2.6.5", "b": "2.6.5"}, "2.6.5") == []
