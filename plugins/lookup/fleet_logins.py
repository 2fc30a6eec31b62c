# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_logins
author:
  - harborfleet maintainers (@harborfleet)
version_added: 0.2.0
short_description: The admin logins of a tier's members, as credentials inject them
description:
  - Returns the mapping of tier member name to admin login that the fleet playbooks take as
    C(fleet_postgres_logins) (C(user), C(password)) or C(fleet_s3_logins) (C(access_key), C(secret_key)), read from
    the file named by E(HARBORFLEET_POSTGRES_LOGINS) or E(HARBORFLEET_S3_LOGINS).
  - That is how the collection's Automation Platform credential types inject them (a file the job can read, never
    an extra variable shown with the job); see docs/awx. With the variable unset the mapping is empty, so playbooks
    can fall back to it after their own variables.
options:
  _terms:
    description: The tier, V(postgres) or V(s3).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
fleet_postgres_logins: "{{ lookup('harborfleet.fleet.fleet_logins', 'postgres') }}"
"""

RETURN = r"""
_raw:
  description: Member name to login.
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    yaml = None

VARIABLES = {"postgres": ("HARBORFLEET_POSTGRES_LOGINS", ("user", "password")),
             "s3": ("HARBORFLEET_S3_LOGINS", ("access_key", "secret_key"))}


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        out = []
        for tier in terms:
            if tier not in VARIABLES:
                raise AnsibleLookupError(f"fleet_logins: unknown tier {tier!r} (one of {', '.join(VARIABLES)})")
            variable, keys = VARIABLES[tier]
            path = os.environ.get(variable)
            if not path:
                out.append({})
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    logins = yaml.safe_load(handle) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise AnsibleLookupError(f"fleet_logins: cannot read {variable} ({type(exc).__name__})") from None
            if not isinstance(logins, dict) or not all(isinstance(v, dict) and set(keys) <= set(v)
                                                       for v in logins.values()):
                raise AnsibleLookupError(f"fleet_logins: the file named by {variable} must map each {tier} member "
                                         f"name to {{{', '.join(keys)}}}")
            out.append(logins)
        return out
