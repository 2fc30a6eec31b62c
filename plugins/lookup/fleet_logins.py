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
    C(fleet_postgres_logins) (C(user), C(password)), C(fleet_s3_logins) (C(access_key), C(secret_key)) or
    C(fleet_kubernetes_logins) (any of C(kubeconfig), C(context), C(host), C(api_key), C(ca_cert),
    C(validate_certs)), read from the file named by E(HARBORFLEET_POSTGRES_LOGINS), E(HARBORFLEET_S3_LOGINS) or
    E(HARBORFLEET_KUBERNETES_LOGINS).
  - That is how the collection's Automation Platform credential types inject them (a file the job can read, never
    an extra variable shown with the job); see docs/awx. With the variable unset the mapping is empty, so playbooks
    can fall back to it after their own variables.
options:
  _terms:
    description: The tier, V(postgres), V(s3) or V(kubernetes).
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

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import FleetError, read_logins


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [read_logins(tier) for tier in terms]
        except FleetError as exc:
            raise AnsibleLookupError(f"fleet_logins: {exc}") from None
