"""sentinel_master's main(): both forms, check mode writes nothing, diff, errors naming the field."""
import json

import pytest
import redis
from ansible.module_utils.testing import patch_module_args

from ansible_collections.harborfleet.fleet.plugins.module_utils import _redis as rd
from ansible_collections.harborfleet.fleet.plugins.modules import sentinel_master

PASSWORD = "TenantPassw0rdTenantPassw0rdTenantPassw0rd"
SENTINELS = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


class FakeSentinels:
    """Three sentinels and the masters they would monitor, in memory; records every command."""

    def __init__(self):
        self.masters = {("127.0.0.1", p): {} for p in (1, 2, 3)}
        self.commands = []

    def client(self, address, password, _params):
        fake = self

        class Client:
            def execute_command(self, *args):
                fake.commands.append(args)
                known = fake.masters[tuple(address)]
                if args[1] == "MASTERS":
                    return list(known.values())
                if args[1] == "MONITOR":
                    known[args[2]] = {"name": args[2], "ip": args[3], "port": str(args[4]), "flags": "master",
                                      "last-ok-ping-reply": "100", "quorum": str(args[5]),
                                      "down-after-milliseconds": "30000", "failover-timeout": "180000",
                                      "parallel-syncs": "1"}
                return "OK"

            def ping(self):
                if password != PASSWORD:
                    raise redis.AuthenticationError("WRONGPASS")
                return True

            def close(self):
                pass

        return Client()


@pytest.fixture
def sentinels(monkeypatch):
    fake = FakeSentinels()
    monkeypatch.setattr(rd, "client", fake.client)
    return fake


def run(args, capsys, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            sentinel_master.main()
    return json.loads(capsys.readouterr().out)


BASE = dict(sentinels=SENTINELS, sentinel_password="SentinelPassw0rd", master_host="127.0.0.1")


def test_check_mode_predicts_and_writes_nothing_then_the_real_run_does_it(sentinels, capsys):
    args = dict(BASE, tenant="acme", master_port=7001, password=PASSWORD)
    predicted = run(args, capsys, check=True, diff=True)
    assert predicted["changed"] is True and len(predicted["actions"]) == 6
    assert not any(c[1] in ("MONITOR", "SET") for c in sentinels.commands)
    assert predicted["diff"]["before"]["sentinels"] == {s: None for s in SENTINELS}
    real = run(args, capsys)
    assert real["actions"] == predicted["actions"]
    assert PASSWORD not in json.dumps(real)
    again = run(args, capsys)
    assert again["changed"] is False and again["master_address"] == "127.0.0.1:7001"


def test_list_form_uses_top_level_defaults(sentinels, capsys):
    result = run(dict(BASE, quorum=3, tenants=[{"tenant": "a", "master_port": 7001, "password": PASSWORD},
                                               {"tenant": "b", "master_port": 7002, "password": PASSWORD,
                                                "quorum": 1}]), capsys)
    assert result["summary"] == {"total": 2, "changed": 2, "failed": 0, "skipped": 0}
    monitors = [c for c in sentinels.commands if c[1] == "MONITOR"]
    assert {(c[2], c[5]) for c in monitors} == {("harbor-a", 3), ("harbor-b", 1)}


@pytest.mark.parametrize("args, field", [
    (dict(BASE, tenant="acme", master_port=7001, password="p@ss"), "password"),
    (dict(BASE, tenant="acme", master_port=7001, password=PASSWORD, quorum=9), "quorum"),
    (dict(BASE, tenant="acme", password=PASSWORD), "master_port"),
    (dict(BASE, sentinels=["nope"], tenant="acme", master_port=7001, password=PASSWORD), "sentinels"),
    (dict(BASE, tenants=[{"tenant": "a"}], password=PASSWORD), "password"),
])
def test_bad_input_fails_naming_the_field_before_any_command(sentinels, capsys, args, field):
    result = run(args, capsys)
    assert result["failed"] is True and result["msg"].startswith(f"{field}:"), result["msg"]
    assert sentinels.commands == []
