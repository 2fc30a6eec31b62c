# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes shared by the collection's modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Computes exactly the changes a real run would make, from the same plan, and changes nothing.
  diff_mode:
    support: full
    description: Returns a before/after view per tenant; secrets are never shown, only whether they change.
  platform:
    support: full
    platforms: posix
    description: Runs where the backing service is reachable, usually the controller or an execution environment.
"""

    INFO = r"""
attributes:
  check_mode:
    support: full
    description: Read-only; runs unchanged in check mode.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
  platform:
    support: full
    platforms: posix
    description: Runs where the backing service is reachable, usually the controller or an execution environment.
"""
