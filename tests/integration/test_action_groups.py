"""module_defaults per backend: one connection set once for every module of the group, and no other module hurt."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_module_defaults_for_a_backend_group(lab_env, tmp_path):
    fleet = tmp_path / "fleet.yml"
    fleet.write_text("tenants: [{id: group-a}]\n")
    play = [{"hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/harborfleet.fleet.kubernetes": {"kubeconfig": lab_env["LAB_KUBECONFIG"]},
                                 "group/harborfleet.fleet.postgres": {
                                     "login_host": lab_env["LAB_PG_HOST"], "login_port": int(lab_env["LAB_PG_PORT"]),
                                     "login_user": lab_env["LAB_PG_USER"], "login_password": lab_env["LAB_PG_PASSWORD"],
                                     "ca_cert": lab_env["LAB_CA_CERT"]}},
             "tasks": [
                 {"name": "Kubernetes connection from the group's defaults",
                  "harborfleet.fleet.harbor_cluster_info": {"tenants": ["group-a"]}, "register": "info"},
                 {"name": "PostgreSQL connection from the group's defaults (check mode: nothing is created)",
                  "harborfleet.fleet.tenant_database": {"tenant": "group-a", "password": "x" * 20},
                  "check_mode": True, "register": "db"},
                 {"name": "A module outside the groups is not given their options",
                  "harborfleet.fleet.fleet_placement": {"fleet_file": str(fleet)}, "check_mode": True},
                 {"name": "Results", "ansible.builtin.assert": {"that": [
                     "info.clusters == []", "db.changed", "'create role harbor_group_a' in db.actions"]}},
             ]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
