#!/usr/bin/env python3
"""One long-poll exchange by hand, as a v1 client does it (docs/reference/wire-protocol.md A.3,
A.4): GET /connect/stream/<channel>/poll, then POST /connect/ack for every message received.

  poll_once.py RELAY_URL CHANNEL TOKEN TIMEOUT ARRIVALS_FILE
Prints the poll's status code. For 200, acks each message and appends "<sid> <ack status>
<webhook id> <message id> 1" to ARRIVALS_FILE (the tally's format), so an acked message counts as
delivered.
"""
import json
import sys
import urllib.parse
import urllib.request

relay, channel, token, timeout, arrivals = sys.argv[1:6]
auth = {"Authorization": f"Bearer {token}"}
req = urllib.request.Request(f"{relay}/connect/stream/{channel}/poll?timeout={timeout}&max_messages=10",
                             headers=auth)
with urllib.request.urlopen(req, timeout=int(timeout) + 10) as resp:
    status = resp.status
    body = resp.read()
print(status)
if status == 200:
    doc = json.loads(body)
    with open(arrivals, "a", encoding="utf-8") as out:
        for msg in doc["messages"]:
            query = urllib.parse.urlencode({"message_id": msg["message_id"], "status": "ack"})
            ack = urllib.request.Request(f"{relay}/connect/ack?{query}", method="POST",
                                         headers={**auth, "X-Connection-ID": doc["connection_id"]})
            with urllib.request.urlopen(ack, timeout=10) as a:
                code = a.status
            sid = (msg.get("payload") or {}).get("sid", "-")
            out.write(f"{sid} {code} {msg['webhook_id']} {msg['message_id']} 1\n")
