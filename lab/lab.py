#!/usr/bin/env python3
"""The local lab: real backing services for harborfleet.fleet, on 127.0.0.1 only.

    lab.py build                  build (or find cached) kube-apiserver + etcd from the Go module proxy
    lab.py up [--profile P]       start every service that is not running yet (idempotent); --profile regions adds
                                  a second region (cluster, PostgreSQL, S3 store) for the multi-region fleet
    lab.py down                   stop everything the lab started (by recorded PID) and delete its data
    lab.py status                 one line per service
    lab.py fleets                 write the lab's fleets (fleets/lab, molecule/default) with this lab's ports
    lab.py redis-tenant start NAME --password P [--replicas N]
    lab.py redis-tenant stop NAME
    lab.py reconciler pause|resume

Every process is owned by the lab: data under the lab directory (default: <checkout>/.lab), non-default ports,
PID files, stopped by PID. Credentials are generated once per lab directory and written, with every endpoint, to
``<lab>/env`` (shell) and ``<lab>/env.json``; tests and inventories/lab read those.

Nothing under plugins/ or roles/ imports this file.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LAB = Path(os.environ.get("HARBORFLEET_LAB_DIR", REPO / ".lab")).resolve()
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harborfleet"
STORES_PKI = LAB / "pki-stores"  # the CA of the lab's stores (TLS) and their server certificate
GO_MODULE = HERE / "go" / "kube"
KUBE_VERSION = "1.36.3"
LOOPBACK = "127.0.0.1"

# HARBORFLEET_LAB_PORT_OFFSET shifts every port the lab uses - its services' and the ports its fleets give the Redis
# tier (31300-31999 by convention) - so a second lab (a clean clone's, say) runs beside this one: -10000 keeps every
# port apart from the default lab's and below the kernel's ephemeral range.
PORT_OFFSET = int(os.environ.get("HARBORFLEET_LAB_PORT_OFFSET", "0"))
FLEET_PORTS = range(31300, 32000)


def shift(port):
    """A default-lab port as this lab uses it."""
    return port + PORT_OFFSET


PORTS = {name: [shift(p) for p in port] if isinstance(port, list) else shift(port)
         for name, port in {
             "etcd": 23790,
             "etcd_peer": 23800,
             "apiserver": 26443,
             "controller_manager": 26257,
             "postgres": 25432,
             "sentinels": [26380, 26381, 26382],
             "s3": 28333,
             "s3_grpc": 28334,
             "weed_master": 29333,
             "weed_master_grpc": 29334,
             "weed_volume": 29340,
             "weed_volume_grpc": 29341,
             "weed_filer": 28888,
             "weed_filer_grpc": 28889,
             "weed_admin": 29646,
             "weed_admin_grpc": 29647,
         }.items()}
TENANT_REDIS_PORTS = range(shift(27000), shift(27990))
# The regions profile (`lab.py up --profile regions`) adds a second region, "us", with its own kube-apiserver (same
# etcd, its own prefix), PostgreSQL server and SeaweedFS; the default lab's services are region "eu" of that fleet.
SECOND_REGION = "us"
REGION_PORTS = {SECOND_REGION: {name: shift(port) for name, port in {
    "apiserver": 26444, "controller_manager": 26258, "postgres": 25433,
    "s3": 28335, "s3_grpc": 28336, "weed_master": 29335, "weed_master_grpc": 29336, "weed_volume": 29342,
    "weed_volume_grpc": 29343, "weed_filer": 28890, "weed_filer_grpc": 28891, "weed_admin": 29648,
    "weed_admin_grpc": 29649}.items()}}
PROFILES = {"default": [""], "regions": ["", SECOND_REGION]}
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class LabError(Exception):
    """A service failed to start; the message says which and shows its log."""


# --------------------------------------------------------------------------- helpers

def log(msg):
    print(f"lab: {msg}", flush=True)


def url_safe_password(length=32):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def port_open(port, host=LOOPBACK):
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def read_pid(pidfile):
    try:
        return int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_until(predicate, timeout, what, logfile=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise LabError(f"{what} did not become ready within {timeout}s" + log_tail(logfile))


def log_tail(logfile, lines=25):
    if not logfile or not Path(logfile).exists():
        return ""
    tail = Path(logfile).read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {logfile} ---\n" + "\n".join(tail)


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


def spawn(cmd, logfile, pidfile, env=None, user=None, umask=0o077):
    """Start a long-running process detached from us; record its PID. Its files are private (umask 077): the
    stores write credentials and tenants' data."""
    Path(logfile).parent.mkdir(parents=True, exist_ok=True)
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, umask=umask)
    Path(pidfile).write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid, name, timeout=15):
    if not pid or not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        log(f"{name} (pid {pid}) ignored SIGTERM, sending SIGKILL")
        os.kill(pid, signal.SIGKILL)


def stop_children(procs, timeout=10):
    """Stop processes this program started itself (``subprocess.Popen``), by PID: every running one gets SIGTERM
    first (shutting them down one by one is slow), then each is reaped, with SIGKILL after ``timeout`` seconds."""
    running = [proc for proc in procs if proc is not None and proc.poll() is None]
    for proc in running:
        os.kill(proc.pid, signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port(used):
    for port in TENANT_REDIS_PORTS:
        if port not in used and not port_open(port):
            used.add(port)
            return port
    raise LabError("no free port left for a tenant Redis instance")


# --------------------------------------------------------------------------- credentials and env file

def credentials():
    """The lab's admin credentials, generated once per lab directory: every region's stores have their own
    (``<key>`` for the default region, ``<key>_<region>`` for the others); the sentinel password is shared."""
    path = LAB / "credentials.json"
    creds = json.loads(path.read_text()) if path.exists() else {}
    wanted = {"sentinel_password": url_safe_password}
    for suffix in [""] + [f"_{region}" for region in REGION_PORTS]:
        wanted.update({f"pg_password{suffix}": url_safe_password,
                       f"s3_access_key{suffix}": lambda: "LAB" + url_safe_password(17).upper(),
                       f"s3_secret_key{suffix}": lambda: url_safe_password(40)})
    missing = {key: make() for key, make in wanted.items() if key not in creds}
    if missing:
        creds.update(missing)
        LAB.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(creds, indent=2))
        path.chmod(0o600)
    return creds


def profile():
    """The lab's profile: recorded by `up` (default: the small lab)."""
    path = LAB / "profile"
    return path.read_text().strip() if path.exists() else "default"


def regions():
    return PROFILES.get(profile(), [""])


def lab_env():
    """Every endpoint and admin credential of the lab (the env files); with the regions profile, the second
    region's as ``LAB_US_*`` (its cluster is context ``lab-us`` of the lab's kubeconfig)."""
    creds = credentials()
    env = {
        "HARBORFLEET_LAB_DIR": str(LAB),
        "LAB_KUBECONFIG": str(LAB / "kube" / "kubeconfig"),
        "LAB_PG_HOST": LOOPBACK,
        "LAB_PG_PORT": str(PORTS["postgres"]),
        "LAB_PG_USER": "fleetadmin",
        "LAB_PG_PASSWORD": creds["pg_password"],
        "LAB_CA_CERT": str(STORES_PKI / "ca.crt"),
        "LAB_SENTINELS": ",".join(f"{LOOPBACK}:{p}" for p in PORTS["sentinels"]),
        "LAB_SENTINEL_PASSWORD": creds["sentinel_password"],
        "LAB_S3_ENDPOINT": f"https://{LOOPBACK}:{PORTS['s3']}",
        "LAB_S3_REGION": "us-east-1",
        "LAB_S3_ACCESS_KEY": creds["s3_access_key"],
        "LAB_S3_SECRET_KEY": creds["s3_secret_key"],
        "LAB_PYTHON": sys.executable,
        "LAB_PORT_OFFSET": str(PORT_OFFSET),
        "LAB_FLEETS": str(LAB / "fleets"),
        "LAB_PROFILE": profile(),
        "LAB_KUBECONTEXT": "lab",
    }
    for region in regions()[1:]:
        ports, key = REGION_PORTS[region], region.upper()
        env.update({
            f"LAB_{key}_KUBECONTEXT": f"lab-{region}",
            f"LAB_{key}_PG_PORT": str(ports["postgres"]),
            f"LAB_{key}_PG_PASSWORD": creds[f"pg_password_{region}"],
            f"LAB_{key}_S3_ENDPOINT": f"https://{LOOPBACK}:{ports['s3']}",
            f"LAB_{key}_S3_ACCESS_KEY": creds[f"s3_access_key_{region}"],
            f"LAB_{key}_S3_SECRET_KEY": creds[f"s3_secret_key_{region}"],
        })
    return env


def write_env_files():
    env = lab_env()
    (LAB / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    lines = [f"export {key}='{value}'" for key, value in env.items()]
    (LAB / "env").write_text("# written by lab/lab.py up; source it\n" + "\n".join(lines) + "\n")
    for name in ("env", "env.json"):
        (LAB / name).chmod(0o600)


def check_ports():
    """Every port this lab would use lies between 1024 and the kernel's ephemeral range (where any outgoing
    connection could hold it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    used = [p for port in PORTS.values() for p in (port if isinstance(port, list) else [port])]
    used += [p for ports in REGION_PORTS.values() for p in ports.values()]
    used += [TENANT_REDIS_PORTS.start, TENANT_REDIS_PORTS.stop, shift(FLEET_PORTS.start), shift(FLEET_PORTS.stop)]
    if min(used) < 1024 or max(used) >= low:
        raise LabError(f"HARBORFLEET_LAB_PORT_OFFSET={PORT_OFFSET} puts lab ports at {min(used)}-{max(used)}, outside "
                       f"1024-{low - 1} (below the ephemeral range); -10000 is a good second lab")


# --------------------------------------------------------------------------- the lab's fleet files

# The fleets that run on the lab, written for the default lab's ports. `up` writes each, with this lab's ports, to
# <lab>/fleets/<name>.yml, the path their inventory sources read.
FLEET_SOURCES = {
    "lab": REPO / "fleets" / "lab" / "fleet.yml",
    "molecule": REPO / "molecule" / "default" / "inventory" / "fleet.yml",
    "regions": REPO / "fleets" / "lab-regions" / "fleet.yml",
}


def _shift_address(address):
    host, _, port = address.rpartition(":")
    return f"{host}:{shift(int(port))}"


def lab_fleet(data):
    """A fleet description written for the default lab, with this lab's ports."""
    tiers = data.get("tiers", {})
    for member in tiers.get("postgres", []):
        member["port"] = shift(member.get("port", 5432))
    for member in tiers.get("s3", []):
        scheme, _, rest = member["endpoint"].partition("://")
        member["endpoint"] = f"{scheme}://{_shift_address(rest)}"
    for group in tiers.get("sentinel_groups", []):
        if "sentinels" in group:  # else: the hosts' addresses
            group["sentinels"] = [_shift_address(item) for item in group["sentinels"]]
        group["redis_port_base"] = shift(group["redis_port_base"])
        for host in group.get("hosts", []):
            host["sentinel_port"] = shift(host["sentinel_port"])
    return data


def render_fleets():
    import yaml  # the lab runs in the project's venv
    target = LAB / "fleets"
    target.mkdir(parents=True, exist_ok=True)
    # the fleets name the CA of the lab's stores beside them (ca_cert: lab-ca.crt), as a project keeps its own
    shutil.copyfile(stores_pki()[0], target / "lab-ca.crt")
    for name, source in FLEET_SOURCES.items():
        data = lab_fleet(yaml.safe_load(source.read_text()))
        header = (f"# {source.relative_to(REPO)} with this lab's ports: edit the source. Written by `lab/lab.py\n"
                  "# fleets`, which make lab-up and every make target that uses the lab run.\n")
        (target / f"{name}.yml").write_text(header + yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------- Go binaries

def go_cache_dir():
    digest = hashlib.sha256((GO_MODULE / "go.sum").read_bytes() + (GO_MODULE / "go.mod").read_bytes())
    return CACHE / f"kube-v{KUBE_VERSION}-{digest.hexdigest()[:10]}"


def build():
    """Build kube-apiserver and etcd once per version; later calls find them in the per-user cache."""
    target = go_cache_dir()
    binaries = {"kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver", "etcd": "go.etcd.io/etcd/server/v3",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager"}
    if all((target / name).exists() for name in binaries):
        return target
    target.mkdir(parents=True, exist_ok=True)
    major, minor, _ = KUBE_VERSION.split(".")
    stamp = "k8s.io/component-base/version"
    ldflags = " ".join([
        "-s -w",
        f"-X {stamp}.gitVersion=v{KUBE_VERSION}", f"-X {stamp}.gitMajor={major}", f"-X {stamp}.gitMinor={minor}",
        f"-X {stamp}.gitTreeState=clean",
    ])
    for name, package in binaries.items():
        if (target / name).exists():
            continue
        log(f"building {name} from the Go module proxy (first time on this machine: several minutes)")
        started = time.monotonic()
        partial = target / f".{name}.partial"
        run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package], cwd=GO_MODULE)
        partial.rename(target / name)
        log(f"built {name} in {time.monotonic() - started:.0f}s -> {target / name}")
    return target


# --------------------------------------------------------------------------- services

class Service:
    """A lab process (or a few): ``base`` names it, ``region`` (empty: the default one) picks its ports and data
    directory (``<base>-<region>``)."""
    base = ""
    port_key = None

    def __init__(self, region=""):
        self.region = region
        self.ports = dict(PORTS, **REGION_PORTS.get(region, {}))
        self.name = self.base + (f"-{region}" if region else "")

    @property
    def port(self):
        return self.ports[self.port_key]

    def credential(self, key):
        return credentials()[key + (f"_{self.region}" if self.region else "")]

    @property
    def dir(self):
        return LAB / self.name

    @property
    def pidfile(self):
        return self.dir / f"{self.name}.pid"

    @property
    def logfile(self):
        return self.dir / f"{self.name}.log"

    def pids(self):
        return [read_pid(self.pidfile)]

    def running(self):
        return all(pid and pid_alive(pid) for pid in self.pids()) and self.ready()

    def ready(self):
        return port_open(self.port)

    def up(self):
        if self.running():
            log(f"{self.name}: already running")
            return
        self.down(keep_data=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.start()
        wait_until(self.ready, 90, self.name, self.logfile)
        log(f"{self.name}: ready in {time.monotonic() - started:.1f}s")

    def down(self, keep_data=False):
        for pid in self.pids():
            stop_pid(pid, self.name)
        if not keep_data and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def status(self):
        return "running" if self.running() else "stopped"


class Etcd(Service):
    base = "etcd"
    port_key = "etcd"

    def start(self):
        binary = build() / "etcd"
        spawn([str(binary), "--name", "lab", "--data-dir", str(self.dir / "data"),
               "--listen-client-urls", f"http://{LOOPBACK}:{self.port}",
               "--advertise-client-urls", f"http://{LOOPBACK}:{self.port}",
               "--listen-peer-urls", f"http://{LOOPBACK}:{PORTS['etcd_peer']}",
               "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{PORTS['etcd_peer']}",
               "--initial-cluster", f"lab=http://{LOOPBACK}:{PORTS['etcd_peer']}",
               "--unsafe-no-fsync", "--quota-backend-bytes", str(4 << 30), "--log-level", "warn"],
              self.logfile, self.pidfile)


class KubeApiserver(Service):
    """One cluster: the default region's, or another region's on the same etcd under its own prefix."""
    base = "kube-apiserver"
    port_key = "apiserver"

    @property
    def context(self):
        return "lab" + (f"-{self.region}" if self.region else "")

    @property
    def pki(self):
        return self.dir / "pki"

    def ready(self):
        kubeconfig = self.dir / "kubeconfig"
        if not kubeconfig.exists() or not port_open(self.port):
            return False
        result = subprocess.run(
            ["curl", "-sf", "--cacert", str(self.pki / "ca.crt"), "--cert", str(self.pki / "admin.crt"),
             "--key", str(self.pki / "admin.key"), f"https://{LOOPBACK}:{self.port}/readyz"],
            capture_output=True, check=False)
        return result.returncode == 0

    def make_pki(self):
        pki = self.pki
        if (pki / "admin.crt").exists():
            return
        pki.mkdir(parents=True, exist_ok=True)

        def openssl(*args):
            run(["openssl", *args], cwd=pki, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-keyout", "ca.key",
                "-out", "ca.crt", "-subj", "/CN=harborfleet-lab-ca")
        sans = ("subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default,DNS:kubernetes.default.svc")
        for name, subject, ext in (
                ("apiserver", "/CN=kube-apiserver", sans),
                ("admin", "/O=system:masters/CN=harborfleet-admin", "extendedKeyUsage=clientAuth")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                    "-subj", subject)
            (pki / f"{name}.ext").write_text(ext + "\n")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                    "-days", "365", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
        openssl("genrsa", "-out", "sa.key", "2048")
        openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        for key in pki.glob("*.key"):
            key.chmod(0o600)

    def write_kubeconfig(self):
        def b64(name):
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        name, user = self.context, f"harborfleet-admin-{self.context}"
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": f"https://{LOOPBACK}:{self.port}",
                                                    "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": user, "user": {"client-certificate-data": b64("admin.crt"),
                                              "client-key-data": b64("admin.key")}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        }
        path = self.dir / "kubeconfig"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        write_lab_kubeconfig()

    def start(self):
        binary = build() / "kube-apiserver"
        self.make_pki()
        self.write_kubeconfig()
        pki = self.pki
        spawn([str(binary),
               f"--etcd-servers=http://{LOOPBACK}:{PORTS['etcd']}",
               "--etcd-prefix=/registry" + (f"-{self.region}" if self.region else ""),
               f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", f"--secure-port={self.port}",
               f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
               f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
               "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC",
               "--service-account-issuer=https://kubernetes.default.svc",
               f"--service-account-key-file={pki / 'sa.pub'}",
               f"--service-account-signing-key-file={pki / 'sa.key'}",
               "--disable-admission-plugins=ServiceAccount", "--profiling=false", "--v=1"],
              self.logfile, self.pidfile)

    def up(self):
        super().up()
        install_crds(self.dir / "kubeconfig")


def write_lab_kubeconfig():
    """<lab>/kube/kubeconfig: every cluster of the lab, one context each (``lab``, the default, and ``lab-<region>``
    with the regions profile)."""
    configs = [json.loads((KubeApiserver(region).dir / "kubeconfig").read_text())
               for region in PROFILES["regions"] if (KubeApiserver(region).dir / "kubeconfig").exists()]
    merged = {"apiVersion": "v1", "kind": "Config", "current-context": "lab", "preferences": {}}
    for key in ("clusters", "users", "contexts"):
        merged[key] = [entry for config in configs for entry in config[key]]
    target = LAB / "kube" / "kubeconfig"
    target.parent.mkdir(exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(merged, indent=2))
    partial.chmod(0o600)
    if target.is_symlink():
        target.unlink()
    partial.replace(target)


class KubeControllerManager(Service):
    """Only the namespace and garbage-collector controllers: deleted namespaces really go away (as in a cluster)."""
    base = "kube-controller-manager"
    port_key = "controller_manager"

    def ready(self):
        if not port_open(self.port):
            return False
        result = subprocess.run(["curl", "-skf", f"https://{LOOPBACK}:{self.port}/healthz"], capture_output=True,
                                check=False)
        return result.returncode == 0

    def start(self):
        binary = build() / "kube-controller-manager"
        kubeconfig = KubeApiserver(self.region).dir / "kubeconfig"
        spawn([str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
               f"--authorization-kubeconfig={kubeconfig}", "--controllers=namespace,garbagecollector",
               "--leader-elect=false", f"--bind-address={LOOPBACK}", f"--secure-port={self.port}",
               f"--cert-dir={self.dir / 'certs'}", "--concurrent-namespace-syncs=5", "--v=1"],
              self.logfile, self.pidfile)


def install_crds(kubeconfig):
    """Install the goharbor CRDs, without their conversion webhook (there is no operator to serve it)."""
    import yaml  # the lab runs in the project's venv
    from kubernetes import client, config

    api = client.ApiextensionsV1Api(config.new_client_from_config(str(kubeconfig)))
    names = []
    for path in sorted((HERE / "crds").glob("goharbor.io_*.yaml")):
        if "_v" in path.stem.split("io_", 1)[1]:
            continue  # older releases' CRDs are test fixtures, not installed
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            doc["spec"]["conversion"] = {"strategy": "None"}
            doc["metadata"].pop("annotations", None)
            name = doc["metadata"]["name"]
            names.append(name)
            try:
                current = api.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                api.replace_custom_resource_definition(name, doc)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                api.create_custom_resource_definition(doc)

    def established():
        for name in names:
            conditions = api.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_until(established, 30, "goharbor CRDs")
    log(f"CRDs installed: {', '.join(names)}")


def stores_pki():
    """The lab's CA for its stores (PostgreSQL, SeaweedFS's S3) and one server certificate for 127.0.0.1 and
    localhost, made once with openssl; ``(ca.crt, server.crt, server.key)``."""
    pki = STORES_PKI
    files = (pki / "ca.crt", pki / "server.crt", pki / "server.key")
    if all(path.exists() for path in files):
        return files
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)

    def openssl(*args):
        run(["openssl", *args], cwd=pki, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-keyout", "ca.key", "-out", "ca.crt",
            "-subj", "/CN=harborfleet-lab-stores-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=harborfleet-lab-store")
    (pki / "server.ext").write_text(f"subjectAltName=IP:{LOOPBACK},DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "365",
            "-out", "server.crt", "-extfile", "server.ext")
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    return files


class Postgres(Service):
    base = "postgres"
    port_key = "postgres"

    @property
    def user(self):
        return "postgres" if os.geteuid() == 0 else None

    @property
    def data(self):
        return self.dir / "data"

    def pids(self):
        return [read_pid(self.data / "postmaster.pid")]

    def start(self):
        if self.user:
            shutil.chown(self.dir, self.user)
            check = subprocess.run(["runuser", "-u", self.user, "--", "test", "-w", str(self.dir)], check=False)
            if check.returncode:
                raise LabError(f"postgres: the postgres user cannot write {self.dir}; "
                               "set HARBORFLEET_LAB_DIR to a directory it can reach")
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.credential("pg_password") + "\n")
            pwfile.chmod(0o600)
            if self.user:
                shutil.chown(pwfile, self.user)
            runner = ["runuser", "-u", self.user, "--"] if self.user else []
            run(runner + [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "fleetadmin", f"--pwfile={pwfile}",
                          "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8",
                          "--locale=C.UTF-8"], capture_output=True)
            pwfile.unlink()
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nlisten_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.dir}'\nmax_connections = 300\n"
                           "password_encryption = 'scram-sha-256'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        self.configure_tls()
        runner = ["runuser", "-u", self.user, "--"] if self.user else []
        run(runner + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "start"],
            capture_output=True)

    def configure_tls(self):
        """TLS with the lab's store certificate; over TCP only TLS logins (hostssl), as the collection expects of a
        fleet's servers. The socket stays trusted for the lab's own administration."""
        _ca, cert, key = stores_pki()
        for source, name in ((cert, "server.crt"), (key, "server.key")):
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.user:
                shutil.chown(target, self.user, self.user)
        (self.data / "conf.d").mkdir(exist_ok=True)
        tls = self.data / "conf.d" / "tls.conf"
        tls.write_text("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "ssl_min_protocol_version = 'TLSv1.2'\n")
        conf = self.data / "postgresql.conf"
        if "include_dir = 'conf.d'" not in conf.read_text():
            with open(conf, "a", encoding="utf-8") as out:
                out.write("include_dir = 'conf.d'\n")
        (self.data / "pg_hba.conf").write_text(
            "# written by lab/lab.py: the socket for the lab, TCP only over TLS\n"
            "local all all trust\n"
            f"hostssl all all {LOOPBACK}/32 scram-sha-256\n")
        if self.user:
            for path in (self.data / "conf.d", tls, self.data / "pg_hba.conf"):
                shutil.chown(path, self.user, self.user)

    def ready(self):
        return (self.data / "postmaster.pid").exists() and port_open(self.port)

    def down(self, keep_data=False):
        if (self.data / "postmaster.pid").exists():
            runner = ["runuser", "-u", self.user, "--"] if self.user else []
            subprocess.run(runner + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                           capture_output=True, check=False)
        super().down(keep_data)

    @property
    def logfile(self):
        return self.dir / "postgres.log"


def redis_conf(path, **settings):
    lines = []
    for key, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key.replace('_', '-')} {item}")
    Path(path).write_text("\n".join(lines) + "\n")


class Sentinels(Service):
    """Three sentinels sharing one password, ready to monitor tenants' master sets."""
    base = "sentinels"

    def instance(self, index):
        return self.dir / f"sentinel-{index}"

    def pids(self):
        return [read_pid(self.instance(i) / "sentinel.pid") for i in range(len(PORTS["sentinels"]))]

    def ready(self):
        return all(port_open(port) for port in PORTS["sentinels"])

    def start(self):
        password = credentials()["sentinel_password"]
        for index, port in enumerate(PORTS["sentinels"]):
            home = self.instance(index)
            home.mkdir(parents=True, exist_ok=True)
            conf = home / "sentinel.conf"
            # Sentinel rewrites its own config file: render it fresh for each start.
            redis_conf(conf, port=port, bind=LOOPBACK, daemonize="yes", pidfile=home / "sentinel.pid",
                       logfile=home / "sentinel.log", dir=home, requirepass=password,
                       protected_mode="no", sentinel="resolve-hostnames no")
            conf.chmod(0o600)
            # Sentinel rewrites its file with every master set's password, mode 0644 less its umask.
            run(["redis-sentinel", str(conf)], umask=0o077)

    @property
    def logfile(self):
        return self.instance(0) / "sentinel.log"


class SeaweedFS(Service):
    base = "seaweedfs"
    port_key = "s3"

    def start(self):
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "fleetadmin",
            "credentials": [{"accessKey": self.credential("s3_access_key"),
                             "secretKey": self.credential("s3_secret_key")}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        config.chmod(0o600)
        (self.dir / "data").mkdir(exist_ok=True)
        (self.dir / "data").chmod(0o700)  # weed's files under it are 0644/0755 less the umask spawn gives it
        weed = Path(sys.executable).parent / "weed"
        ports = self.ports
        _ca, cert, key = stores_pki()  # S3 over https only (weed serves TLS on the S3 port when given both)
        spawn([str(weed), "mini", f"-dir={self.dir / 'data'}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
               f"-master.port={ports['weed_master']}", f"-volume.port={ports['weed_volume']}",
               f"-filer.port={ports['weed_filer']}", f"-s3.port={self.port}", f"-admin.port={ports['weed_admin']}",
               # gRPC ports explicitly: weed's default (HTTP port + 10000) lands in the ephemeral range
               f"-master.port.grpc={ports['weed_master_grpc']}", f"-volume.port.grpc={ports['weed_volume_grpc']}",
               f"-filer.port.grpc={ports['weed_filer_grpc']}", f"-s3.port.grpc={ports['s3_grpc']}",
               f"-admin.port.grpc={ports['weed_admin_grpc']}",
               "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-master.telemetry=false", f"-s3.config={config}", "-s3.iam.readOnly=false",
               f"-s3.cert.file={cert}", f"-s3.key.file={key}"],
              self.logfile, self.pidfile)

    def ready(self):
        import urllib.request
        import urllib.error
        if not port_open(self.port):
            return False
        import ssl
        context = ssl.create_default_context(cafile=str(stores_pki()[0]))
        try:  # anonymous requests are refused once the S3 gateway has loaded its identities
            urllib.request.urlopen(f"https://{LOOPBACK}:{self.port}/", timeout=1, context=context)
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except OSError:
            return False
        return False


class Reconciler(Service):
    """The stand-in for the Harbor Operator of one cluster: writes HarborCluster status (see lab/reconciler.py)."""
    base = "reconciler"

    def ready(self):
        return (self.dir / "ready").exists()

    def start(self):
        (self.dir / "ready").unlink(missing_ok=True)
        env = dict(os.environ, **lab_env())
        env["LAB_KUBECONFIG"] = str(KubeApiserver(self.region).dir / "kubeconfig")
        spawn([sys.executable, str(HERE / "reconciler.py"), "--ready-file", str(self.dir / "ready"),
               "--pause-file", str(self.dir / "paused")], self.logfile, self.pidfile, env=env)


def services(every=False):
    """The lab's services in start order: the default region's, then each other region's of the profile (of every
    profile with ``every``, to stop them all)."""
    out = [Etcd(), KubeApiserver(), KubeControllerManager(), Postgres(), Sentinels(), SeaweedFS(), Reconciler()]
    for region in (PROFILES["regions"] if every else regions())[1:]:
        out += [KubeApiserver(region), KubeControllerManager(region), Postgres(region), SeaweedFS(region),
                Reconciler(region)]
    return out


# --------------------------------------------------------------------------- tenant Redis instances

def tenant_dir(name):
    return LAB / "redis-tenants" / name


def redis_tenant_start(name, password, replicas=1):
    """Start a tenant's master + replicas on free ports; prints JSON describing them."""
    home = tenant_dir(name)
    state_file = home / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(pid_alive(read_pid(i["pidfile"]) or 0) for i in state["instances"]):
            return state
        redis_tenant_stop(name)
    home.mkdir(parents=True, exist_ok=True)
    used = set()
    instances = []
    for index in range(replicas + 1):
        port = free_port(used)
        role = "master" if index == 0 else f"replica-{index}"
        conf = home / f"{role}.conf"
        settings = dict(port=port, bind=LOOPBACK, daemonize="yes", pidfile=home / f"{role}.pid",
                        logfile=home / f"{role}.log", dir=home, dbfilename=f"{role}.rdb", requirepass=password,
                        masterauth=password, save='""', appendonly="no", hz=1, protected_mode="no",
                        repl_diskless_sync="yes", repl_diskless_sync_delay=0)
        if index:
            settings["replicaof"] = f"{LOOPBACK} {instances[0]['port']}"
        redis_conf(conf, **settings)
        conf.chmod(0o600)
        run(["redis-server", str(conf)], umask=0o077)
        instances.append({"role": "master" if index == 0 else "replica", "host": LOOPBACK, "port": port,
                          "pidfile": str(home / f"{role}.pid"), "logfile": str(home / f"{role}.log")})
    for inst in instances:
        wait_until(lambda i=inst: port_open(i["port"]) and read_pid(i["pidfile"]), 10,
                   f"redis {name} {inst['role']}", inst["logfile"])
        inst["pid"] = read_pid(inst["pidfile"])
    state = {"name": name, "instances": instances}
    state_file.write_text(json.dumps(state, indent=2))
    return state


def redis_tenant_stop(name):
    home = tenant_dir(name)
    for pidfile in home.glob("*.pid"):
        stop_pid(read_pid(pidfile), f"redis {name}")
    shutil.rmtree(home, ignore_errors=True)


def redis_tenants():
    root = LAB / "redis-tenants"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# --------------------------------------------------------------------------- commands

def cmd_up(args):
    LAB.mkdir(parents=True, exist_ok=True)
    if args.profile:
        (LAB / "profile").write_text(args.profile + "\n")
    started = time.monotonic()
    try:
        check_ports()
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    build()
    write_env_files()
    render_fleets()
    for service in services():
        try:
            service.up()
        except (LabError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr.decode(errors="replace") if getattr(exc, "stderr", None) else ""
            print(f"lab: FAILED to start {service.name}: {exc}\n{detail}{log_tail(service.logfile)}",
                  file=sys.stderr)
            return 1
    log(f"up in {time.monotonic() - started:.1f}s")
    log(f"kubeconfig:  {LAB / 'kube' / 'kubeconfig'}")
    log(f"credentials: {LAB / 'env'} (shell) and {LAB / 'env.json'}")
    return 0


def stop_recorded_daemons():
    """Stop daemons that playbooks started inside the lab (e.g. the redis_sentinel role's processes under
    <lab>/fleet-redis): by the PID in their pid files, only when that PID is still a redis process."""
    for pidfile in sorted(LAB.rglob("*.pid")) if LAB.exists() else []:
        pid = read_pid(pidfile)
        if not pid or not pid_alive(pid):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if os.path.basename(cmdline).startswith(("redis-server", "redis-sentinel")):
            stop_pid(pid, f"{pidfile.parent.name}/{pidfile.name}")


def cmd_down(_args):
    for name in redis_tenants():
        redis_tenant_stop(name)
    stop_recorded_daemons()
    for service in reversed(services(every=True)):
        service.down()
        log(f"{service.name}: stopped")
    shutil.rmtree(LAB, ignore_errors=True)
    return 0


def cmd_status(_args):
    rc = 0
    for service in services():
        state = service.status()
        rc |= state != "running"
        print(f"{service.name:15} {state}")
    for name in redis_tenants():
        print(f"{'redis ' + name:15} tenant instance(s)")
    return rc


def cmd_fleets(_args):
    render_fleets()
    return 0


def cmd_build(_args):
    print(build())
    return 0


def cmd_redis_tenant(args):
    if args.action == "start":
        if not args.password:
            print("lab: --password is required", file=sys.stderr)
            return 2
        print(json.dumps(redis_tenant_start(args.name, args.password, args.replicas)))
    else:
        redis_tenant_stop(args.name)
    return 0


def cmd_reconciler(args):
    pause = LAB / "reconciler" / "paused"
    if args.action == "pause":
        pause.parent.mkdir(parents=True, exist_ok=True)
        pause.touch()
    else:
        pause.unlink(missing_ok=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("down", cmd_down), ("status", cmd_status), ("build", cmd_build), ("fleets", cmd_fleets)):
        sub.add_parser(name).set_defaults(func=func)
    up = sub.add_parser("up")
    up.add_argument("--profile", choices=sorted(PROFILES),
                    help="default: the small lab; regions: also a second region (its own cluster, PostgreSQL, "
                         "S3 store). Recorded: a later `up` keeps it")
    up.set_defaults(func=cmd_up)
    tenant = sub.add_parser("redis-tenant")
    tenant.add_argument("action", choices=["start", "stop"])
    tenant.add_argument("name")
    tenant.add_argument("--password")
    tenant.add_argument("--replicas", type=int, default=1)
    tenant.set_defaults(func=cmd_redis_tenant)
    rec = sub.add_parser("reconciler")
    rec.add_argument("action", choices=["pause", "resume"])
    rec.set_defaults(func=cmd_reconciler)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
