# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper: per-task timings and outcome counts, written as one JSON document at the end of the run."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_timer
type: aggregate
short_description: Per-task wall time and ok/changed/failed counts for the fleet benchmark
description:
  - Records, for every task, when it started, when its last host result arrived, and how many hosts returned
    ok, changed, failed, unreachable or skipped; the first few failure messages are kept (results hidden with
    C(no_log) stay hidden). Written as JSON to the file named by E(HARBORFLEET_BENCH_EVENTS) when the play ends.
requirements: []
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

MESSAGES_KEPT = 5


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self.tasks = []
        self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        now = time.monotonic() - self.started
        self.current = {"name": task.get_name(), "start": round(now, 3), "end": round(now, 3), "ok": 0,
                        "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0, "messages": [], "summaries": []}
        self.tasks.append(self.current)

    def _count(self, result, outcome):
        if self.current is None:
            return
        task = self.current
        task["end"] = round(time.monotonic() - self.started, 3)
        task[outcome] += 1
        data = result._result  # pylint: disable=protected-access
        if outcome == "ok" and data.get("changed"):
            task["changed"] += 1
        summaries = [data.get("summary")] + [item.get("summary") for item in data.get("results") or []
                                             if isinstance(item, dict)]
        task["summaries"].extend(s for s in summaries if isinstance(s, dict))
        if outcome in ("failed", "unreachable") and len(task["messages"]) < MESSAGES_KEPT:
            task["messages"].append(f"{result._host.get_name()}: {str(data.get('msg', ''))[:500]}")  # pylint: disable=protected-access

    def v2_runner_on_ok(self, result):
        self._count(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("HARBORFLEET_BENCH_EVENTS")
        if not path:
            return
        totals = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}
        for host in stats.processed:
            summary = stats.summarize(host)
            for key in ("ok", "changed", "unreachable", "skipped"):
                totals[key] += summary.get(key, 0)
            totals["failed"] += summary.get("failures", 0)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"hosts": len(stats.processed), "totals": totals, "tasks": self.tasks,
                       "seconds": round(time.monotonic() - self.started, 3)}, handle)
