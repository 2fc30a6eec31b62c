"""tenant_database against the lab's real PostgreSQL 15."""
import os
import subprocess

import psycopg2
import pytest

from conftest import pg_connect

MODULE = "tenant_database"


@pytest.fixture
def tenants(lab_env, pg_login, run_module):
    """Collects tenant ids used by a test and drops whatever they left behind."""
    created = []
    yield created
    if created:
        run_module(MODULE, dict(pg_login, state="absent", allow_drop=True,
                                tenants=[{"tenant": t, "notary": True} for t in created]))


def without_timestamps(actions):
    return [action.split(" to /")[0] for action in actions]


def tenant_login(lab_env, role, password, dbname):
    return pg_connect(lab_env, user=role, password=password, dbname=dbname)


def server_state(lab_env, role, databases):
    conn = pg_connect(lab_env)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname = %s", (role,))
            roles = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT datname, datconnlimit, datacl::text FROM pg_database WHERE datname = ANY(%s) "
                        "ORDER BY datname", (databases,))
            return roles, cur.fetchall()
    finally:
        conn.close()


def test_create_check_mode_fidelity_idempotence_and_diff(lab_env, pg_login, run_module, tenants, unique):
    tenant = f"db-{unique}"
    tenants.append(tenant)
    args = dict(pg_login, tenant=tenant, password="FirstPassw0rd", notary=True, database_connection_limit=30)
    role, dbs = f"harbor_db_{unique}", [f"db_{unique}_core", f"db_{unique}_notaryserver", f"db_{unique}_notarysigner"]

    predicted = run_module(MODULE, args, check=True, diff=True)
    assert predicted["changed"] is True
    assert server_state(lab_env, role, dbs) == ([], [])  # check mode wrote nothing
    assert predicted["diff"]["before"]["role"] is None
    assert predicted["diff"]["after"]["role"]["password"] == "set"

    real = run_module(MODULE, args, diff=True)
    assert real["changed"] is True
    assert real["actions"] == predicted["actions"]  # the check run predicted exactly this
    assert real["role"] == role and real["databases"] == dbs
    roles, databases = server_state(lab_env, role, dbs)
    assert roles == [role] and [d[0] for d in databases] == sorted(dbs)
    assert all(d[1] == 30 for d in databases)
    assert all("=Tc/" not in d[2] and not d[2].startswith("{=") for d in databases)  # nothing granted to PUBLIC
    assert not any("FirstPassw0rd" in q for q in real["queries"])
    assert any("PASSWORD '********'" in q for q in real["queries"])

    again = run_module(MODULE, args, diff=True)
    assert again["changed"] is False and again["queries"] == []
    assert again["password"] == "unchanged"
    assert again["diff"]["before"] == again["diff"]["after"]

    conn = tenant_login(lab_env, role, "FirstPassw0rd", dbs[0])
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE registry_probe (id int)")  # owner can create objects (Harbor migrations)
    conn.close()


def test_settings_converge_and_diff_shows_what_changes(lab_env, pg_login, run_module, tenants, unique):
    tenant = f"conv-{unique}"
    tenants.append(tenant)
    run_module(MODULE, dict(pg_login, tenant=tenant, password="Passw0rdOne"))
    conn = pg_connect(lab_env)
    with conn.cursor() as cur:  # drift: someone re-granted PUBLIC and changed the limit
        cur.execute(f'GRANT CONNECT ON DATABASE "conv_{unique}_core" TO PUBLIC')
        cur.execute(f'ALTER ROLE "harbor_conv_{unique}" CONNECTION LIMIT 3 CREATEDB')
    conn.commit()
    conn.close()
    args = dict(pg_login, tenant=tenant, password="Passw0rdOne", role_connection_limit=20)
    predicted = run_module(MODULE, args, check=True, diff=True)
    assert predicted["actions"] == [f"alter role harbor_conv_{unique}", f"revoke connect on conv_{unique}_core from PUBLIC"]
    role_diff = (predicted["diff"]["before"]["role"], predicted["diff"]["after"]["role"])
    assert (role_diff[0]["createdb"], role_diff[1]["createdb"]) == (True, False)
    assert (role_diff[0]["connection_limit"], role_diff[1]["connection_limit"]) == (3, 20)
    real = run_module(MODULE, args)
    assert real["actions"] == predicted["actions"]
    assert run_module(MODULE, args)["changed"] is False


def test_password_rotation(lab_env, pg_login, run_module, tenants, unique):
    tenant = f"rot-{unique}"
    tenants.append(tenant)
    role, db = f"harbor_rot_{unique}", f"rot_{unique}_core"
    run_module(MODULE, dict(pg_login, tenant=tenant, password="OldPassw0rd"))
    rotated = run_module(MODULE, dict(pg_login, tenant=tenant, password="NewPassw0rd"), diff=True)
    assert rotated["changed"] is True and rotated["password"] == "changed"
    assert rotated["diff"]["after"]["role"]["password"] == "changed"
    assert "OldPassw0rd" not in str(rotated) and "NewPassw0rd" not in str(rotated)
    tenant_login(lab_env, role, "NewPassw0rd", db).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        tenant_login(lab_env, role, "OldPassw0rd", db)
    on_create = run_module(MODULE, dict(pg_login, tenant=tenant, password="Ignored1", update_password="on_create"))
    assert on_create["changed"] is False


@pytest.mark.reliability
def test_tenants_are_isolated(lab_env, pg_login, run_module, tenants, unique, reliability):
    a, b = f"iso-a-{unique}", f"iso-b-{unique}"
    tenants.extend([a, b])
    items = [{"tenant": a, "password": "PasswordA1"}, {"tenant": b, "password": "PasswordB1"}]
    run_module(MODULE, dict(pg_login, tenants=items))
    own = tenant_login(lab_env, f"harbor_iso_a_{unique}", "PasswordA1", f"iso_a_{unique}_core")
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        tenant_login(lab_env, f"harbor_iso_a_{unique}", "PasswordA1", f"iso_b_{unique}_core")
    own.autocommit = True
    denied = []
    for statement in (f'CREATE ROLE "intruder_{unique}"', f'CREATE DATABASE "intruder_{unique}"',
                      f'GRANT "harbor_iso_b_{unique}" TO "harbor_iso_a_{unique}"'):
        with pytest.raises(psycopg2.Error) as refused, own.cursor() as cur:
            cur.execute(statement)
        assert refused.value.pgcode == "42501", (statement, refused.value.pgcode)  # insufficient_privilege
        denied.append(statement.split()[0:2])
    own.close()
    reliability("isolation", "PostgreSQL: A's role on B's database; CREATE ROLE/DATABASE; GRANT B's role", 4,
                "denied by the server (SQLSTATE 42501 / permission denied for database)")


def test_drop_is_guarded_and_backup_restores(lab_env, pg_login, run_module, tenants, unique, tmp_path):
    tenant = f"drop-{unique}"
    tenants.append(tenant)
    role, db = f"harbor_drop_{unique}", f"drop_{unique}_core"
    run_module(MODULE, dict(pg_login, tenant=tenant, password="DropPassw0rd"))
    conn = tenant_login(lab_env, role, "DropPassw0rd", db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE artifacts (digest text); INSERT INTO artifacts VALUES ('sha256:abc')")
    conn.commit()
    conn.close()

    refused = run_module(MODULE, dict(pg_login, tenant=tenant, state="absent"))
    assert refused["failed"] is True and "allow_drop" in refused["msg"]
    assert server_state(lab_env, role, [db])[0] == [role]

    bad_backup = run_module(MODULE, dict(pg_login, tenant=tenant, state="absent", allow_drop=True,
                                         backup_dir=str(tmp_path / "b"), pg_dump_path="/nonexistent/pg_dump"))
    assert bad_backup["failed"] is True and "nothing dropped" in bad_backup["msg"]
    assert server_state(lab_env, role, [db])[0] == [role]

    predicted = run_module(MODULE, dict(pg_login, tenant=tenant, state="absent", allow_drop=True,
                                        backup_dir=str(tmp_path)), check=True)
    assert predicted["changed"] is True and server_state(lab_env, role, [db])[0] == [role]
    dropped = run_module(MODULE, dict(pg_login, tenant=tenant, state="absent", allow_drop=True,
                                      backup_dir=str(tmp_path)))
    assert dropped["changed"] is True
    assert without_timestamps(dropped["actions"]) == without_timestamps(predicted["actions"])
    assert server_state(lab_env, role, [db]) == ([], [])
    backup, = dropped["backups"]
    assert os.path.exists(backup) and oct(os.stat(backup).st_mode)[-3:] == "600"

    restored = f"restored_{unique}"
    admin = pg_connect(lab_env, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{restored}"')
    admin.close()
    env = dict(os.environ, PGPASSWORD=lab_env["LAB_PG_PASSWORD"])
    subprocess.run(["pg_restore", "--no-owner", "--no-acl", "-h", lab_env["LAB_PG_HOST"], "-p", lab_env["LAB_PG_PORT"],
                    "-U", lab_env["LAB_PG_USER"], "-d", restored, backup], env=env, check=True)
    conn = pg_connect(lab_env, dbname=restored)
    with conn.cursor() as cur:
        cur.execute("SELECT digest FROM artifacts")
        assert cur.fetchall() == [("sha256:abc",)]
    conn.close()
    admin = pg_connect(lab_env, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{restored}"')
    admin.close()
    assert run_module(MODULE, dict(pg_login, tenant=tenant, state="absent"))["changed"] is False


def test_batch_of_fifty_with_one_failing(lab_env, pg_login, run_module, tenants, unique):
    ids = [f"b{i:02d}-{unique}" for i in range(50)]
    tenants.extend(ids)
    broken = ids[17]
    admin = pg_connect(lab_env, autocommit=True)
    with admin.cursor() as cur:  # an existing database the module cannot converge: its encoding is fixed
        cur.execute(f'CREATE DATABASE "{broken.replace("-", "_")}_core" ENCODING \'SQL_ASCII\' '
                    "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    admin.close()
    items = [{"tenant": t, "password": f"Pw{i}x{unique}"} for i, t in enumerate(ids)]
    result = run_module(MODULE, dict(pg_login, tenants=items, concurrency=4))
    assert result["failed"] is True
    assert result["failed_tenants"] == [broken]
    assert result["summary"] == {"total": 50, "changed": 49, "failed": 1, "skipped": 0}
    assert "encoding" in result["results"][17]["msg"]
    again = run_module(MODULE, dict(pg_login, tenants=[i for i in items if i["tenant"] != broken]))
    assert again["changed"] is False and again["summary"]["total"] == 49
    admin = pg_connect(lab_env, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{broken.replace("-", "_")}_core"')
    admin.close()


def test_server_down_is_a_clear_error(pg_login, run_module):
    result = run_module(MODULE, dict(pg_login, login_port=1, tenant="down", password="x", connect_timeout=2))
    assert result["failed"] is True
    assert result["msg"].startswith("PostgreSQL at 127.0.0.1:1 is unreachable")


def test_wrong_admin_password_is_a_clear_error(pg_login, run_module):
    result = run_module(MODULE, dict(pg_login, login_password="wrong", tenant="auth", password="x"))
    assert result["failed"] is True and "authentication failed for user 'fleetadmin'" in result["msg"]


@pytest.mark.parametrize("args, field", [
    ({"tenant": "evil'; DROP DATABASE postgres; --"}, "tenant"),
    ({"tenant": "ok", "prefix": 'x"; DROP ROLE fleetadmin; --'}, "prefix"),
    ({"tenants": [{"tenant": "fine"}, {"tenant": "Robert');--"}]}, "tenant"),
])
def test_injection_like_input_is_rejected_before_any_sql(lab_env, pg_login, run_module, args, field):
    before = server_state(lab_env, "harbor_fine", ["fine_core", "ok_core"])
    result = run_module(MODULE, dict(pg_login, password="NotUsed123", **args) if "tenant" in args else dict(pg_login, **args))
    assert result["failed"] is True and result["field"] == field
    assert server_state(lab_env, "harbor_fine", ["fine_core", "ok_core"]) == before == ([], [])


def test_secrets_never_appear_even_at_vvvv(pg_login, run_module, tenants, unique):
    tenant = f"leak-{unique}"
    tenants.append(tenant)
    secret = f"LeakCanary{unique}"
    for check in (True, False, False):
        rc, text = run_module(MODULE, dict(pg_login, tenant=tenant, password=secret), check=check, diff=True,
                              verbosity=4, raw=True)
        assert rc == 0, text
        assert secret not in text
        assert pg_login["login_password"] not in text
        assert "SCRAM-SHA-256$" not in text
