"""playbooks/fleet_status.yml against the lab, for real: a small fleet (fleet file + recorded placement + a
harborfleet.fleet.tenants inventory source) whose HarborClusters the lab's stand-in reconciler makes healthy or
unhealthy, the terminal table, and the HTML report rendered by headless Chromium (DOM and screenshot)."""
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib

import pytest
import yaml

from test_harbor_cluster import Dependencies, Kube, cluster_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "playbooks", "fleet_status.yml")
# A plan name full of HTML: the report must show it as text, never as markup.
ODD_PLAN = 'odd <b class="x">&plan</b>'
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


# --------------------------------------------------------------------------- the fleet

@pytest.fixture(scope="module")
def fleet(tmp_path_factory, lab, lab_env, sentinel_addresses, s3_admin, kube_client):
    """Four tenants in a fleet file and one stray cluster:

    * ``fa`` (plan large) and ``fb`` healthy; ``fb`` runs 2.6.3 while the fleet file wants 2.6.4;
    * ``fc`` unhealthy: its database Secret holds a wrong password;
    * ``fd`` (plan ODD_PLAN) has no HarborCluster at all;
    * ``fu`` has a cluster labelled like the fleet's but is not in the fleet file.
    """
    import uuid
    unique = uuid.uuid4().hex[:8]
    kube = Kube(kube_client)
    names = {key: f"f{key}-{unique}" for key in ("a", "b", "c", "d", "u")}
    created = []
    with Dependencies(lab, lab_env, sentinel_addresses, s3_admin, f"fs-{unique}") as deps:
        try:
            yield build_fleet(tmp_path_factory.mktemp("fleet_status"), lab_env, kube, deps, names, unique, created)
        finally:
            for tenant in created:
                kube.remove_tenant(tenant)


def build_fleet(directory, lab_env, kube, deps, names, unique, created):
    from conftest import ModuleRun
    sentinels = lab_env["LAB_SENTINELS"].split(",")
    fleet_file = directory / "fleet.yml"
    fleet_file.write_text(yaml.safe_dump({
        "name": f"fs-{unique}",
        "defaults": {"plan": "small", "region": "lab", "harbor_version": "2.6.4", "domain": "registry.example.test"},
        "plans": {"small": {}, "large": {}, ODD_PLAN: {}},
        "tiers": {
            "postgres": [{"name": "pg-lab", "host": lab_env["LAB_PG_HOST"], "port": int(lab_env["LAB_PG_PORT"]),
                          "ca_cert": lab_env["LAB_CA_CERT"], "capacity": 10}],
            "sentinel_groups": [{"name": "sg-lab", "sentinels": sentinels, "capacity": 10,
                                 "redis_port_base": 27500}],
            "s3": [{"name": "s3-lab", "endpoint": lab_env["LAB_S3_ENDPOINT"], "ca_cert": lab_env["LAB_CA_CERT"],
                    "region": lab_env["LAB_S3_REGION"],
                    "bucket_prefix": "harbor-"}],
        },
        "tenants": [{"id": names["a"], "plan": "large"}, {"id": names["b"]}, {"id": names["c"]},
                    {"id": names["d"], "plan": ODD_PLAN}],
    }, sort_keys=False), encoding="utf-8")
    inventory = directory / "fleet.tenants.yml"
    inventory.write_text("plugin: harborfleet.fleet.tenants\nfleet_file: fleet.yml\n", encoding="utf-8")

    run_module = ModuleRun(lab_env)
    created.append(names["d"])  # its namespace holds its placement record
    placed = run_module("fleet_placement", {"fleet_file": str(fleet_file), "kubeconfig": lab_env["LAB_KUBECONFIG"]})
    assert placed["changed"] is True and sorted(placed["recorded"]) == sorted(names[k] for k in "abcd"), placed
    assert not (directory / "fleet.placement.yml").exists()  # recorded in the cluster, nothing beside the file
    again = run_module("fleet_placement", {"fleet_file": str(fleet_file), "kubeconfig": lab_env["LAB_KUBECONFIG"]})
    assert again["changed"] is False and again["recorded"] == [], again

    # One list-form harbor_cluster call, all tenants wired to the same real database, master set and bucket.
    shared = cluster_args(lab_env, "unused", deps, labels={"harborfleet.test/run": unique},
                          database={"username": deps.role, "prefix": deps.prefix, "password": None},
                          cache={"master_set": deps.master_set, "password": None},
                          storage={"bucket": deps.bucket})
    del shared["tenant"]
    items = [{"tenant": names["a"], "database": {"password": deps.db_password}},
             {"tenant": names["b"], "version": "2.6.3", "database": {"password": deps.db_password}},
             {"tenant": names["c"], "database": {"password": "wrongPassword1"}},
             {"tenant": names["u"], "database": {"password": deps.db_password}}]
    for item in items:
        item["cache"] = {"password": deps.redis_password}
    created.extend(item["tenant"] for item in items)
    result = run_module("harbor_cluster", dict(shared, tenants=items))
    assert result["summary"]["changed"] == 4 and not result.get("failed"), result

    selector = f"app.kubernetes.io/managed-by=harborfleet,harborfleet.test/run={unique}"
    settled = wait_settled(kube, selector, 4)
    assert settled, "the lab's reconciler did not settle the clusters"
    return {"dir": directory, "inventory": inventory, "names": names, "selector": selector, "deps": deps,
            "kubeconfig": lab_env["LAB_KUBECONFIG"], "report": directory / "report" / "fleet_status.html",
            "secrets": [deps.db_password, deps.redis_password, "wrongPassword1", lab_env["LAB_S3_SECRET_KEY"]]}


def wait_settled(kube, selector, count, timeout=90):
    """Until every selected cluster is reconciled (healthy or unhealthy at its generation); no timing asserted."""
    deadline = time.monotonic() + timeout
    while True:
        items = kube.custom.list_cluster_custom_object("goharbor.io", "v1beta1", "harborclusters",
                                                       label_selector=selector)["items"]
        done = len(items) == count and all(
            (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
            and (obj.get("status") or {}).get("status") in ("healthy", "unhealthy") for obj in items)
        if done or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def run_playbook(fleet, *options, report=None):
    extra = {"harbor_kubeconfig": fleet["kubeconfig"], "fleet_status_label_selector": fleet["selector"],
             "fleet_report_path": str(report or fleet["report"])}
    extra_file = fleet["dir"] / "extra.json"
    extra_file.write_text(json.dumps(extra), encoding="utf-8")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), PLAYBOOK,
               "-i", str(fleet["inventory"]), "-e", f"@{extra_file}", *options]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_FORCE_COLOR="0", K8S_AUTH_KUBECONFIG=fleet["kubeconfig"])
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def recap(text):
    match = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", text)
    assert match, text
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def table_lines(text):
    """The lines of the 'Show the fleet' debug message (a list of strings in the default callback)."""
    block = text.split("TASK [Show the fleet]", 1)[1].split("TASK [", 1)[0]
    return json.loads(block[block.index("{"):block.rindex("}") + 1])["msg"]


# --------------------------------------------------------------------------- PNG without PIL

def png_facts(data):
    """(width, height, distinct colours) of an 8-bit RGB/RGBA PNG, decoded with zlib and struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour_type, interlace = header[0], header[1], header[2], header[3], header[6]
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    step = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * step
    previous = bytearray(stride)
    colours = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(step, stride):
                line[i] = (line[i] + line[i - step]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - step] if i >= step else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - step] if i >= step else 0
                b, c = previous[i], previous[i - step] if i >= step else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if row % 4 == 0:
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, step * 4))
        previous = line
    return width, height, len(colours)


# --------------------------------------------------------------------------- the tests

def test_check_mode_writes_nothing(fleet, tmp_path):
    report = tmp_path / "check" / "fleet_status.html"
    rc, text = run_playbook(fleet, "--check", report=report)
    assert rc == 0, text
    # the report's directory and file are predicted as changes, and not written
    assert recap(text)["changed"] == 2 and recap(text)["failed"] == 0, text
    assert "[DEPRECATION WARNING]" not in text and "[WARNING]" not in text, text
    assert f"Check mode: the report would be written to {report}" in text
    assert not report.parent.exists()
    assert any(fleet["names"]["c"] in line for line in table_lines(text))


def test_terminal_table_and_report(fleet, tmp_path):
    names = fleet["names"]
    started = time.monotonic()
    rc, text = run_playbook(fleet)
    elapsed = time.monotonic() - started
    assert rc == 0, text
    # the report's directory and the report: the only changes
    assert recap(text)["changed"] == 2 and recap(text)["failed"] == 0, text
    assert f"Report: {fleet['report']}" in text
    print(f"fleet_status.yml (4 tenants, 4 clusters): {elapsed:.1f}s")

    lines = table_lines(text)
    assert lines[0].split() == ["TENANT", "PLAN", "REGION", "WANTED", "DEPLOYED", "STATUS", "READY", "PROBLEM"]
    rows = {line.split()[0]: line for line in lines[1:5]}
    # problems first (b drifts, c is unhealthy, d has no cluster), then the healthy a
    assert list(rows) == sorted(names[k] for k in "bcd") + [names["a"]]
    assert rows[names["a"]].split()[1:7] == ["large", "lab", "2.6.4", "2.6.4", "healthy", "yes"]
    assert rows[names["b"]].split()[1:7] == ["small", "lab", "2.6.4", "2.6.3", "healthy", "yes"]
    assert rows[names["b"]].endswith("version 2.6.3, wanted 2.6.4")
    assert rows[names["c"]].split()[1:7] == ["small", "lab", "2.6.4", "2.6.4", "unhealthy", "no"]
    assert "DatabaseReady: AuthenticationFailed (+2 more)" in rows[names["c"]]
    assert re.search(rf"{re.escape(ODD_PLAN)}  lab +2\.6\.4 +- +missing +no ", rows[names["d"]])
    assert rows[names["d"]].endswith(f"no HarborCluster harbor-{names['d']}/{names['d']}")
    # columns line up: every row has its STATUS where the header has it
    column = lines[0].index("STATUS")
    assert all(line[column:].split()[0] in ("healthy", "unhealthy", "missing") for line in lines[1:5])
    assert ("4 tenants: 2 ready, 2 not ready, 1 without a cluster; 1 unknown clusters; "
            "1 on another version than wanted") in lines
    assert "by status: healthy 2, unhealthy 1, missing 1" in lines
    assert "by version (deployed/wanted): 2.6.3 1/0, 2.6.4 2/4" in lines
    assert f"by plan (ready/tenants): large 1/1, {ODD_PLAN} 0/1, small 1/2" in lines
    assert f"missing clusters: {names['d']}" in lines
    assert f"unknown clusters (not in the fleet file): harbor-{names['u']}/{names['u']} (healthy)" in lines

    page = fleet["report"].read_text(encoding="utf-8")
    for secret in fleet["secrets"]:
        assert secret not in text and secret not in page
    assert ODD_PLAN not in page and "odd &lt;b class=&#34;x&#34;&gt;&amp;plan&lt;/b&gt;" in page
    # self-contained: no scripts, no external or linked assets
    assert not re.search(r"<(script|link|img|iframe|object)\b|\b(src|href)=|url\(|@import", page)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (tools/install-system-deps installs it): report not rendered")
    url = fleet["report"].as_uri()
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-dom", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr
    check_dom(dom.stdout, names)

    screenshot = tmp_path / "fleet_status.png"
    shot = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-png",
                           f"--screenshot={screenshot}", "--window-size=1280,1000", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr
    width, height, colours = png_facts(screenshot.read_bytes())
    assert (width, height) == (1280, 1000)
    assert colours > 20, f"the screenshot looks flat ({colours} colours)"
    keep = os.environ.get("FLEET_STATUS_SCREENSHOT")
    if keep:
        shutil.copy(screenshot, keep)


def check_dom(dom, names):
    """What a reader sees: the rendered DOM's text, element by element."""
    def text(fragment):
        blocks = re.sub(r"</?(td|th|tr|div|h[1-6]|p|table|thead|tbody|section)\b[^>]*>", " ", fragment)
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", blocks)).split())

    def element(element_id, end):
        match = re.search(rf'id="{element_id}"[^>]*>(.*?){end}', dom, re.S)
        assert match, element_id
        return text(match.group(1))

    assert "Harbor fleet status" in dom
    assert element("verdict", "</div>") == "4 need attention"  # fb (drift), fc, fd and the unknown fu
    for card, value in (("total-tenants", "Tenants 4"), ("total-ready", "Ready 2"),
                        ("total-not-ready", "Not ready 2"), ("total-missing", "Missing clusters 1"),
                        ("total-unknown", "Unknown clusters 1"), ("total-drift", "Version drift 1")):
        assert element(card, "</div></div>").startswith(value), (card, element(card, "</div></div>"))
    assert element("by-status", "</table>") == "Tenants by status healthy 2 unhealthy 1 missing 1"
    assert element("by-version", "</table>") == "Tenants by Harbor version Version Deployed Wanted 2.6.3 1 0 2.6.4 2 4"
    assert element("by-plan", "</table>") == f"Tenants by plan Plan Tenants Ready large 1 1 {ODD_PLAN} 1 0 small 2 1"

    rows = {}
    for match in re.finditer(r'<tr id="tenant-([a-z0-9-]+)"[^>]*>(.*?)</tr>', dom, re.S):
        rows[match.group(1)] = text(match.group(2))
    assert sorted(rows) == sorted(names[k] for k in "abcd")
    assert rows[names["a"]].startswith(f"{names['a']} {names['a']}.registry.example.test large lab "
                                       "2.6.4 2.6.4 healthy yes")
    assert "2.6.4 2.6.3 healthy yes" in rows[names["b"]] and "runs 2.6.3, wanted 2.6.4" in rows[names["b"]]
    assert "2.6.4 2.6.4 unhealthy no" in rows[names["c"]]
    assert "DatabaseReady=False AuthenticationFailed" in rows[names["c"]]
    assert "password authentication failed" in rows[names["c"]]
    assert "missing no no HarborCluster" in rows[names["d"]]
    # the odd plan is text in its cell, not an element
    assert '<b class="x">' not in dom and "odd &lt;b class=\"x\"&gt;&amp;plan&lt;/b&gt;" in dom
    assert f"{names['d']} harbor-{names['d']}/{names['d']} {ODD_PLAN} 2.6.4" in element("missing-table", "</table>")
    unknown = element("unknown-table", "</table>")
    assert f"harbor-{names['u']}/{names['u']} {names['u']} 2.6.4 healthy yes" in unknown


def test_fail_when_not_ready_names_the_tenants(fleet, tmp_path):
    report = tmp_path / "strict.html"
    rc, text = run_playbook(fleet, "-e", "fleet_status_fail_when_not_ready=true", report=report)
    assert rc != 0 and recap(text)["failed"] == 1, text
    names = fleet["names"]
    assert f"not ready: {names['c']}, {names['d']}; version drift: {names['b']}" in text
    assert report.exists()  # the report is written before the verdict
