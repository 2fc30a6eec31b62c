#!/usr/bin/env python3
"""The lab's STAND-IN for the Harbor Operator. It is not the operator and deploys nothing.

The lab's API server has no nodes, so the real operator (which runs Harbor's pods) cannot work here. This small
controller does the one part of the operator's job that the collection relies on: it watches every
``HarborCluster`` (goharbor.io/v1beta1) and writes its ``/status`` by the operator's contract:

* ``status.observedGeneration`` is written at the START of a reconcile, with ``status: provisioning`` and
  ``InProgress=True``;
* then ``healthy`` or ``unhealthy`` with the conditions ``DatabaseReady``, ``CacheReady``, ``StorageReady``,
  ``ServiceReady``, ``InProgress`` and ``Failed`` (reasons and messages), plus ``revision`` and ``operator``.

Unlike the real operator (which marks external services ready without looking), it checks the dependencies the
way Harbor core would at start-up, with the credentials from the Secrets the cluster references:

* PostgreSQL: a login into ``<prefix>core`` as ``username`` (psycopg2);
* Redis: PING through the sentinel ``host:port`` and ``sentinelMasterSet`` with the ``redis-password``
  (redis-py Sentinel; the sentinels' own password is the lab's ``LAB_SENTINEL_PASSWORD``);
* S3: HEAD of the bucket with ``accesskey`` and the secret key (boto3).

Wrong wiring makes the cluster ``unhealthy`` with a reason; unhealthy clusters are checked again with a growing
delay (3 s up to a minute), so fixing a Secret is noticed without a spec change. Like a real controller's resync,
healthy clusters are checked again every ``--resync-period`` seconds (default 20), so a dependency that breaks
later (a password changed, a store down) turns the cluster ``unhealthy``. A re-check writes status only when its
outcome differs.

Like an operator instance started with ``--harbor-class``, it only reconciles clusters whose
``goharbor.io/harbor-class`` annotation equals its own class (default: none), so benchmarks can create clusters
it leaves alone.

Run by ``lab/lab.py up`` as ``reconciler.py --ready-file F --pause-file P`` with the lab's environment
(``LAB_KUBECONFIG``, ``LAB_SENTINEL_PASSWORD``...). It creates F once it is watching, and does nothing while P
exists (``lab.py reconciler pause|resume``). Nothing under plugins/ or roles/ imports this file.
"""

import argparse
import base64
import contextlib
import heapq
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

GROUP, VERSION, PLURAL = "goharbor.io", "v1beta1", "harborclusters"
CLASS_ANNOTATION = "goharbor.io/harbor-class"
CONTROLLER = {"controllerName": "harborfleet-lab-reconciler", "controllerVersion": "lab",
              "controllerGitCommit": "none"}
CHECK_TIMEOUT = 3


def log(message):
    print(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DelayQueue:
    """Keys with a due time; a key is held once (the earliest due time wins). ``get`` blocks without spinning."""

    def __init__(self):
        self._heap = []
        self._due = {}
        self._cond = threading.Condition()

    def put(self, key, delay=0.0):
        due = time.monotonic() + delay
        with self._cond:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            self._cond.notify()

    def get(self):
        with self._cond:
            while True:
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded entry
                if not self._heap:
                    self._cond.wait()
                    continue
                due, key = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._due[key]
                return key


# --------------------------------------------------------------------------- dependency checks

def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def trust_file(trusted):
    """The path of a file holding ``trusted`` (PEM text) for clients that read their CAs from one; None without."""
    if not trusted:
        yield None
        return
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as roots:
        roots.write(trusted)
        roots.flush()
        yield roots.name


def check_database(spec, password, trusted=None):
    """Log in as Harbor core would: with the spec's sslMode, trusting the CA certificates of core's
    certificateRefs (``trusted``, PEM text) as the operator mounts them into Harbor's trust store."""
    import psycopg2
    pg = ((spec.get("database") or {}).get("spec") or {}).get("postgresql") or {}
    hosts = pg.get("hosts") or []
    if not hosts:
        return False, "NoHost", "spec.database.spec.postgresql.hosts is empty"
    host, port = hosts[0].get("host"), hosts[0].get("port") or 5432
    dbname = f"{pg.get('prefix') or ''}core"
    where = f"{host}:{port}/{dbname} as {pg.get('username')}"
    try:
        with trust_file(trusted) as roots:
            conn = psycopg2.connect(host=host, port=port, user=pg.get("username"), password=password or "",
                                    dbname=dbname, sslmode=pg.get("sslMode") or "prefer", sslrootcert=roots,
                                    connect_timeout=CHECK_TIMEOUT, application_name="harborfleet-lab-reconciler")
    except psycopg2.OperationalError as exc:
        text = " ".join(str(exc).split())
        if any(sign in text for sign in ("root certificate file", "certificate verify failed",
                                          "server certificate for", "no encryption")):
            reason = "TLSFailed"
        elif "password authentication failed" in text or "no password supplied" in text:
            reason = "AuthenticationFailed"
        elif "does not exist" in text:
            reason = "DatabaseNotFound"
        else:
            reason = "ConnectionFailed"
        return False, reason, f"connecting to {where}: {text}"
    conn.close()
    return True, "Connected", f"logged into {where}"


def check_cache(spec, password, sentinel_password):
    import redis
    from redis.sentinel import MasterNotFoundError, Sentinel
    rd = ((spec.get("cache") or {}).get("spec") or {}).get("redis") or {}
    host, port, master_set = rd.get("host"), rd.get("port") or 26379, rd.get("sentinelMasterSet")
    if not master_set:
        return False, "NoMasterSet", "the lab checks Redis through a sentinel: sentinelMasterSet is empty"
    where = f"master set {master_set} via sentinel {host}:{port}"
    sentinel = Sentinel([(host, port)], socket_timeout=CHECK_TIMEOUT, password=password or None,
                        sentinel_kwargs={"password": sentinel_password or None, "socket_timeout": CHECK_TIMEOUT})
    try:
        sentinel.master_for(master_set, socket_timeout=CHECK_TIMEOUT).ping()
    except MasterNotFoundError as exc:
        return False, "MasterNotFound", f"{where}: {_first_line(exc)}"
    except redis.AuthenticationError as exc:
        return False, "AuthenticationFailed", f"{where}: {_first_line(exc)}"
    except (redis.RedisError, OSError) as exc:
        return False, "ConnectionFailed", f"{where}: {type(exc).__name__}: {_first_line(exc)}"
    finally:
        for conn in sentinel.sentinels:
            conn.close()
    return True, "Connected", f"PING answered by {where}"


def check_storage(spec, secret_key, trusted=None):
    """HEAD the bucket as Harbor's registry would: over the endpoint's scheme, trusting the CA certificates of
    the registry's certificateRefs (``trusted``, PEM text)."""
    import boto3
    import botocore.config
    import botocore.exceptions
    s3 = ((spec.get("storage") or {}).get("spec") or {}).get("s3") or {}
    bucket = s3.get("bucket")
    if not s3.get("accesskey") or not secret_key:
        return False, "NoCredentials", "the lab checks S3 with keys: accesskey or the secret key is missing"
    with trust_file(trusted) as roots:
        client = boto3.client("s3", endpoint_url=s3.get("regionendpoint") or None, region_name=s3.get("region"),
                              aws_access_key_id=s3["accesskey"], aws_secret_access_key=secret_key,
                              verify=roots or not s3.get("skipverify"),
                              config=botocore.config.Config(connect_timeout=CHECK_TIMEOUT, read_timeout=CHECK_TIMEOUT,
                                                            retries={"max_attempts": 1},
                                                            s3={"addressing_style": "path"}))
        return _head_bucket(client, bucket)


def _head_bucket(client, bucket):
    import botocore.exceptions
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        reason = {"404": "BucketNotFound", "NoSuchBucket": "BucketNotFound", "403": "AccessDenied"}.get(
            code, "RequestFailed")
        return False, reason, f"HEAD bucket {bucket}: {code} {exc.response.get('Error', {}).get('Message', '')}".strip()
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        reason = "TLSFailed" if isinstance(exc, botocore.exceptions.SSLError) else "ConnectionFailed"
        return False, reason, f"HEAD bucket {bucket}: {_first_line(exc)}"
    return True, "BucketReachable", f"HEAD bucket {bucket} succeeded"


# --------------------------------------------------------------------------- the controller

class Reconciler:
    def __init__(self, api_client, pause_file, requeue_after, workers, harbor_class="", resync_period=20.0):
        from kubernetes import client
        self.client = client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.pause_file = Path(pause_file)
        self.requeue_after = requeue_after
        self.resync_period = resync_period
        self.queue = DelayQueue()
        self.working = {}
        self.backoff = {}
        self.harbor_class = harbor_class or ""
        self.lock = threading.Lock()
        self.sentinel_password = os.environ.get("LAB_SENTINEL_PASSWORD")
        for index in range(workers):
            threading.Thread(target=self.worker, name=f"worker-{index}", daemon=True).start()

    # -------------------------------------------------------------- watching
    def foreign(self, meta):
        """Another operator instance's cluster (its harbor-class annotation is not ours)."""
        return ((meta.get("annotations") or {}).get(CLASS_ANNOTATION) or "") != self.harbor_class

    def needs_reconcile(self, obj):
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        if meta.get("deletionTimestamp"):
            return False
        if self.foreign(meta):
            return False
        if status.get("observedGeneration") != meta.get("generation"):
            return True
        return status.get("status") not in ("healthy", "unhealthy")

    def consider(self, obj, listed=False):
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), meta.get("name"))
        if not self.needs_reconcile(obj):
            if listed and not meta.get("deletionTimestamp") and not self.foreign(meta) \
                    and (obj.get("status") or {}).get("status") == "healthy":
                self.resync(key)  # healthy before this process started: resynced like the others
            return
        with self.lock:
            if self.working.get(key) == meta.get("generation"):
                return  # our own provisioning status write, or a duplicate event
        self.queue.put(key)

    def watch(self, ready_file):
        from kubernetes import watch
        ready = Path(ready_file)
        while True:
            try:
                listing = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                for obj in listing.get("items") or []:
                    self.consider(obj, listed=True)
                version = (listing.get("metadata") or {}).get("resourceVersion")
                if not ready.exists():
                    ready.write_text(f"{os.getpid()}\n", encoding="ascii")
                    log(f"watching {PLURAL}.{GROUP} ({len(listing.get('items') or [])} existing)")
                stream = watch.Watch().stream(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                                              resource_version=version, timeout_seconds=300,
                                              allow_watch_bookmarks=True)
                for event in stream:
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: list again
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.consider(event["object"])
            except Exception as exc:  # pylint: disable=broad-except
                log(f"watch interrupted ({type(exc).__name__}: {_first_line(exc)}); listing again in 2s")
                time.sleep(2)

    # -------------------------------------------------------------- reconciling
    def worker(self):
        while True:
            key = self.queue.get()
            while self.pause_file.exists():
                time.sleep(0.5)
            try:
                self.reconcile(*key)
            except Exception as exc:  # pylint: disable=broad-except
                log(f"{key[0]}/{key[1]}: reconcile failed ({type(exc).__name__}: {_first_line(exc)}); retrying")
                self.requeue(key)
            finally:
                with self.lock:
                    self.working.pop(key, None)

    def secret_value(self, namespace, name, keys):
        if not name:
            return None, f"no Secret is referenced (keys {', '.join(keys)})"
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None, f"Secret {namespace}/{name} not found"
            raise
        data = secret.data or {}
        for key in keys:
            if key in data:
                return base64.b64decode(data[key]).decode("utf-8", "replace"), None
        return None, f"Secret {namespace}/{name} has none of the keys {', '.join(keys)}"

    def trusted(self, namespace, spec, component):
        """The CA certificates ``component`` trusts (its certificateRefs' ``ca.crt``, as the operator mounts them)
        as PEM text, or a problem naming a missing Secret."""
        pems = []
        for ref in (spec.get(component) or {}).get("certificateRefs") or []:
            pem, missing = self.secret_value(namespace, ref, ("ca.crt",))
            if missing:
                return None, missing
            pems.append(pem)
        return "".join(pems), None

    def patch_status(self, namespace, name, status):
        status = dict(status, revision=time.time_ns(), operator=CONTROLLER)
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _content_type="application/merge-patch+json")

    def reconcile(self, namespace, name):
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        meta, spec, old = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        generation = meta.get("generation")
        key = (namespace, name)
        if meta.get("deletionTimestamp") or self.foreign(meta):
            return
        # a re-check (an unhealthy cluster's retry, a healthy one's resync) keeps the status until the outcome
        # changes (no flapping, no provisioning in between)
        recheck = old.get("observedGeneration") == generation and old.get("status") in ("healthy", "unhealthy")
        with self.lock:
            self.working[key] = generation
        if not recheck:
            self.backoff.pop(key, None)
            self.patch_status(namespace, name, {
                "status": "provisioning", "observedGeneration": generation,
                "conditions": [{"type": "InProgress", "status": "True", "reason": "Reconciling",
                                "message": "checking dependencies", "lastTransitionTime": now()}]})

        results = {}
        db = ((spec.get("database") or {}).get("spec") or {}).get("postgresql") or {}
        password, problem = self.secret_value(namespace, db.get("passwordRef"),
                                              ("postgres-password", "postgresql-password"))
        trusted, missing = self.trusted(namespace, spec, "core")
        problem = problem if problem and db.get("passwordRef") else missing
        results["DatabaseReady"] = (False, "SecretNotFound", problem) if problem \
            else check_database(spec, password, trusted)
        rd = ((spec.get("cache") or {}).get("spec") or {}).get("redis") or {}
        password, problem = self.secret_value(namespace, rd.get("passwordRef"), ("redis-password",)) \
            if rd.get("passwordRef") else (None, None)
        results["CacheReady"] = (False, "SecretNotFound", problem) if problem \
            else check_cache(spec, password, self.sentinel_password)
        s3 = ((spec.get("storage") or {}).get("spec") or {}).get("s3") or {}
        password, problem = self.secret_value(namespace, s3.get("secretkeyRef"), ("secret",)) \
            if s3.get("secretkeyRef") else (None, None)
        trusted, missing = self.trusted(namespace, spec, "registry")
        problem = problem or missing
        results["StorageReady"] = (False, "SecretNotFound", problem) if problem \
            else check_storage(spec, password, trusted)

        failed = [ctype for ctype, (ok, _, _) in results.items() if not ok]
        stamp = now()
        conditions = [{"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message,
                       "lastTransitionTime": stamp} for ctype, (ok, reason, message) in results.items()]
        if failed:
            summary = "; ".join(f"{ctype}: {results[ctype][2]}" for ctype in failed)
            conditions += [
                {"type": "ServiceReady", "status": "False", "reason": "DependencyUnavailable", "message": summary,
                 "lastTransitionTime": stamp},
                {"type": "InProgress", "status": "False", "reason": "Reconciled", "message": "dependencies checked",
                 "lastTransitionTime": stamp},
                {"type": "Failed", "status": "True", "reason": "DependencyUnavailable", "message": summary,
                 "lastTransitionTime": stamp}]
        else:
            conditions += [
                {"type": "ServiceReady", "status": "True", "reason": "DependenciesReady",
                 "message": "database, cache and storage reachable", "lastTransitionTime": stamp},
                {"type": "InProgress", "status": "False", "reason": "Reconciled", "message": "dependencies checked",
                 "lastTransitionTime": stamp},
                {"type": "Failed", "status": "False", "reason": "Reconciled", "message": "",
                 "lastTransitionTime": stamp}]
        overall = "unhealthy" if failed else "healthy"
        if recheck and _outcome(old.get("conditions")) == _outcome(conditions):
            if failed:
                self.requeue(key)
            else:
                self.resync(key)
            return
        try:
            self.patch_status(namespace, name, {"status": overall, "observedGeneration": generation,
                                                "conditions": conditions})
        except self.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        log(f"{namespace}/{name} generation {generation}: {overall}"
            + (f" ({', '.join(f'{c}={results[c][1]}' for c in failed)})" if failed else ""))
        if failed:
            self.requeue(key)
        else:
            self.backoff.pop(key, None)
            self.resync(key)

    def resync(self, key):
        """Check a healthy cluster again after the resync period."""
        if self.resync_period > 0:
            self.queue.put(key, self.resync_period)

    def requeue(self, key):
        """Check an unhealthy cluster again later, backing off up to a minute."""
        delay = self.backoff.get(key, self.requeue_after / 2) * 2
        self.backoff[key] = min(delay, 60.0)
        self.queue.put(key, self.backoff[key])


def _outcome(conditions):
    return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conditions or [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ready-file", required=True, help="created once the watch is established")
    parser.add_argument("--pause-file", required=True, help="while this file exists, nothing is reconciled")
    parser.add_argument("--requeue-after", type=float, default=3.0,
                        help="seconds before an unhealthy cluster is checked again")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resync-period", type=float, default=20.0,
                        help="seconds before a healthy cluster is checked again (0: never)")
    parser.add_argument("--harbor-class", default=os.environ.get("LAB_HARBOR_CLASS", ""),
                        help="reconcile only clusters with this goharbor.io/harbor-class annotation (default: none)")
    args = parser.parse_args(argv)
    from kubernetes import config
    api_client = config.new_client_from_config(os.environ["LAB_KUBECONFIG"])
    log(f"stand-in reconciler starting (pid {os.getpid()}); it is NOT the Harbor Operator")
    Reconciler(api_client, args.pause_file, args.requeue_after, args.workers, args.harbor_class,
               args.resync_period).watch(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
