#!/usr/bin/env python3
"""Load sender: posts numbered webhooks to one or more relay URLs, like an outside sender.

Each webhook's JSON body is {"sid": "<prefix>-<n>", "seq": n, "pad": "..."}; `sid` identifies it at
the target. Every 2xx answer is written at once (flushed) as a line "<sid>" to the accepted file,
and the answer counts go to the stats file as JSON when the sender ends. Nothing is retried: a
webhook that got no 2xx is simply not accepted (sent but refused: 429/503, or the relay was away).
URLs given several times are used in turn (webhook n goes to url[n % len(urls)]).
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0, help="first sequence number")
    p.add_argument("--rate", type=float, default=0, help="webhooks per second, 0: as fast as possible")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--prefix", default="w")
    p.add_argument("--pad", type=int, default=64, help="filler bytes per body")
    p.add_argument("--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--accepted", required=True)
    p.add_argument("--stats", required=True)
    a = p.parse_args()

    headers = {"Content-Type": "application/json"}
    for h in a.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    urls = [urllib.parse.urlsplit(u) for u in a.url]
    lock = threading.Lock()
    out = open(a.accepted, "a", encoding="utf-8")
    codes = Counter()
    next_n = [a.start]
    end = a.start + a.count
    t0 = time.monotonic()

    def take():
        with lock:
            n = next_n[0]
            if n >= end:
                return None
            next_n[0] += 1
        if a.rate > 0:
            due = t0 + (n - a.start) / a.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return n

    def worker():
        conns = {}
        while True:
            n = take()
            if n is None:
                break
            u = urls[n % len(urls)]
            sid = f"{a.prefix}-{n}"
            body = json.dumps({"sid": sid, "seq": n, "pad": "x" * a.pad}).encode()
            try:
                conn = conns.get(u.netloc)
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
                    conns[u.netloc] = conn
                conn.request("POST", u.path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                code = str(resp.status)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conns.pop(u.netloc, None)
            except (OSError, http.client.HTTPException) as e:
                code = "error:" + type(e).__name__
                conns.pop(u.netloc, None)
                time.sleep(0.05)
            with lock:
                codes[code] += 1
                if code.startswith("2"):
                    out.write(sid + "\n")
                    out.flush()

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    sent = sum(codes.values())
    accepted = sum(v for k, v in codes.items() if k.startswith("2"))
    with open(a.stats, "w", encoding="utf-8") as f:
        json.dump({"sent": sent, "accepted": accepted, "codes": dict(codes),
                   "seconds": round(time.monotonic() - t0, 2)}, f)
    print(f"sender {a.prefix}: sent={sent} accepted={accepted} codes={dict(codes)}")


if __name__ == "__main__":
    main()
