# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis Sentinel backend: connections, the bulk read, the master set plan, and errors that say what is wrong.

A tenant's Redis master set must be monitored by EVERY sentinel of its group with the same settings. Reads are
bulk: one ``SENTINEL MASTERS`` per sentinel gives every master set the group watches, so a no-op converge of
many tenants costs one round trip per sentinel. A few extra reads happen only where they are needed: the replicas
of a master set that sentinels see at another address than requested (a failover or a stale registration?), and
an ``AUTH`` + ``PING`` against a master when its password has to be checked (see ``update_password``).

Sentinel never returns a master set's ``auth-pass``, so it cannot be compared. With ``update_password=verify``
(the default) it is set when a master set is registered on a sentinel, and afterwards only where a sentinel's link
to the master is unhealthy (flags ``s_down``/``o_down``, or no valid PING reply for ``UNHEALTHY_PING_MS``) AND the
given password opens the master. A healthy link proves that sentinel's auth-pass opens the master, and so does the
given password when the master accepts it, so nothing needs to change. Whenever the password is about to be set,
it is first checked with ``AUTH`` + ``PING`` against the master: a refused password is an error before anything
changes (it would break the sentinels' monitoring); a master that cannot be reached from here is not an error.

A master set that sentinels see at another address is a failover when the requested master is one of its known
replicas: it is left alone and ``master_address`` reports where the master is now. Only an address that is
neither the requested master nor one of its replicas is registered again (``SENTINEL REMOVE`` + ``MONITOR``).
"""

from __future__ import annotations

import collections
import ipaddress
import socket

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module
    redis = None
    NoBackoff = Retry = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = _exc

from ansible_collections.harborfleet.fleet.plugins.module_utils._batch import Plan
from ansible_collections.harborfleet.fleet.plugins.module_utils._common import (
    REDACTED, FleetError, TenantInputError, describe_error, register_errors)
from ansible_collections.harborfleet.fleet.plugins.module_utils._tenant import (
    DEFAULT_CAPACITY, Tenant, is_url_safe_password, validate_master_set)

# A sentinel pings a master every second; no valid reply for this long means its link is not working.
UNHEALTHY_PING_MS = 3000
# ("disconnected" alone is not a sign: it shows for a moment whenever a sentinel re-creates a link)
UNHEALTHY_FLAGS = ("s_down", "o_down")
DEFAULTS = {"down-after-milliseconds": 30000, "failover-timeout": 180000, "parallel-syncs": 1}
# option name -> the field of SENTINEL MASTER(S) and the argument of SENTINEL SET
SETTINGS = (("quorum", "quorum"), ("down_after_milliseconds", "down-after-milliseconds"),
            ("failover_timeout", "failover-timeout"), ("parallel_syncs", "parallel-syncs"))

CONNECTION_SPEC = dict(
    sentinels=dict(type="list", elements="str", required=True),
    sentinel_password=dict(type="str", no_log=True),
    socket_timeout=dict(type="float", default=5.0),
    tls=dict(type="bool", default=False),
    tls_ca_cert=dict(type="path"),
)
GROUP_SPEC = dict(
    sentinel_group=dict(type="str", default="default"),
    capacity=dict(type="int", default=DEFAULT_CAPACITY["sentinel_groups"]),
)


# --------------------------------------------------------------------------- addresses

def parse_address(value, field):
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    text = str(value or "").strip()
    host, sep, port = text.rpartition(":")
    if text.startswith("["):
        host = host[1:-1] if host.endswith("]") else ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TenantInputError(field, f"{value!r} is not host:port (e.g. 10.0.0.5:26379)")
    return host, int(port)


def format_address(address):
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_sentinels(values):
    if not values:
        raise TenantInputError("sentinels", "at least one sentinel (host:port) is required")
    addresses = []
    for value in values:
        address = parse_address(value, "sentinels")
        if address in addresses:
            raise TenantInputError("sentinels", f"{format_address(address)} is listed more than once")
        addresses.append(address)
    return addresses


_RESOLVED = {}


def host_addresses(host):
    """The host itself and the IP addresses it resolves to (sentinels store masters by IP)."""
    if host not in _RESOLVED:
        names = {host}
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                names.update(info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
            except OSError:
                pass
        _RESOLVED[host] = names
    return _RESOLVED[host]


def same_address(seen, requested):
    return seen[1] == requested[1] and (seen[0] == requested[0] or seen[0] in host_addresses(requested[0]))


# --------------------------------------------------------------------------- connections and errors

def client(address, password, params):
    """A client without retries: a failed write is reported and the rerun converges (retrying a MONITOR that
    went through would fail as a duplicate)."""
    timeout = params.get("socket_timeout") or 5.0
    kwargs = dict(host=address[0], port=address[1], password=password or None, socket_timeout=timeout,
                  socket_connect_timeout=timeout, decode_responses=True, retry=Retry(NoBackoff(), 0))
    if params.get("tls"):
        kwargs.update(ssl=True, ssl_ca_certs=params.get("tls_ca_cert"))
    return redis.Redis(**kwargs)


def connection_problem(exc):
    """A short reason for a failed connection or command, never with a secret in it."""
    if redis is not None and isinstance(exc, redis.AuthenticationError):
        return f"authentication failed ({exc})"
    if redis is not None and isinstance(exc, redis.TimeoutError):
        return "timed out"
    if redis is not None and isinstance(exc, redis.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        return f"unreachable ({text})"
    return f"{type(exc).__name__}: {exc}"


if redis is not None:
    register_errors(redis.RedisError, lambda exc, _where=None: f"Redis error: {connection_problem(exc)}")


def as_fields(item):
    """One master of SENTINEL MASTERS as a dict of strings, whatever shape this redis-py returns."""
    if isinstance(item, dict):
        return {str(k): str(v) for k, v in item.items()}
    item = list(item)
    return {str(item[i]): str(item[i + 1]) for i in range(0, len(item) - 1, 2)}


def link_unhealthy(fields):
    flags = fields.get("flags", "").split(",")
    if any(flag in flags for flag in UNHEALTHY_FLAGS):
        return True
    try:
        return int(fields.get("last-ok-ping-reply", 0)) > UNHEALTHY_PING_MS
    except ValueError:
        return True


def seen_address(fields):
    return fields["ip"], int(fields["port"])


# --------------------------------------------------------------------------- desired state

class MasterSetSpec:
    """One tenant's master set, validated before any connection is made."""

    def __init__(self, params, state, sentinel_count):
        self.tenant = Tenant(params["tenant"])
        self.key = self.tenant.id
        self.state = state
        self.name = validate_master_set(params.get("master_set") or self.tenant.master_set, "master_set")
        self.password = params.get("password")
        self.update_password = params.get("update_password") or "verify"
        self.address = None
        self.settings = {}
        if state != "present":
            return
        host, port = params.get("master_host"), params.get("master_port")
        if not host or not isinstance(host, str):
            raise TenantInputError("master_host", "is required with state=present (a host name or IP address)")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise TenantInputError("master_port", f"{port!r} is not a port number (1-65535)")
        if ":" in host and not host.startswith("["):
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise TenantInputError("master_host", f"{host!r} is not a host name or IP address") from None
        self.address = (host.strip("[]"), port)
        if not self.password:
            raise TenantInputError("password", "is required with state=present: it is the master's password and "
                                               "the sentinels' auth-pass")
        if not is_url_safe_password(self.password):
            raise TenantInputError("password", "must contain only letters and digits: the Harbor Operator breaks on "
                                               "URL-special characters in Redis passwords (operator issue #1054)")
        quorum = params.get("quorum")
        quorum = sentinel_count // 2 + 1 if quorum is None else quorum
        if not 0 < quorum <= sentinel_count:
            raise TenantInputError("quorum", f"{quorum} must be between 1 and the number of sentinels "
                                             f"({sentinel_count}): more could never agree that the master is down")
        self.settings["quorum"] = quorum
        for option, field in SETTINGS[1:]:
            value = params.get(option)
            value = DEFAULTS[field] if value is None else value
            if value < 1:
                raise TenantInputError(option, f"{value} must be 1 or more")
            self.settings[field] = value


class Observed:
    """What the reachable sentinels know about one master set."""

    __slots__ = ("views", "replicas", "password_check")

    def __init__(self, views):
        self.views = views            # sentinel address -> fields of SENTINEL MASTERS, or None
        self.replicas = {}            # sentinel address -> replica addresses it knows (read only when needed)
        self.password_check = None    # None (not needed) | ok | refused | no-password | unreachable

    @property
    def registered(self):
        return {address: fields for address, fields in self.views.items() if fields is not None}


# --------------------------------------------------------------------------- the backend

class SentinelBackend:
    """read → plan → apply for master sets on every sentinel of a group; one instance per module run."""

    record_key = "calls"
    describe_error = staticmethod(describe_error)

    def __init__(self, params, check_mode=False, warn=None, client_factory=None):
        self.params = params
        self.check_mode = check_mode
        self.warn = warn or (lambda message: None)
        self.sentinels = parse_sentinels(params["sentinels"])
        self.group = params.get("sentinel_group") or "default"
        self.capacity = params.get("capacity")
        if self.capacity is not None and self.capacity < 0:
            raise TenantInputError("capacity", "must be 0 (no limit) or more")
        if (params.get("socket_timeout") or 5.0) <= 0:
            raise TenantInputError("socket_timeout", "must be more than 0")
        self._client_factory = client_factory or client
        self.clients = {}
        self.masters = {}       # reachable sentinel -> {master set name: fields}
        self.unreachable = {}   # sentinel -> reason

    def close(self):
        for conn in self.clients.values():
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass  # best effort
        self.clients = {}

    @property
    def reachable(self):
        return [address for address in self.sentinels if address in self.masters]

    # read
    def read(self, specs):
        for address in self.sentinels:
            try:
                conn = self._client_factory(address, self.params.get("sentinel_password"), self.params)
                self.clients[address] = conn
                masters = [as_fields(item) for item in conn.execute_command("SENTINEL", "MASTERS")]
            except Exception as exc:  # pylint: disable=broad-except
                if redis is None or not isinstance(exc, redis.RedisError):
                    raise
                self.unreachable[address] = connection_problem(exc)
                continue
            self.masters[address] = {fields["name"]: fields for fields in masters}
        if not self.masters:
            raise FleetError(f"no sentinel of group {self.group!r} is reachable: " + "; ".join(
                f"{format_address(a)}: {reason}" for a, reason in self.unreachable.items()))
        if self.unreachable:
            self.warn(self.unreachable_message())
        observed = {spec.key: Observed({a: self.masters[a].get(spec.name) for a in self.reachable}) for spec in specs}
        self._check_capacity(specs, observed)
        for spec in specs:
            if spec.state == "present":
                self._read_details(spec, observed[spec.key])
        return observed

    def _read_details(self, spec, observed):
        registered = observed.registered
        for address, fields in registered.items():
            if not same_address(seen_address(fields), spec.address):
                try:
                    replies = self.clients[address].execute_command("SENTINEL", "REPLICAS", spec.name)
                except Exception as exc:  # pylint: disable=broad-except
                    if redis is None or not isinstance(exc, redis.RedisError):
                        raise
                    raise FleetError(f"sentinel {format_address(address)}: SENTINEL REPLICAS {spec.name} failed: "
                                     f"{connection_problem(exc)}") from None
                observed.replicas[address] = [seen_address(as_fields(item)) for item in replies]
        # The password is checked against the master whenever it is about to be set somewhere, so a password the
        # master refuses never reaches a sentinel (that would break its monitoring).
        sets_password = (spec.update_password == "always" or len(registered) < len(observed.views)
                         or not all(self._accepted(spec, observed, address) for address in registered))
        if spec.update_password == "verify" and any(link_unhealthy(fields) for fields in registered.values()):
            sets_password = True
        if sets_password:
            observed.password_check = self._check_password(self._current_address(spec, observed), spec.password)

    def _check_password(self, address, password):
        """Does ``password`` open the master? ok | refused | no-password | unreachable."""
        params = dict(self.params, socket_timeout=min(self.params.get("socket_timeout") or 5.0, 3.0))
        conn = self._client_factory(address, password, params)
        try:
            conn.ping()
            return "ok"
        except Exception as exc:  # pylint: disable=broad-except
            if redis is None or not isinstance(exc, redis.RedisError):
                raise
            if isinstance(exc, redis.AuthenticationError):
                return "no-password" if "without any password" in str(exc) or "no password" in str(exc) else "refused"
            if isinstance(exc, redis.ResponseError) and "NOAUTH" in str(exc):
                return "refused"
            return "unreachable"
        finally:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _check_capacity(self, specs, observed):
        if not self.capacity:
            return
        monitored = max(len(masters) for masters in self.masters.values())
        new = [s.key for s in specs if s.state == "present" and not observed[s.key].registered]
        leaving = sum(1 for s in specs if s.state == "absent" and observed[s.key].registered)
        if new and monitored - leaving + len(new) > self.capacity:
            raise FleetError(
                f"sentinel group {self.group!r} monitors {monitored} master sets and has a capacity of "
                f"{self.capacity}: registering {len(new)} more ({', '.join(new[:10])}"
                f"{' ...' if len(new) > 10 else ''}) would overfill it. Place these tenants on another sentinel "
                "group, or raise capacity if the group's hosts were sized for it")

    # plan
    def plan(self, spec, observed):
        plan = Plan(spec.key, record_key=self.record_key)
        plan.result["master_set"] = spec.name
        plan.result["sentinels"] = {}
        if spec.state == "absent":
            self._plan_absent(spec, observed, plan)
        else:
            self._plan_present(spec, observed, plan)
        for address in self.unreachable:
            plan.result["sentinels"][format_address(address)] = "unreachable"
            plan.before.setdefault("sentinels", {})[format_address(address)] = "unreachable"
            plan.after.setdefault("sentinels", {})[format_address(address)] = "unreachable"
        if self.unreachable and self.check_mode:
            plan.error = self.unreachable_message()
        return plan

    def finalize(self, plan, _resource):
        """After the reachable sentinels were converged: an unreachable one still fails every tenant."""
        if self.unreachable:
            raise FleetError(self.unreachable_message())

    def unreachable_message(self):
        total, reachable = len(self.sentinels), len(self.reachable)
        down = ", ".join(f"{format_address(a)} ({reason})" for a, reason in self.unreachable.items())
        majority = total // 2 + 1
        if reachable >= majority:
            consequence = (f"{reachable} of {total} sentinels are reachable, a majority, so failover still works; "
                           "master sets were converged on the reachable sentinels")
        else:
            consequence = (f"only {reachable} of {total} sentinels are reachable, less than the majority of "
                           f"{majority} a failover needs: no failover can happen until more are back; master sets "
                           "were converged on the reachable sentinels")
        return (f"sentinel group {self.group!r}: {down} unreachable. {consequence}. Rerun when "
                f"{'it is' if len(self.unreachable) == 1 else 'they are'} back to repair "
                f"{'it' if len(self.unreachable) == 1 else 'them'}")

    def _current_address(self, spec, observed):
        """Where the master is as the sentinels see it: among those whose address is the requested master or a
        failover of it, the one with the highest config epoch (then the most common); else the requested one."""
        accepted = [fields for address, fields in observed.registered.items() if self._accepted(spec, observed, address)]
        if not accepted:
            return spec.address
        counts = collections.Counter(seen_address(fields) for fields in accepted)
        best = max(accepted, key=lambda f: (_int(f.get("config-epoch")), counts[seen_address(f)]))
        return seen_address(best)

    @staticmethod
    def _accepted(spec, observed, address):
        fields = observed.views[address]
        if same_address(seen_address(fields), spec.address):
            return True
        return any(same_address(replica, spec.address) for replica in observed.replicas.get(address, ()))

    def _plan_present(self, spec, observed, plan):
        if observed.password_check in ("refused", "no-password"):
            reason = "refuses it" if observed.password_check == "refused" else "has no password set"
            raise TenantInputError("password", f"the master of {spec.name} at "
                                               f"{format_address(self._current_address(spec, observed))} {reason}; "
                                               "the sentinels could not authenticate with it")
        current = self._current_address(spec, observed)
        before, after = {}, {}
        password_set = False
        for address in self.reachable:
            shown = format_address(address)
            fields = observed.views[address]
            before[shown] = _view(fields)
            if fields is None or not self._accepted(spec, observed, address):
                if fields is not None:
                    self._call(plan, address, f"remove {spec.name} (monitored at {before[shown]['address']}, neither "
                                              f"the requested master nor one of its replicas) from {shown}",
                               ("SENTINEL", "REMOVE", spec.name))
                self._call(plan, address, f"monitor {spec.name} at {format_address(current)} on {shown}",
                           ("SENTINEL", "MONITOR", spec.name, current[0], current[1], spec.settings["quorum"]))
                self._set(plan, address, spec, {k: v for k, v in spec.settings.items() if k != "quorum"}, True)
                password_set = True
                plan.result["sentinels"][shown] = "added" if fields is None else "re-registered"
                after[shown] = dict(_desired_view(spec, current), auth_pass="set")
                continue
            changes = {field: value for field, value in spec.settings.items() if _int(fields.get(field)) != value}
            auth = spec.update_password == "always" or (
                spec.update_password == "verify" and observed.password_check == "ok" and link_unhealthy(fields))
            if changes or auth:
                self._set(plan, address, spec, changes, auth)
            password_set = password_set or auth
            plan.result["sentinels"][shown] = "updated" if changes or auth else "ok"
            after[shown] = dict(_desired_view(spec, seen_address(fields)), auth_pass="set" if auth else "unchanged")
            before[shown]["auth_pass"] = "(previous)" if auth else "unchanged"
        plan.before = {"master_set": spec.name, "sentinels": before}
        plan.after = {"master_set": spec.name, "sentinels": after}
        plan.result["master_address"] = format_address(current)
        plan.result["failed_over"] = not same_address(current, spec.address)
        if password_set:
            plan.result["password"] = "set"
        elif observed.password_check == "unreachable":
            plan.result["password"] = "unverified"
        else:
            plan.result["password"] = "unchanged"

    def _plan_absent(self, spec, observed, plan):
        before, after = {}, {}
        for address in self.reachable:
            shown = format_address(address)
            fields = observed.views[address]
            before[shown] = _view(fields)
            after[shown] = None
            if fields is None:
                plan.result["sentinels"][shown] = "absent"
                continue
            self._call(plan, address, f"remove {spec.name} from {shown}", ("SENTINEL", "REMOVE", spec.name))
            plan.result["sentinels"][shown] = "removed"
        plan.before = {"master_set": spec.name, "sentinels": before}
        plan.after = {"master_set": spec.name, "sentinels": after}

    def _set(self, plan, address, spec, settings, auth):
        args = ["SENTINEL", "SET", spec.name]
        secret = None
        if auth:
            args += ["auth-pass", spec.password]
            secret = 4
        for field, value in settings.items():
            args += [field, value]
        what = ", ".join((["auth-pass"] if auth else []) + [f"{k} {v}" for k, v in settings.items()])
        self._call(plan, address, f"set {what} of {spec.name} on {format_address(address)}", tuple(args), secret)

    def _call(self, plan, address, action, args, secret_index=None):
        shown = [REDACTED if index == secret_index else str(arg) for index, arg in enumerate(args)]
        record = f"{format_address(address)}: {' '.join(shown)}"
        command = " ".join(shown[:2])

        def execute(_resource):
            try:
                self.clients[address].execute_command(*args)
            except Exception as exc:  # pylint: disable=broad-except
                if redis is None or not isinstance(exc, redis.RedisError):
                    raise
                raise FleetError(f"sentinel {format_address(address)}: {command} {args[2]} failed: "
                                 f"{_scrub(connection_problem(exc), args, secret_index)}") from None

        plan.add(action, execute, record)


def _scrub(text, args, secret_index):
    if secret_index is not None and args[secret_index]:
        text = text.replace(str(args[secret_index]), REDACTED)
    return text


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _view(fields):
    """A sentinel's view of a master set, for the diff (auth-pass is never readable)."""
    if fields is None:
        return None
    view = {"address": format_address(seen_address(fields))}
    for option, field in SETTINGS:
        view[option] = _int(fields.get(field))
    return view


def _desired_view(spec, address):
    view = {"address": format_address(address)}
    for option, field in SETTINGS:
        view[option] = spec.settings[field]
    return view
