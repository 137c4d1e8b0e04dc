#!/usr/bin/env python3
"""check.py — judge an Autobahn TestSuite fuzzingclient run (stdlib only).

Reads reports/servers/index.json (written by `wstest -m fuzzingclient`), prints a
per-section summary table, writes it to reports/summary.txt, and exits 1 unless:

  * sections 1-10 (and any other section not named below): every case has
    behavior in {OK, NON-STRICT, INFORMATIONAL} and behaviorClose in
    {OK, INFORMATIONAL};
  * sections 12-13 (permessage-deflate, on in autobahn/ferry.toml): the same; an
    UNIMPLEMENTED there fails the run too, since Ferry implements compression.

Failing cases are listed with their behavior, behaviorClose and report file.

If accepted-results.json exists (or --accepted FILE), cases whose results differ
from the accepted ones are printed (informational; this does not fail the run).

  check.py                          check the run
  check.py --write-accepted FILE    also write FILE = {case_id: [behavior,
                                    behaviorClose]} of this run (sorted), to commit
                                    as accepted-results.json

Paths default relative to this script's directory, so any cwd works.
"""

import argparse
import json
import os
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))

SECTION_NAMES = {
    1: "Framing",
    2: "Pings/Pongs",
    3: "Reserved Bits",
    4: "Opcodes",
    5: "Fragmentation",
    6: "UTF-8 Handling",
    7: "Close Handling",
    8: "Misc",
    9: "Limits/Performance",
    10: "Misc (Auto-Fragmentation)",
    12: "Compression (payloads)",
    13: "Compression (parameters)",
}
OPTIONAL_SECTIONS = set()  # none: permessage-deflate (12, 13) must pass too

GOOD_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
GOOD_CLOSE = {"OK", "INFORMATIONAL"}

BEHAVIOR_COLS = [  # (value, header)
    ("OK", "OK"),
    ("NON-STRICT", "NSTR"),
    ("INFORMATIONAL", "INFO"),
    ("UNIMPLEMENTED", "UNIMP"),
    ("FAILED", "FAIL"),
]
CLOSE_COLS = [
    ("OK", "OK"),
    ("INFORMATIONAL", "INFO"),
    ("UNIMPLEMENTED", "UNIMP"),
    ("WRONG CODE", "WCODE"),
    ("UNCLEAN", "UNCLN"),
    ("FAILED BY CLIENT", "FBCLI"),
    ("FAILED", "FAIL"),
]


def show(path):
    """Path relative to this script's directory when inside it, else absolute."""
    rel = os.path.relpath(path, HERE)
    return os.path.abspath(path) if rel.startswith("..") else rel


def case_key(case_id):
    """'9.10.2' -> (9, 10, 2), for numeric ordering."""
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def section_of(case_id):
    head = case_id.split(".", 1)[0]
    return int(head) if head.isdigit() else head


def allowed(section, behavior, close):
    good_b, good_c = GOOD_BEHAVIOR, GOOD_CLOSE
    if section in OPTIONAL_SECTIONS:
        good_b = good_b | {"UNIMPLEMENTED"}
        good_c = good_c | {"UNIMPLEMENTED"}
    return behavior in good_b and close in good_c


def load_agent(index_path, agent):
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("check.py: cannot read %s: %s" % (index_path, e))
    if not isinstance(index, dict) or not index:
        sys.exit("check.py: %s has no agents" % index_path)
    if agent is None:
        if len(index) != 1:
            sys.exit("check.py: several agents in %s (%s): pick one with --agent"
                     % (index_path, ", ".join(sorted(index))))
        agent = next(iter(index))
    if agent not in index:
        sys.exit("check.py: agent %r not in %s (has: %s)"
                 % (agent, index_path, ", ".join(sorted(index))))
    cases = index[agent]
    if not cases:
        sys.exit("check.py: no cases for agent %r in %s" % (agent, index_path))
    return agent, cases


def summarize(agent, cases, index_rel):
    """Returns (summary text, list of failing case ids)."""
    by_section = {}
    for cid, res in cases.items():
        by_section.setdefault(section_of(cid), []).append(cid)

    hdr_b = " ".join("%5s" % h for _, h in BEHAVIOR_COLS)
    hdr_c = " ".join("%5s" % h for _, h in CLOSE_COLS)
    name_w = max(len(n) for n in SECTION_NAMES.values())
    head = "%4s  %-*s %5s  %s %5s | %s %5s %8s  %s" % (
        "sect", name_w, "name", "cases", hdr_b, "other", hdr_c, "other", "time(s)", "result")
    lines = [
        "Autobahn TestSuite results for agent %r (%s)" % (agent, index_rel),
        "",
        "%4s  %-*s %5s  %-*s | %s" % ("", name_w, "", "", len(hdr_b) + 6,
                                      "behavior", "close behavior"),
        head,
        "-" * len(head),
    ]

    failing = []
    tot_b, tot_c, tot_n, tot_ms = Counter(), Counter(), 0, 0

    def row(label, name, n, cb, cc, ms, result):
        known_b = sum(cb[v] for v, _ in BEHAVIOR_COLS)
        known_c = sum(cc[v] for v, _ in CLOSE_COLS)
        return "%4s  %-*s %5d  %s %5d | %s %5d %8.1f  %s" % (
            label, name_w, name, n,
            " ".join("%5d" % cb[v] for v, _ in BEHAVIOR_COLS), n - known_b,
            " ".join("%5d" % cc[v] for v, _ in CLOSE_COLS), n - known_c,
            ms / 1000.0, result)

    for sect in sorted(by_section, key=lambda s: (isinstance(s, str), s)):
        ids = sorted(by_section[sect], key=case_key)
        cb = Counter(cases[c].get("behavior") for c in ids)
        cc = Counter(cases[c].get("behaviorClose") for c in ids)
        ms = sum(cases[c].get("duration") or 0 for c in ids)
        bad = [c for c in ids if not allowed(sect, cases[c].get("behavior"),
                                             cases[c].get("behaviorClose"))]
        failing.extend(bad)
        if bad:
            result = "FAIL (%d)" % len(bad)
        elif sect in OPTIONAL_SECTIONS and cb["UNIMPLEMENTED"]:
            result = "pass (unimplemented: optional)"
        else:
            result = "pass"
        lines.append(row(sect, SECTION_NAMES.get(sect, "?"), len(ids), cb, cc, ms, result))
        tot_b.update(cb)
        tot_c.update(cc)
        tot_n += len(ids)
        tot_ms += ms

    lines.append("-" * len(head))
    lines.append(row("all", "", tot_n, tot_b, tot_c, tot_ms,
                     "FAIL (%d)" % len(failing) if failing else "pass"))
    lines.append("")
    lines.append("Legend: NSTR=NON-STRICT INFO=INFORMATIONAL UNIMP=UNIMPLEMENTED "
                 "WCODE=WRONG CODE UNCLN=UNCLEAN FBCLI=FAILED BY CLIENT; "
                 "time = sum of case durations.")
    lines.append("Gate: sections 1-10 need behavior OK/NON-STRICT/INFORMATIONAL and close "
                 "OK/INFORMATIONAL; 12-13 (permessage-deflate) the same.")

    if failing:
        lines.append("")
        lines.append("%d failing case(s) (the .html beside each report file is readable):"
                     % len(failing))
        reports_dir = os.path.dirname(index_rel)
        for c in failing:
            res = cases[c]
            report = res.get("reportfile")
            lines.append("  %-10s behavior=%-14s behaviorClose=%-16s %s" % (
                c, res.get("behavior"), res.get("behaviorClose"),
                os.path.join(reports_dir, report) if report else "(no report file)"))
    return "\n".join(lines) + "\n", failing


def results_map(cases):
    return {c: [cases[c].get("behavior"), cases[c].get("behaviorClose")]
            for c in sorted(cases, key=case_key)}


def diff_accepted(cases, accepted_path):
    """Text listing differences from the accepted results ('' if none)."""
    try:
        with open(accepted_path) as f:
            accepted = json.load(f)
    except (OSError, ValueError) as e:
        return "Cannot read accepted results %s: %s\n" % (accepted_path, e)
    current = results_map(cases)
    lines = []
    for c in sorted(set(accepted) | set(current), key=case_key):
        old, new = accepted.get(c), current.get(c)
        if old is None:
            lines.append("  %-10s new case: %s / %s" % (c, new[0], new[1]))
        elif new is None:
            lines.append("  %-10s not run (accepted: %s / %s)" % (c, old[0], old[1]))
        elif list(old) != new:
            lines.append("  %-10s accepted %s / %s  ->  now %s / %s"
                         % (c, old[0], old[1], new[0], new[1]))
    name = show(accepted_path)
    if not lines:
        return "Results match the accepted ones in %s.\n" % name
    return ("%d case(s) differ from the accepted results in %s (behavior / behaviorClose):\n"
            % (len(lines), name)) + "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", default=os.path.join(HERE, "reports"),
                    help="reports directory (default: reports/ beside this script)")
    ap.add_argument("--agent", help="agent name in index.json (default: the only one)")
    ap.add_argument("--accepted", default=os.path.join(HERE, "accepted-results.json"),
                    help="accepted results to compare with, if the file exists")
    ap.add_argument("--write-accepted", metavar="FILE",
                    help="write this run's {case_id: [behavior, behaviorClose]} to FILE")
    args = ap.parse_args()

    index_path = os.path.join(args.reports, "servers", "index.json")
    index_rel = show(index_path)
    agent, cases = load_agent(index_path, args.agent)
    text, failing = summarize(agent, cases, index_rel)

    if os.path.exists(args.accepted):
        text += "\n" + diff_accepted(cases, args.accepted)

    sys.stdout.write(text)
    summary_path = os.path.join(args.reports, "summary.txt")
    with open(summary_path, "w") as f:
        f.write(text)
    print("(summary written to %s)" % show(summary_path))

    if args.write_accepted:
        with open(args.write_accepted, "w") as f:
            # one case per line: compact, but diffs well when committed
            items = list(results_map(cases).items())
            f.write("{\n")
            for i, (c, res) in enumerate(items):
                f.write("  %s: %s%s\n" % (json.dumps(c), json.dumps(res),
                                          "," if i + 1 < len(items) else ""))
            f.write("}\n")
        print("accepted results written to %s (%d cases)" % (args.write_accepted, len(cases)))

    if failing:
        print("AUTOBAHN GATE FAILED: %d case(s) outside the accepted behaviors" % len(failing))
        return 1
    print("AUTOBAHN GATE PASSED: %d cases" % len(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
