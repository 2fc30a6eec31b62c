# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every layer shares, at the bottom: errors and their one description, redaction, waiting, retries.

Nothing here imports another file of the collection. A backend teaches ``describe_error`` its library's
exceptions with ``register_errors`` (at import), so one function turns any exception into one sentence.
"""

from __future__ import annotations

import copy
import re
import time

REDACTED = "********"

# Retries of idempotent API calls (throttling, a server restarting): attempts and exponential back-off.
RETRY_ATTEMPTS = 4
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 8.0


class FleetError(Exception):
    """An error worth showing as it is (connection refused, authentication failed, a refused action)."""


class TenantInputError(ValueError):
    """Bad input, found before anything is changed. ``field`` names the offending option."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


_TRANSLATORS = []


def register_errors(types, describe):
    """``describe(exc, where)`` gives the sentence for exceptions of ``types`` (a backend's library errors)."""
    types = tuple(t for t in (types if isinstance(types, tuple) else (types,)) if isinstance(t, type))
    if types and all(entry[0] != types for entry in _TRANSLATORS):
        _TRANSLATORS.append((types, describe))


def describe_error(exc, where=None):
    """One sentence for any exception, never a secret: ours as they are, a library's through its translator,
    anything else as ``Type: message``. ``where`` (an endpoint) is named by translators that know it."""
    if isinstance(exc, (FleetError, TenantInputError)):
        return str(exc)
    for types, describe in _TRANSLATORS:
        if isinstance(exc, types):
            return describe(exc, where)
    return f"{type(exc).__name__}: {exc}"


def retry_delay(attempt, first=RETRY_FIRST_DELAY, cap=RETRY_MAX_DELAY):
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): doubling from ``first``, at most ``cap``."""
    return min(first * 2 ** (attempt - 1), cap)


def poll(fetch, done, timeout, interval=0.5, max_interval=2.0, growth=1.5, clock=time.monotonic, sleep=time.sleep):
    """Call ``fetch()`` until ``done(value)`` or ``timeout`` seconds pass (monotonic clock).

    Returns ``(True, value)`` or ``(False, last value)``. The interval grows by ``growth`` up to ``max_interval``.
    """
    deadline = clock() + timeout
    while True:
        value = fetch()
        if done(value):
            return True, value
        remaining = deadline - clock()
        if remaining <= 0:
            return False, value
        sleep(min(interval, remaining))
        interval = min(interval * growth, max_interval)


def deep_merge(base, override):
    """``override`` merged into a copy of ``base``: dicts merge key by key, a ``None`` value removes the key."""
    result = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# --------------------------------------------------------------------------- CA certificates (TLS to the stores)

PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")


def read_ca_bundle(path, field):
    """The PEM certificates in the file ``path`` (the CA a client verifies a store's certificate with)."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantInputError(field, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    certs = PEM_CERT_RE.findall(text)
    if not certs:
        raise TenantInputError(field, f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return "\n".join(cert.replace("\r", "") for cert in certs) + "\n"
