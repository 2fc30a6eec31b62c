#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_placement
short_description: Place new tenants on PostgreSQL servers and sentinel groups, and record it
version_added: 0.1.0
description:
  - Reads a fleet file and its placement record (C(<fleet>.placement.yml) beside it), places every tenant that has
    no placement yet and writes the record back.
  - A tenant's placement never changes once recorded (or pinned with C(placement) in the fleet file). New tenants
    are placed in id order on the member with the most free capacity in the tenant's region (ties by name), so the
    result is deterministic. A tier without free capacity is an error naming the tenant; nothing is overfilled.
  - Members already above their capacity (capacity lowered after placement) are reported in RV(overfull) with a
    warning; their tenants are not moved.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.attributes
options:
  fleet_file:
    description: The fleet file.
    type: path
    required: true
  placement_file:
    description: The placement record. Defaults to C(<fleet_file without .yml>.placement.yml).
    type: path
  forget:
    description:
      - Tenant ids to drop from the record, once they are removed from the fleet file AND from the backends.
      - Until then a removed tenant keeps its record and counts against its members' capacity.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Record where new tenants live
  harborfleet.fleet.fleet_placement:
    fleet_file: "{{ inventory_dir }}/fleet.yml"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
placement:
  description: Every tenant's placement.
  returned: always
  type: dict
  sample: {acme: {postgres: pg-a, sentinel_group: sg-a}}
placed:
  description: Tenants placed by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: str
usage:
  description: Per tier kind and member, C([used, capacity]).
  returned: always
  type: dict
  sample: {postgres: {pg-a: [120, 400]}, sentinel_groups: {sg-a: [120, 120]}}
overfull:
  description: Members holding more tenants than their capacity.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.harborfleet.fleet.plugins.module_utils._fleet import FleetError, load_fleet, placement_path, yaml

HEADER = ("# Written by harborfleet.fleet.fleet_placement: where each tenant lives. Commit it with the fleet file;\n"
          "# a recorded tenant is never moved by the collection.\n")


def main():
    module = AnsibleModule(argument_spec=dict(fleet_file=dict(type="path", required=True),
                                              placement_file=dict(type="path"),
                                              forget=dict(type="list", elements="str", default=[])),
                           supports_check_mode=True)
    fleet_file = module.params["fleet_file"]
    record_file = module.params["placement_file"] or placement_path(fleet_file)
    try:
        fleet, recorded = load_fleet(fleet_file, record_file)
        fleet.forget(module.params["forget"])
        placement, placed = fleet.placement()
    except FleetError as exc:
        module.fail_json(msg=str(exc))
    document = fleet.placement_document(placement)
    before = recorded or {"tenants": {}}
    usage = fleet.usage(placement)
    overfull = [f"{kind}/{name}" for kind, members in usage.items() for name, (used, cap) in members.items()
                if used > cap]
    for member in overfull:
        module.warn(f"{member} holds more tenants than its capacity; its tenants are not moved")
    current_text = None
    if os.path.exists(record_file):
        with open(record_file, encoding="utf-8") as handle:
            current_text = handle.read()
    new_text = HEADER + yaml.safe_dump(document, default_flow_style=False, sort_keys=True)
    changed = current_text != new_text
    if changed and not module.check_mode:
        partial = record_file + ".partial"
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(new_text)
        os.replace(partial, record_file)
    result = dict(changed=changed, placement=document["tenants"], placed=placed, usage=usage, overfull=overfull)
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": before, "after": document, "before_header": record_file,
                          "after_header": record_file}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
