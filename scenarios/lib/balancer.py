#!/usr/bin/env python3
"""A TCP load balancer in front of several relays, the way a deployment puts one there:
each incoming connection goes to the first upstream (in the given order) that accepts it, and the
bytes are copied both ways until either side closes. When a relay dies, its connections close and
the connectors' reconnects land on the next upstream.

  balancer.py --port P --upstream 127.0.0.1:A --upstream 127.0.0.1:B
"""
import argparse
import socket
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, upstreams):
    for host, port in upstreams:
        try:
            up = socket.create_connection((host, port), timeout=2)
            up.settimeout(None)
            break
        except OSError:
            continue
    else:
        client.close()
        return
    threading.Thread(target=pipe, args=(client, up), daemon=True).start()
    pipe(up, client)
    up.close()
    client.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", action="append", required=True)
    a = p.parse_args()
    upstreams = [(u.rsplit(":", 1)[0], int(u.rsplit(":", 1)[1])) for u in a.upstream]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.port))
    listener.listen(256)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, upstreams), daemon=True).start()


if __name__ == "__main__":
    main()
