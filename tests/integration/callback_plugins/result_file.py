# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: write each task's full result (diff included) as JSON lines to $HARBORFLEET_RESULT_FILE."""

from __future__ import annotations

DOCUMENTATION = r"""
name: result_file
type: notification
short_description: Write task results to a file, for the collection's integration tests
description:
  - Appends every task result, as the module returned it (including C(diff)), as one JSON line to the file named
    by the E(HARBORFLEET_RESULT_FILE) environment variable.
requirements: []
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "result_file"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, **extra):
        path = os.environ.get("HARBORFLEET_RESULT_FILE")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(dict(result.result, **extra), default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, failed=True)
