"""What each store of the lab's two regions holds of the regions fleet, read from the stores themselves.

Prints JSON: for each region (eu, us) the fleet's namespaces in its Kubernetes cluster, the tenant databases on its
PostgreSQL server, the buckets in its S3 store and the master sets its sentinels monitor. Endpoints and admin
credentials come from the lab's env file and the fleet file the lab wrote (<lab>/fleets/regions.yml).
"""
import json
import os
import sys

import boto3
import psycopg2
import redis
import yaml
from kubernetes import client, config

LAB = os.environ["HARBORFLEET_LAB_DIR"]
PREFIX = "rg-"


def main():
    with open(os.path.join(LAB, "env.json"), encoding="utf-8") as handle:
        env = json.load(handle)
    with open(os.path.join(LAB, "fleets", "regions.yml"), encoding="utf-8") as handle:
        tiers = yaml.safe_load(handle)["tiers"]
    regions = {"eu": {"context": env["LAB_KUBECONTEXT"], "pg_port": env["LAB_PG_PORT"],
                      "pg_password": env["LAB_PG_PASSWORD"], "s3": env["LAB_S3_ENDPOINT"],
                      "s3_key": (env["LAB_S3_ACCESS_KEY"], env["LAB_S3_SECRET_KEY"])},
               "us": {"context": env["LAB_US_KUBECONTEXT"], "pg_port": env["LAB_US_PG_PORT"],
                      "pg_password": env["LAB_US_PG_PASSWORD"], "s3": env["LAB_US_S3_ENDPOINT"],
                      "s3_key": (env["LAB_US_S3_ACCESS_KEY"], env["LAB_US_S3_SECRET_KEY"])}}
    out = {}
    for region, where in regions.items():
        core = client.CoreV1Api(config.new_client_from_config(env["LAB_KUBECONFIG"], context=where["context"]))
        namespaces = [ns.metadata.name for ns in
                      core.list_namespace(label_selector="harborfleet.io/fleet=regions").items]
        conn = psycopg2.connect(host=env["LAB_PG_HOST"], port=int(where["pg_port"]), user=env["LAB_PG_USER"],
                                password=where["pg_password"], dbname="postgres", connect_timeout=5)
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'rg\\_%' ORDER BY 1")
            databases = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'harbor\\_rg\\_%' ORDER BY 1")
            roles = [row[0] for row in cursor.fetchall()]
        conn.close()
        s3 = boto3.client("s3", endpoint_url=where["s3"], region_name="us-east-1", verify=env["LAB_CA_CERT"],
                          aws_access_key_id=where["s3_key"][0], aws_secret_access_key=where["s3_key"][1])
        buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(PREFIX))
        group = next(g for g in tiers["sentinel_groups"] if g["name"] == f"sg-{region}")
        master_sets = set()
        sentinels = group.get("sentinels") or [
            f"{h['address']}:{h['sentinel_port']}" for h in group["hosts"] if h.get("sentinel", True)]
        for address in sentinels:
            host, port = address.rsplit(":", 1)
            sentinel = redis.Redis(host=host, port=int(port), password=env["LAB_SENTINEL_PASSWORD"],
                                   decode_responses=True, socket_timeout=5)
            masters = sentinel.sentinel_masters()  # by name, or a list, depending on the redis-py version
            master_sets.update(m["name"] for m in (masters.values() if isinstance(masters, dict) else masters)
                               if m["name"].startswith("harbor-rg-"))
        out[region] = {"namespaces": sorted(namespaces), "databases": databases, "roles": roles, "buckets": buckets,
                       "master_sets": sorted(master_sets)}
    json.dump(out, sys.stdout, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
