# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper: record every callback event, with everything it carries, for the leak tests."""

from __future__ import annotations

DOCUMENTATION = r"""
name: record_all
type: notification
short_description: Record every callback event, for the collection's leak tests
description:
  - Appends one JSON line per callback event (every C(v2_*) method) to the file named by the
    E(HARBORFLEET_RECORD_FILE) environment variable, with the event's task result (diff and loop items included),
    the task's name and the text form of every other argument, so a test can search it for secrets the way any
    callback plugin receives them.
  - It does not dig the templated arguments out of the task object that comes with a result, as Ansible does not
    censor a C(no_log) task's arguments there (see the collection's known issues).
requirements: []
"""

import json
import os

from ansible.plugins.callback import CallbackBase


def _describe(value):
    """What a callback plugin can read from one event argument."""
    out = {"repr": repr(value)}
    for attribute in ("_result", "result"):
        data = getattr(value, attribute, None)
        if isinstance(data, dict):
            out["result"] = data
            break
    task = getattr(value, "task", None) or getattr(value, "_task", None)
    if task is None and hasattr(value, "args") and hasattr(value, "action"):
        task = value
    if task is not None:
        out["task"] = getattr(task, "name", None)
    return out


def _recorder(name):
    def record(self, *args, **kwargs):
        path = os.environ.get("HARBORFLEET_RECORD_FILE")
        if path:
            event = {"event": name, "args": [_describe(a) for a in args],
                     "kwargs": {k: _describe(v) for k, v in kwargs.items()}}
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, default=repr) + "\n")
    record.__name__ = name
    return record


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "record_all"
    CALLBACK_NEEDS_ENABLED = True


for _name in [n for n in dir(CallbackBase) if n.startswith("v2_")]:
    setattr(CallbackModule, _name, _recorder(_name))
