"""Fixtures for integration tests: the lab's real services, read from the env file `make lab-up` writes."""
import json
import os
import sys
import tempfile
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))

import lab as lab_module  # noqa: E402  pylint: disable=wrong-import-position


def wait_for(predicate, timeout=60, interval=0.5):
    """Poll until ``predicate()`` returns something truthy and return its last value (how long it took is never
    asserted)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run_playbook(fleet_dir, name, *extra, env=None, timeout=1200):
    """ansible-playbook with the lab's Redis tier hosts and a fleet of the test's own; (rc, stdout + stderr)."""
    import subprocess
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", os.path.join(ROOT, "inventories", "lab", "hosts.yml"),
               "-i", os.path.join(fleet_dir, "fleet.tenants.yml"),
               "-e", f"fleet_file={os.path.join(fleet_dir, 'fleet.yml')}",
               os.path.join(ROOT, "playbooks", name), *extra]
    full_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                    HARBORFLEET_LAB_DIR=str(lab_module.LAB),
                    K8S_AUTH_KUBECONFIG=os.path.join(str(lab_module.LAB), "kube", "kubeconfig"))
    full_env.update(env or {})
    proc = subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=ROOT, check=False,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def lab_port(env, port):
    """A default-lab port (the fleets' Redis tier ports, 31300-31999) as the running lab uses it."""
    return port + int(env.get("LAB_PORT_OFFSET", 0))


def read_lab_env():
    with open(os.path.join(str(lab_module.LAB), "env.json"), encoding="utf-8") as handle:
        return json.load(handle)


def lab_tiers(env, redis_port_base, bucket_prefix, capacity=20):
    """The lab's tiers as a fleet file lists them: its PostgreSQL and S3 store, and the lab's Redis tier machines
    (three logical hosts, as in fleets/lab/fleet.yml) with this fleet's Redis ports."""
    hosts = [{"name": "lab-redis-1", "address": "127.0.0.1", "sentinel_port": lab_port(env, 31580)},
             {"name": "lab-redis-2", "address": "127.0.0.1", "sentinel_port": lab_port(env, 31581),
              "port_offset": 100},
             {"name": "lab-sentinel-3", "address": "127.0.0.1", "sentinel_port": lab_port(env, 31582),
              "redis": False}]
    return {
        "postgres": [{"name": "lab-pg", "host": env["LAB_PG_HOST"], "port": int(env["LAB_PG_PORT"]),
                      "ca_cert": env["LAB_CA_CERT"]}],  # TLS, verify-full by default
        "sentinel_groups": [{"name": "lab-sg", "capacity": capacity, "redis_port_base": lab_port(env, redis_port_base),
                             "hosts": hosts}],  # sentinels: the hosts' addresses
        "s3": [{"name": "lab-s3", "endpoint": env["LAB_S3_ENDPOINT"], "ca_cert": env["LAB_CA_CERT"],
                "region": env["LAB_S3_REGION"],
                "bucket_prefix": bucket_prefix, "wait_timeout": 0}],
    }


def write_fleet(fleet_dir, ids, version="2.6.4", redis_port_base=31680, bucket_prefix="up-harbor-",
                domain="upgrade.lab.test", capacity=20):
    """A fleet file on the lab's services (and the inventory source that reads it) in ``fleet_dir``."""
    import yaml
    fleet = {
        "name": os.path.basename(os.path.normpath(fleet_dir)).lower().replace("_", "-")[:63].strip("-"),
        "defaults": {"plan": "small", "region": "lab", "harbor_version": version, "domain": domain},
        "plans": {"small": {"redis_maxmemory": "16mb"}},
        "tiers": lab_tiers(read_lab_env(), redis_port_base, bucket_prefix, capacity),
        "tenants": [{"id": tid} for tid in ids],
    }
    with open(os.path.join(fleet_dir, "fleet.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(fleet, handle)
    with open(os.path.join(fleet_dir, "fleet.tenants.yml"), "w", encoding="utf-8") as handle:
        handle.write("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n")


@pytest.fixture(scope="session")
def lab_env():
    path = os.path.join(str(lab_module.LAB), "env.json")
    if not os.path.exists(path):
        pytest.fail(f"the lab is not up ({path} is missing): run `make lab-up` first")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def lab():
    """The lab's helper functions (tenant Redis instances, reconciler pause...)."""
    return lab_module


@pytest.fixture
def unique():
    """A short unique suffix, so tests never collide with each other or with earlier runs."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def kube_client(lab_env):
    from kubernetes import config
    return config.new_client_from_config(lab_env["LAB_KUBECONFIG"])


@pytest.fixture(scope="session")
def s3_admin(lab_env):
    import boto3
    return boto3.client("s3", endpoint_url=lab_env["LAB_S3_ENDPOINT"], region_name=lab_env["LAB_S3_REGION"],
                        aws_access_key_id=lab_env["LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=lab_env["LAB_S3_SECRET_KEY"], verify=lab_env["LAB_CA_CERT"])


@pytest.fixture(scope="session")
def sentinel_addresses(lab_env):
    return [(host, int(port)) for host, port in (item.split(":") for item in lab_env["LAB_SENTINELS"].split(","))]


def pg_connect(lab_env, autocommit=False, **overrides):
    import psycopg2
    params = dict(host=lab_env["LAB_PG_HOST"], port=int(lab_env["LAB_PG_PORT"]), user=lab_env["LAB_PG_USER"],
                  password=lab_env["LAB_PG_PASSWORD"], dbname="postgres", connect_timeout=5,
                  sslmode="verify-full", sslrootcert=lab_env["LAB_CA_CERT"])  # the lab's servers take TLS only
    params.update(overrides)
    conn = psycopg2.connect(**params)
    conn.autocommit = autocommit
    return conn


def harbor_cluster_manifest(name, namespace, **spec_overrides):
    """A HarborCluster that the real CRD schema accepts (see NOTES: the fields the operator requires), on the lab's
    services."""
    env = read_lab_env()
    sentinel_host, sentinel_port = env["LAB_SENTINELS"].split(",")[0].split(":")
    spec = {
        "version": "2.6.4",
        "externalURL": f"https://{name}.registry.example.test",
        "harborAdminPasswordRef": f"{name}-admin",
        "core": {"tokenIssuer": {"kind": "Issuer", "name": "harbor-issuer"}, "certificateRefs": [f"{name}-trust"]},
        "registry": {"certificateRefs": [f"{name}-trust"]},
        "expose": {"core": {"ingress": {"host": f"{name}.registry.example.test"},
                            "tls": {"certificateRef": f"{name}-tls"}}},
        "database": {"kind": "PostgreSQL", "spec": {"postgresql": {
            "hosts": [{"host": env["LAB_PG_HOST"], "port": int(env["LAB_PG_PORT"])}], "username": f"harbor_{name}",
            "passwordRef": f"{name}-database", "sslMode": "verify-full", "prefix": f"{name}_"}}},
        "cache": {"kind": "Redis", "spec": {"redis": {
            "host": sentinel_host, "port": int(sentinel_port), "sentinelMasterSet": f"harbor-{name}",
            "passwordRef": f"{name}-cache"}}},
        "storage": {"kind": "S3", "spec": {"s3": {
            "region": "us-east-1", "bucket": f"harbor-{name}", "accesskey": "AKIAEXAMPLE",
            "secretkeyRef": f"{name}-storage", "regionendpoint": env["LAB_S3_ENDPOINT"]}}},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "goharbor.io/v1beta1", "kind": "HarborCluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class ModuleRun:
    """Runs one of the collection's modules through ansible itself, as a playbook would."""

    def __init__(self, env):
        self.env = env

    def __call__(self, module, args, check=False, diff=False, verbosity=0, raw=False, extra_env=None):
        """Return the module's result dict (``raw=False``) or ``(returncode, stdout + stderr)`` text."""
        import subprocess
        command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-m", f"harborfleet.fleet.{module}", "-a", json.dumps(args)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbosity:
            command.append("-" + "v" * verbosity)
        env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
        env.update(extra_env or {})
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as results:
            if not raw:
                env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="result_file",
                           ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "tests", "integration", "callback_plugins"),
                           HARBORFLEET_RESULT_FILE=results.name)
            proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=ROOT,
                                  timeout=900)
            if raw:
                return proc.returncode, proc.stdout + proc.stderr
            lines = [line for line in open(results.name, encoding="utf-8").read().splitlines() if line]
        if not lines:
            raise AssertionError(f"ansible did not return a result:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(lines[-1])


@pytest.fixture(scope="session")
def run_module(lab_env):
    return ModuleRun(lab_env)


@pytest.fixture(scope="session")
def pg_login(lab_env):
    """Connection options of the lab's PostgreSQL admin login, as the modules take them."""
    return dict(login_host=lab_env["LAB_PG_HOST"], login_port=int(lab_env["LAB_PG_PORT"]),
                login_user=lab_env["LAB_PG_USER"], login_password=lab_env["LAB_PG_PASSWORD"],
                ca_cert=lab_env["LAB_CA_CERT"])  # TLS, verify-full by default
