"""Sentinel backend without servers: inputs, the plan against fake sentinels, errors, secrets."""
import pytest
import redis

from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis as rd
from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import apply_plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import FleetError
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import TenantInputError

S1, S2, S3 = ("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)
SENTINELS = ["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"]
MASTER, REPLICA = ("10.0.1.1", 7001), ("10.0.1.2", 7001)
PASSWORD = "TenantPassw0rdTenantPassw0rdTenantPassw0rd"


class World:
    """Fake sentinels (address -> {name: fields}) and masters (address -> password); ``down`` is unreachable."""

    def __init__(self):
        self.sentinels = {S1: {}, S2: {}, S3: {}}
        self.replicas = {}
        self.masters = {MASTER: PASSWORD, REPLICA: PASSWORD}
        self.down = set()
        self.commands = []

    def monitor(self, sentinel, name, address=MASTER, **fields):
        view = {"name": name, "ip": address[0], "port": str(address[1]), "flags": "master",
                "last-ok-ping-reply": "500", "config-epoch": "0", "quorum": "2",
                "down-after-milliseconds": "30000", "failover-timeout": "180000", "parallel-syncs": "1"}
        view.update({k.replace("_", "-"): str(v) for k, v in fields.items()})
        self.sentinels[sentinel][name] = view

    def factory(self, address, password, _params):
        return FakeClient(self, tuple(address), password)


class FakeClient:
    def __init__(self, world, address, password):
        self.world, self.address, self.password = world, address, password

    def _reachable(self):
        if self.address in self.world.down or (self.address not in self.world.sentinels
                                               and self.address not in self.world.masters):
            raise redis.ConnectionError("Error 111 connecting. Connection refused.")

    def execute_command(self, *args):
        self._reachable()
        self.world.commands.append((self.address,) + tuple(str(a) for a in args))
        masters = self.world.sentinels[self.address]
        verb = args[1]
        if verb == "MASTERS":
            return [dict(view) for view in masters.values()]  # the shape redis-py 5+ returns
        if verb == "REPLICAS":
            return [["name", f"{h}:{p}", "ip", h, "port", str(p)]  # the raw shape of older redis-py
                    for h, p in self.world.replicas.get((self.address, args[2]), [])]
        if verb == "MONITOR":
            if args[2] in masters:
                raise redis.ResponseError("Duplicate master name.")
            self.world.monitor(self.address, args[2], (args[3], int(args[4])), quorum=args[5])
            return "OK"
        if verb == "SET":
            view = masters[args[2]]
            pairs = args[3:]
            for key, value in zip(pairs[0::2], pairs[1::2]):
                if key != "auth-pass":
                    view[key] = str(value)
            return "OK"
        if verb == "REMOVE":
            if args[2] not in masters:
                raise redis.ResponseError("No such master with that name")
            del masters[args[2]]
            return "OK"
        raise AssertionError(args)

    def ping(self):
        self._reachable()
        expected = self.world.masters[self.address]
        if self.password != expected:
            raise redis.AuthenticationError("WRONGPASS invalid username-password pair or user is disabled.")
        return True

    def close(self):
        pass


def spec(**params):
    base = dict(tenant="acme", master_host=MASTER[0], master_port=MASTER[1], password=PASSWORD,
                update_password="verify", down_after_milliseconds=30000, failover_timeout=180000, parallel_syncs=1)
    state = params.pop("state", "present")
    base.update(params)
    return rd.MasterSetSpec(base, state, 3)


def backend(world, check_mode=False, **params):
    base = dict(sentinels=SENTINELS, sentinel_password="SentinelPassw0rd", socket_timeout=1.0,
                sentinel_group="eu-1", capacity=150)
    base.update(params)
    return rd.SentinelBackend(base, check_mode=check_mode, client_factory=world.factory)


def plan_for(world, specs, check_mode=False, **params):
    be = backend(world, check_mode=check_mode, **params)
    observed = be.read(specs)
    return be, [be.plan(s, observed[s.key]) for s in specs]


def apply(be, plans):
    for plan in plans:
        apply_plan(plan, None)
        be.finalize(plan, None)


# --------------------------------------------------------------------------- inputs

@pytest.mark.parametrize("value, expected", [
    ("10.0.0.1:26379", ("10.0.0.1", 26379)),
    ("sentinel-a.internal:26379", ("sentinel-a.internal", 26379)),
    ("[fd00::1]:26379", ("fd00::1", 26379)),
])
def test_addresses_parse_and_format_back(value, expected):
    assert rd.parse_address(value, "sentinels") == expected
    assert rd.format_address(expected) == value


@pytest.mark.parametrize("values", [[], ["10.0.0.1"], ["10.0.0.1:0"], ["10.0.0.1:70000"], [":26379"],
                                    ["10.0.0.1:26379", "10.0.0.1:26379"]])
def test_bad_sentinel_lists_name_the_field(values):
    with pytest.raises(TenantInputError) as err:
        rd.parse_sentinels(values)
    assert err.value.field == "sentinels"


@pytest.mark.parametrize("params, field", [
    ({"tenant": "Acme"}, "tenant"),
    ({"master_set": "has space"}, "master_set"),
    ({"master_host": ""}, "master_host"),
    ({"master_port": None}, "master_port"),
    ({"master_port": 70000}, "master_port"),
    ({"password": None}, "password"),
    ({"password": "has%2Fslash"}, "password"),
    ({"quorum": 0}, "quorum"),
    ({"quorum": 4}, "quorum"),
    ({"down_after_milliseconds": 0}, "down_after_milliseconds"),
    ({"parallel_syncs": 0}, "parallel_syncs"),
])
def test_bad_tenant_input_names_the_field(params, field):
    with pytest.raises(TenantInputError) as err:
        spec(**params)
    assert err.value.field == field


def test_names_and_defaults_come_from_the_tenant_model():
    s = spec(tenant="acme-eu", quorum=None)
    assert s.name == "harbor-acme-eu"
    assert s.settings == {"quorum": 2, "down-after-milliseconds": 30000, "failover-timeout": 180000,
                          "parallel-syncs": 1}
    assert spec(state="absent", master_host=None, password=None).name == "harbor-acme"


def test_fields_are_read_from_both_reply_shapes():
    assert rd.as_fields({"name": "x", "port": 1}) == {"name": "x", "port": "1"}
    assert rd.as_fields(["name", "x", "port", "1"]) == {"name": "x", "port": "1"}


@pytest.mark.parametrize("fields, unhealthy", [
    ({"flags": "master", "last-ok-ping-reply": "900"}, False),
    ({"flags": "master,disconnected", "last-ok-ping-reply": "120"}, False),  # a link being re-created
    ({"flags": "master,disconnected", "last-ok-ping-reply": "3500"}, True),
    ({"flags": "s_down,master", "last-ok-ping-reply": "1200"}, True),
    ({"flags": "o_down,s_down,master", "last-ok-ping-reply": "0"}, True),
])
def test_link_health(fields, unhealthy):
    assert rd.link_unhealthy(fields) is unhealthy


# --------------------------------------------------------------------------- plans

def test_new_master_set_is_monitored_then_set_everywhere_and_secrets_are_redacted():
    world = World()
    be, (plan,) = plan_for(world, [spec()])
    assert plan.result["sentinels"] == {s: "added" for s in SENTINELS}
    assert plan.result["password"] == "set" and plan.result["master_address"] == "10.0.1.1:7001"
    records = [c.record for c in plan.changes]
    assert records[:2] == [
        "10.0.0.1:26379: SENTINEL MONITOR harbor-acme 10.0.1.1 7001 2",
        "10.0.0.1:26379: SENTINEL SET harbor-acme auth-pass ******** down-after-milliseconds 30000 "
        "failover-timeout 180000 parallel-syncs 1"]
    assert not any(PASSWORD in r for r in records) and PASSWORD not in str(plan.diff())
    assert plan.diff()["before"]["sentinels"] == {s: None for s in SENTINELS}
    assert ("10.0.1.1", 7001) not in world.down and world.commands.count((S1, "SENTINEL", "MASTERS")) == 1
    written = len(world.commands)
    apply(be, [plan])
    assert all("harbor-acme" in world.sentinels[s] for s in (S1, S2, S3))
    assert any(c[2] == "SET" and c[4] == "auth-pass" and c[5] == PASSWORD for c in world.commands[written:])


def test_converged_state_is_a_single_read_per_sentinel_and_no_change():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme")
    be, plans = plan_for(world, [spec(), spec(tenant="other", master_port=7002)])
    assert not plans[0].changed and plans[0].result["password"] == "unchanged"
    assert plans[0].before == plans[0].after
    assert plans[1].changed  # not registered yet
    reads = [c for c in world.commands if c[2] == "MASTERS"]
    assert len(reads) == 3 and len(world.commands) == 3
    assert be.unreachable == {}


def test_settings_are_set_only_where_they_differ():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme", down_after_milliseconds=(5000 if sentinel == S2 else 30000))
    _be, (plan,) = plan_for(world, [spec()])
    assert [c.record for c in plan.changes] == ["10.0.0.2:26379: SENTINEL SET harbor-acme down-after-milliseconds 30000"]
    assert plan.result["sentinels"]["10.0.0.2:26379"] == "updated"


def test_partial_state_is_repaired_at_the_address_the_other_sentinels_see():
    world = World()
    for sentinel in (S1, S2):  # failed over to the replica, the old master is now its replica
        world.monitor(sentinel, "harbor-acme", REPLICA, config_epoch=1)
        world.replicas[(sentinel, "harbor-acme")] = [MASTER]
    be, (plan,) = plan_for(world, [spec()])
    assert plan.result["sentinels"] == {SENTINELS[0]: "ok", SENTINELS[1]: "ok", SENTINELS[2]: "added"}
    assert plan.changes[0].record == "10.0.0.3:26379: SENTINEL MONITOR harbor-acme 10.0.1.2 7001 2"
    assert plan.result["master_address"] == "10.0.1.2:7001" and plan.result["failed_over"] is True
    apply(be, [plan])
    assert world.sentinels[S3]["harbor-acme"]["ip"] == "10.0.1.2"


def test_a_failover_is_reported_not_undone():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme", REPLICA, config_epoch=3)
        world.replicas[(sentinel, "harbor-acme")] = [MASTER]
    _be, (plan,) = plan_for(world, [spec()])
    assert not plan.changed
    assert plan.result["master_address"] == "10.0.1.2:7001" and plan.result["failed_over"] is True


def test_an_address_that_is_neither_master_nor_replica_is_registered_again():
    world = World()
    world.monitor(S1, "harbor-acme")
    world.monitor(S2, "harbor-acme")
    world.monitor(S3, "harbor-acme", ("10.9.9.9", 6379))
    be, (plan,) = plan_for(world, [spec()])
    assert plan.result["sentinels"][SENTINELS[2]] == "re-registered"
    assert [c.record.split(": ", 1)[1].split(" harbor-acme")[0] for c in plan.changes] == [
        "SENTINEL REMOVE", "SENTINEL MONITOR", "SENTINEL SET"]
    apply(be, [plan])
    assert world.sentinels[S3]["harbor-acme"]["ip"] == MASTER[0]


def test_verify_sets_auth_pass_only_where_the_link_fails_and_the_password_opens_the_master():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme", last_ok_ping_reply=(8000 if sentinel == S2 else 400))
    _be, (plan,) = plan_for(world, [spec()])
    assert [c.record for c in plan.changes] == ["10.0.0.2:26379: SENTINEL SET harbor-acme auth-pass ********"]
    assert plan.result["password"] == "set"

    world.down.add(MASTER)  # cannot check from here: leave it, say so
    _be, (plan,) = plan_for(world, [spec()])
    assert not plan.changed and plan.result["password"] == "unverified"


@pytest.mark.parametrize("mode", ["verify", "always"])
def test_a_password_the_master_refuses_is_an_error_before_any_change(mode):
    world = World()
    world.masters[MASTER] = "SomethingElse"
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme", last_ok_ping_reply=9000)
    be = backend(world)
    observed = be.read([spec(update_password=mode)])
    with pytest.raises(TenantInputError) as err:
        be.plan(spec(update_password=mode), observed["acme"])
    assert err.value.field == "password" and "refuses it" in str(err.value)


def test_always_and_on_create():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme", last_ok_ping_reply=9000)
    _be, (always,) = plan_for(world, [spec(update_password="always")])
    assert len(always.changes) == 3 and always.result["password"] == "set"
    _be, (on_create,) = plan_for(world, [spec(update_password="on_create")])
    assert not on_create.changed


def test_absent_removes_where_present():
    world = World()
    world.monitor(S1, "harbor-acme")
    world.monitor(S3, "harbor-acme")
    be, (plan,) = plan_for(world, [spec(state="absent")])
    assert plan.result["sentinels"] == {SENTINELS[0]: "removed", SENTINELS[1]: "absent", SENTINELS[2]: "removed"}
    assert plan.after["sentinels"] == {s: None for s in SENTINELS}
    apply(be, [plan])
    assert all("harbor-acme" not in world.sentinels[s] for s in (S1, S2, S3))


def test_unreachable_sentinel_is_named_with_majority_and_fails_after_converging_the_others():
    world = World()
    world.down.add(S2)
    warnings = []
    be = rd.SentinelBackend(dict(sentinels=SENTINELS, sentinel_password="x", socket_timeout=1.0,
                                 sentinel_group="eu-1", capacity=0),
                            warn=warnings.append, client_factory=world.factory)
    observed = be.read([spec()])
    plan = be.plan(spec(), observed["acme"])
    assert plan.result["sentinels"]["10.0.0.2:26379"] == "unreachable"
    assert len(plan.changes) == 4 and plan.error is None  # a real run converges the two reachable ones
    for change in plan.changes:
        change.apply(None)
    with pytest.raises(FleetError) as err:
        be.finalize(plan, None)
    message = str(err.value)
    assert "10.0.0.2:26379 (connection refused) unreachable" in message
    assert "2 of 3 sentinels are reachable, a majority" in message and warnings == [message]

    world.down.add(S3)
    be, (plan,) = plan_for(world, [spec()], check_mode=True)
    assert "only 1 of 3 sentinels are reachable" in plan.error  # check mode reports the same failure


def test_no_reachable_sentinel_fails_the_read():
    world = World()
    world.down.update({S1, S2, S3})
    with pytest.raises(FleetError, match="no sentinel of group 'eu-1' is reachable: 10.0.0.1:26379: connection"):
        backend(world).read([spec()])


def test_capacity_refuses_new_master_sets_beyond_it_but_not_existing_ones():
    world = World()
    for sentinel in (S1, S2, S3):
        world.monitor(sentinel, "harbor-acme")
        world.monitor(sentinel, "harbor-other")
    with pytest.raises(FleetError, match="monitors 2 master sets and has a capacity of 2: registering 1 more"):
        backend(world, capacity=2).read([spec(), spec(tenant="third")])
    backend(world, capacity=2).read([spec()])  # converging what is there is fine
    backend(world, capacity=2).read([spec(tenant="third"), spec(tenant="other", state="absent")])  # one leaves
    backend(world, capacity=0).read([spec(tenant="third")])  # 0: no limit


def test_a_failed_write_names_the_sentinel_and_never_the_password():
    world = World()
    be, (plan,) = plan_for(world, [spec()])

    class Refusing(FakeClient):
        def execute_command(self, *args):
            raise redis.ResponseError("refused: " + " ".join(str(a) for a in args))  # echoes its arguments

    be.clients[S1] = Refusing(world, S1, None)
    with pytest.raises(FleetError) as err:
        apply_plan(plan, None)
    assert str(err.value).startswith("sentinel 10.0.0.1:26379: SENTINEL MONITOR harbor-acme failed")
    with pytest.raises(FleetError) as err:  # the SET carries the password: its error text is scrubbed
        plan.changes[1].apply(None)
    assert PASSWORD not in str(err.value) and "auth-pass ********" in str(err.value)


def test_describe_error():
    assert rd.describe_error(FleetError("plain")) == "plain"
    assert rd.describe_error(redis.TimeoutError("x")) == "Redis error: timed out"
    assert rd.describe_error(redis.AuthenticationError("invalid password")).startswith(
        "Redis error: authentication failed")
