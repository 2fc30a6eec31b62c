"""The postgres role's server step that creates the collection's admin role, against the lab's real PostgreSQL: the
role is created, a changed password is set (the old one refused by the server itself), a re-run changes nothing,
and neither the password nor its verifier shows in the output at -vvv."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, lab_module, pg_connect

PLAY = """
- name: The admin role step of the postgres role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Create the admin role or set its password
      ansible.builtin.include_role:
        name: harborfleet.fleet.postgres
        tasks_from: admin.yml
"""


def run_admin_step(tmp_path, lab_env, user, password):
    play = tmp_path / "admin.yml"
    play.write_text(PLAY)
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({
        "postgres_admin_user": user, "postgres_admin_password": password, "postgres_port": int(lab_env["LAB_PG_PORT"]),
        "postgres_superuser": lab_env["LAB_PG_USER"], "postgres_socket_dir": str(lab_module.LAB / "postgres"),
        "postgres_become": False}))
    extra.chmod(0o600)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "-i",
                           "localhost,", "-c", "local", "-e", f"@{extra}", str(play)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    recap = [line for line in output.splitlines() if line.startswith("localhost") and "changed=" in line][-1]
    return int(recap.split("changed=")[1].split()[0]), output


def test_the_admin_role_is_created_its_password_updated_and_a_rerun_changes_nothing(tmp_path, lab_env, unique):
    import psycopg2
    user, first, second = f"hf_admin_{unique}", f"FirstPassw0rd{unique}", f"SecondPassw0rd{unique}"
    try:
        changed, output = run_admin_step(tmp_path, lab_env, user, first)
        assert changed == 1
        pg_connect(lab_env, user=user, password=first, dbname="postgres").close()
        assert run_admin_step(tmp_path, lab_env, user, first)[0] == 0

        changed, more = run_admin_step(tmp_path, lab_env, user, second)
        assert changed == 1
        pg_connect(lab_env, user=user, password=second, dbname="postgres").close()
        with pytest.raises(psycopg2.OperationalError) as refused:
            pg_connect(lab_env, user=user, password=first, dbname="postgres")
        assert "password authentication failed" in str(refused.value)
        assert run_admin_step(tmp_path, lab_env, user, second)[0] == 0

        conn = pg_connect(lab_env)
        with conn.cursor() as cur:
            cur.execute("SELECT rolcreaterole, rolcreatedb, rolcanlogin, rolpassword FROM pg_authid "
                        "WHERE rolname = %s", [user])
            createrole, createdb, login, verifier = cur.fetchone()
        conn.close()
        assert createrole and createdb and login and verifier.startswith("SCRAM-SHA-256$")
        for secret in (first, second, verifier, verifier.split("$")[2]):
            assert secret not in output + more
    finally:
        conn = pg_connect(lab_env)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP ROLE IF EXISTS "{user}"')
        conn.close()


SERVER_PLAY = """
- name: The server step of the postgres role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Install and configure the server
      ansible.builtin.include_role:
        name: harborfleet.fleet.postgres
        tasks_from: server.yml
"""

CONF_PLAY = """
- name: The server settings the postgres role writes
  hosts: localhost
  gather_facts: false
  vars:
    postgres_listen_addresses: "*"
    postgres_port: 5432
    postgres_max_connections: 500
    postgres_settings: {}
    postgres_tls: true  # the role's defaults
    postgres_tls_cert_file: ""
    postgres_tls_key_file: ""
  tasks:
    - name: Render the settings file
      ansible.builtin.template:
        src: "{{ role_path_under_test }}/templates/harborfleet.conf.j2"
        dest: "{{ conf_out }}"
        mode: "0600"
"""


def run_play(tmp_path, text, extra):
    play = tmp_path / "play.yml"
    play.write_text(text)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", "-e", json.dumps(extra), str(play)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable))
    return proc.returncode, proc.stdout + proc.stderr


def test_the_server_step_refuses_a_server_without_tls_before_installing_anything(tmp_path):
    rc, output = run_play(tmp_path, SERVER_PLAY, {"postgres_admin_password": "x" * 20})
    assert rc != 0 and "postgres_tls: a fleet's PostgreSQL serves TLS - set postgres_tls_cert_file" in output, output
    assert "Install PostgreSQL packages" not in output  # stopped before the first change


@pytest.mark.parametrize("settings, expected, absent", [
    ({"postgres_tls_cert_file": "/etc/pg/server.crt", "postgres_tls_key_file": "/etc/pg/server.key"},
     ["ssl = on", "ssl_cert_file = '/etc/pg/server.crt'", "ssl_key_file = '/etc/pg/server.key'",
      "ssl_min_protocol_version = 'TLSv1.2'"], ["ssl = off"]),
    ({"postgres_tls": False, "postgres_allow_plain": True}, ["ssl = off"], ["ssl = on"]),
])
def test_the_settings_file_serves_tls_unless_plain_is_allowed(tmp_path, settings, expected, absent):
    out = tmp_path / "harborfleet.conf"
    role = os.path.join(ROOT, "roles", "postgres")
    rc, output = run_play(tmp_path, CONF_PLAY, dict(settings, role_path_under_test=role, conf_out=str(out)))
    assert rc == 0, output
    text = out.read_text()
    assert all(line in text for line in expected) and not any(line in text for line in absent), text
