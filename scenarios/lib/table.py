#!/usr/bin/env python3
"""Turns the RESULT lines of a scenarios/run.sh output into the Markdown table of
docs/reliability.md (one row per scenario, one column group per backend):

  scenarios/run.sh 2>&1 | tee run.log
  python3 scenarios/lib/table.py run.log [more.log ...]   (a later line wins)

A FAIL whose run was ended by the scenario's time limit shows as CUT: its counts are those at the
moment it was cut, when the newest webhooks may still have been on their way.
"""
import re
import sys

BACKENDS = ["embedded", "redis", "rabbitmq"]
rows = {}
for path in sys.argv[1:]:
    cut = False  # the run was ended by its time limit (a "reason: interrupted" line before it)
    for line in open(path, encoding="utf-8"):
        if line.startswith("== "):
            cut = False
        elif "reason: interrupted" in line:
            cut = True
        if not line.startswith("RESULT "):
            continue
        f = dict(re.findall(r"(\w+)=(\S+)", line))
        if cut and f["verdict"] == "FAIL":
            f["verdict"] = "CUT"
        rows.setdefault(f["scenario"], {})[f["backend"]] = f

print("| scenario | " + " | ".join(BACKENDS) + " |")
print("|---|" + "---|" * len(BACKENDS))
for name in sorted(rows):
    cells = []
    for b in BACKENDS:
        f = rows[name].get(b)
        if f is None:
            cells.append("—")
        else:
            cells.append(f"{f['verdict']}: {f['accepted']} / {f['delivered']} / {f['lost']} / "
                         f"{f['duplicated']} / {f['seconds']} s")
    print(f"| `{name}` | " + " | ".join(cells) + " |")
