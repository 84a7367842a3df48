#!/usr/bin/env python3
"""Counting HTTP target: the "local application" of a scenario.

Every POST is answered with the status currently configured and recorded, one line per arrival,
in the arrivals file:  <sid> <status> <webhook id> <message id> <attempt>
`sid` is the scenario's own id of the webhook (the `sid` member of the JSON body the load sender
writes); the message id is the relay's `X-Webhook-Message-Id`. The tally (tally.py) reads it.

Behaviour, set at start with flags and changed while running with
  POST /_control  {"status": 503, "delay_ms": 2000, "fail_first_every": 5}
  GET  /_control  the current settings
- status: the answer to every webhook (200 by default);
- delay_ms: how long each answer is held back (slow local deliveries);
- fail_first_every: N > 0 answers 500 to the first arrival of every webhook whose sequence number
  is a multiple of N (a target that fails some deliveries once);

With --processor-config WEBHOOKS_JSON --save-base DIR it stands for the original's Core Webhook
Module as the local processor: a POST to /webhook/<id> is looked up in that original-format
webhooks.json (404 when the id has no entry), and for an entry with "module": "save_to_disk" the
body is written to <DIR>/<module-config.path>/<message id>.json before the 200.
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SETTINGS = {"status": 200, "delay_ms": 0, "fail_first_every": 0}
SEEN = set()
PROCESSOR = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scenario-target"

    def log_message(self, *args):  # quiet: the arrivals file is the record
        pass

    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_control":
            with LOCK:
                self._answer(200, json.dumps(SETTINGS).encode())
        else:
            self._answer(200, b"{}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/_control":
            change = json.loads(raw or b"{}")
            with LOCK:
                SETTINGS.update({k: v for k, v in change.items() if k in SETTINGS})
                self._answer(200, json.dumps(SETTINGS).encode())
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        sid = str(body.get("sid", "-")) if isinstance(body, dict) else "-"
        seq = body.get("seq", -1) if isinstance(body, dict) else -1
        with LOCK:
            status = SETTINGS["status"]
            delay = SETTINGS["delay_ms"]
            every = SETTINGS["fail_first_every"]
            if status < 300 and every > 0 and isinstance(seq, int) and seq % every == 0 \
                    and sid not in SEEN:
                status = 500
            SEEN.add(sid)
        if delay:
            time.sleep(delay / 1000.0)
        message_id = self.headers.get("X-Webhook-Message-Id", "-")
        if status < 300 and PROCESSOR is not None:
            entry = PROCESSOR.get(self.path.rsplit("/", 1)[-1])
            if entry is None:
                status = 404
            elif entry.get("module") == "save_to_disk":
                folder = os.path.join(ARGS.save_base, entry.get("module-config", {}).get("path", "."))
                os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, f"{message_id}.json")
                with open(path + ".tmp", "wb") as f:
                    f.write(raw)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(path + ".tmp", path)
        line = "%s %d %s %s %s\n" % (sid, status, self.headers.get("X-Webhook-Id", "-"), message_id,
                                      self.headers.get("X-Webhook-Attempt", "-"))
        with LOCK:
            ARRIVALS.write(line)
            ARRIVALS.flush()
        self._answer(status, b'{"ok":true}' if status < 300 else b'{"detail":"scenario says no"}')


def main():
    global ARGS, ARRIVALS, PROCESSOR
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--arrivals", required=True)
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--fail-first-every", type=int, default=0)
    p.add_argument("--processor-config")
    p.add_argument("--save-base", default=".")
    ARGS = p.parse_args()
    if ARGS.processor_config:
        with open(ARGS.processor_config, encoding="utf-8") as f:
            PROCESSOR = json.load(f)
    SETTINGS.update(status=ARGS.status, delay_ms=ARGS.delay_ms,
                    fail_first_every=ARGS.fail_first_every)
    # Appending: a restarted target keeps the record of the one before it.
    ARRIVALS = open(ARGS.arrivals, "a", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
