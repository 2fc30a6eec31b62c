"""TLS to the fleet's PostgreSQL servers, against the lab's (which, like a fleet's, takes logins over TCP only with
TLS): the server's own refusal of a plain login, libpq's refusal of a certificate no trusted CA signed, the
modules' verify-full default with the tier's CA, and what they say when the CA is missing or the login is plain."""
import subprocess

import psycopg2
import pytest

from conftest import pg_connect

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory):
    where = tmp_path_factory.mktemp("foreign-ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=not-the-lab-ca", "-keyout", str(where / "ca.key"), "-out", str(where / "ca.crt")],
                   check=True, capture_output=True)
    return str(where / "ca.crt")


def test_the_server_refuses_a_plain_login_and_a_verified_one_is_encrypted(lab_env, foreign_ca, reliability):
    with pytest.raises(psycopg2.OperationalError) as plain:
        pg_connect(lab_env, sslmode="disable", sslrootcert=None)
    # the server's own answer (a refused connection says nothing about pg_hba or encryption)
    assert "no pg_hba.conf entry" in str(plain.value) and "no encryption" in str(plain.value)
    with pytest.raises(psycopg2.OperationalError) as foreign:
        pg_connect(lab_env, sslrootcert=foreign_ca)
    assert "certificate verify failed" in str(foreign.value)
    with pg_connect(lab_env) as conn, conn.cursor() as cur:  # verify-full with the lab's CA
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        encrypted, version = cur.fetchone()
    assert encrypted is True and version in ("TLSv1.2", "TLSv1.3")
    reliability("tls", "PostgreSQL logins: plain, foreign CA, lab CA (verify-full)", 3,
                f"plain refused by the server (no encryption), foreign CA refused, lab CA: {version}")


def test_the_modules_verify_the_server_by_default_and_say_what_is_missing(run_module, pg_login, unique, reliability):
    args = dict(pg_login, tenant=f"tls-{unique}", password="x" * 24)
    no_ca = run_module("tenant_database", {k: v for k, v in args.items() if k != "ca_cert"}, check=True)
    assert no_ca.get("failed") and "could not be verified (ssl_mode verify-full)" in no_ca["msg"], no_ca
    assert "give the CA that signs it in ca_cert" in no_ca["msg"]
    plain = run_module("tenant_database", dict(args, ssl_mode="disable"), check=True)
    assert plain.get("failed") and "only over TLS (hostssl)" in plain["msg"], plain
    verified = run_module("tenant_database", args, check=True)
    assert not verified.get("failed") and verified["changed"] is True, verified
    reliability("tls", "tenant_database: no CA, plain, the tier's CA", 3,
                "verify-full by default; a missing CA and a plain login refused with the reason")
