#!/usr/bin/env python3
"""Counts a scenario run from what the senders and targets wrote into its work directory.

  accepted    lines of <work>/accepted: webhooks the relay answered 2xx
  sent        sum of "sent" over <work>/stats-*.json (every attempt, whatever the answer)
  delivered   distinct sids answered 2xx by a target (<work>/arrivals-*.log)
  lost        accepted but never delivered
  duplicated  2xx arrivals beyond the first, summed over every sid
  max_copies  the most 2xx arrivals of one sid
  order_breaks  sids whose first 2xx arrival came before that of a lower-numbered sid of the same
              webhook id (only meaningful for ordered channels)
  refused     non-2xx answers of the senders, by code
Prints one "key=value" per line; with --missing, the lost sids too.
"""
import argparse
import glob
import json
import os
from collections import Counter


def seq_of(sid):
    try:
        return int(sid.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--missing", action="store_true")
    a = p.parse_args()

    accepted = set()
    path = os.path.join(a.work, "accepted")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            accepted = {line.strip() for line in f if line.strip()}
    sent = 0
    codes = Counter()
    for stats in glob.glob(os.path.join(a.work, "stats-*.json")):
        with open(stats, encoding="utf-8") as f:
            s = json.load(f)
        sent += s["sent"]
        codes.update({k: v for k, v in s["codes"].items() if not k.startswith("2")})
    copies = Counter()
    order = []  # (webhook id, seq) in order of first 2xx arrival
    for log in sorted(glob.glob(os.path.join(a.work, "arrivals-*.log"))):
        with open(log, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or not parts[1].startswith("2"):
                    continue
                sid, webhook = parts[0], parts[2]
                if copies[sid] == 0:
                    order.append((webhook, seq_of(sid)))
                copies[sid] += 1
    highest = {}
    breaks = 0
    for webhook, seq in order:
        if seq < highest.get(webhook, -1):
            breaks += 1
        highest[webhook] = max(seq, highest.get(webhook, -1))
    lost = sorted(accepted - set(copies), key=seq_of)
    print(f"sent={sent}")
    print(f"accepted={len(accepted)}")
    print(f"delivered={len(copies)}")
    print(f"lost={len(lost)}")
    print(f"duplicated={sum(c - 1 for c in copies.values())}")
    print(f"max_copies={max(copies.values(), default=0)}")
    print(f"order_breaks={breaks}")
    print("refused=" + ",".join(f"{k}:{v}" for k, v in sorted(codes.items())))
    if a.missing:
        print("missing=" + ",".join(lost[:50]))


if __name__ == "__main__":
    main()
