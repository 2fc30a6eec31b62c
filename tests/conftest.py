"""Make the checkout importable as ansible_collections.harborfleet.fleet for pytest."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "harborfleet", "fleet")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)


# --------------------------------------------------------------------------- the reliability and security suite
# Tests marked `reliability` record what they tried and found; the table is printed at the end of the session (the
# README's "Reliability and security" section quotes it).
import pytest  # noqa: E402  pylint: disable=wrong-import-position

RELIABILITY_ROWS = []


@pytest.fixture
def reliability():
    """record(kind, case, tried, outcome): one row of the suite's table."""
    def record(kind, case, tried, outcome):
        RELIABILITY_ROWS.append((kind, case, str(tried), outcome))
    return record


def pytest_terminal_summary(terminalreporter):
    if not RELIABILITY_ROWS:
        return
    head = ("suite", "case", "tried", "outcome")
    widths = [max(len(row[i]) for row in RELIABILITY_ROWS + [head]) for i in range(4)]
    terminalreporter.section("reliability and security")
    for row in [head, tuple("-" * w for w in widths)] + sorted(RELIABILITY_ROWS):
        terminalreporter.write_line("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
