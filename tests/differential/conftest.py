"""Prints what the differential tests ran: graphs, backend runs, skips, known mismatches.

Each property test leaves its tallies in `report.user_properties` (as ("differential", dict)),
which pytest-xdist carries from the workers, so the summary adds them up in either mode.
"""
from __future__ import annotations

from collections import Counter

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    stats = getattr(getattr(item, "module", None), "DIFF_STATS", None)
    if rep.when == "call" and stats is not None and item.name in stats:
        tally = stats.pop(item.name)  # plain dicts: pytest-xdist serializes no Counter
        rep.user_properties.append(("differential", {k: dict(v) if isinstance(v, dict) else v
                                                     for k, v in tally.items()}))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tallies = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            for key, value in getattr(rep, "user_properties", ()):
                if key == "differential":
                    tallies.append((rep.nodeid.split("::")[-1], value))
    if not tallies:
        return
    tr = terminalreporter
    tr.write_sep("-", "differential tests (tests/differential)")
    for name, t in tallies:
        runs = ", ".join(f"{b} {n}" for b, n in sorted(t["runs"].items()))
        n = max(t["graphs"], 1)
        tr.write_line(f"{name}: {t['graphs']} random graphs (forward + gradient; on average "
                      f"{t['steps'] / n:.1f} generator steps, {t['nodes'] / n:.0f} nodes with "
                      f"the gradient) in {t['seconds']:.1f} s, {t['mode']}; backend runs: {runs}")
        worst = ", ".join(f"{k} {v:.2g}" for k, v in sorted(t["worst"].items()))
        tr.write_line(f"  worst error as a share of the tolerance: {worst}")
        for why, n in Counter(t["skipped"]).most_common():
            tr.write_line(f"  not run {n}x: {why}")
        for why, n in Counter(t["known"]).most_common():
            tr.write_line(f"  known mismatch {n}x: {why}")
        ops = Counter(t["ops"])
        tr.write_line(f"  generator ops used ({len(ops)}): " +
                      ", ".join(f"{o} {n}" for o, n in sorted(ops.items())))
        prims = Counter(t["primitives"])
        tr.write_line(f"  graphc primitives in the gradient graphs ({len(prims)}): " +
                      ", ".join(f"{o} {n}" for o, n in sorted(prims.items())))
        tr.write_line(f"  unexplained mismatches: {t['mismatches']}")
