#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/echo_server with a client nobody on the team wrote the
engine for: plain Python sockets. Starts the server on an ephemeral port, opens 1,000
connections at once, sends each a distinct payload (sizes 1 B .. 256 KiB) in random-sized
pieces, verifies every echoed byte, then stops the server with SIGTERM and expects exit 0.

usage: echo_server_clients.py PATH/TO/echo_server [--conns N] [--loops N] [--backend B]
Exits 77 (skipped) when the io_uring backend is asked for and the kernel refuses it.
"""
import argparse
import hashlib
import random
import selectors
import socket
import sys
import time

import sample_server


class Client:
    def __init__(self, port, index, rng):
        size = rng.choice([1, 7, 64, 1000, 4096, 65536, 262144])
        self.payload = hashlib.sha256(str(index).encode()).digest() * (size // 32 + 1)
        self.payload = self.payload[:size]
        self.sent = 0
        self.received = bytearray()
        self.rng = rng
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))

    def done(self):
        return len(self.received) >= len(self.payload)


def run_clients(port, conns):
    rng = random.Random(1234)
    sel = selectors.DefaultSelector()
    clients = [Client(port, i, rng) for i in range(conns)]
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    deadline = time.monotonic() + 60
    remaining = conns
    while remaining and time.monotonic() < deadline:
        for key, events in sel.select(timeout=1):
            c = key.data
            if events & selectors.EVENT_WRITE and c.sent < len(c.payload):
                piece = c.payload[c.sent:c.sent + c.rng.randint(1, 70000)]
                try:
                    c.sent += c.sock.send(piece)
                except BlockingIOError:
                    pass
                if c.sent == len(c.payload):
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if events & selectors.EVENT_READ:
                chunk = c.sock.recv(1 << 20)
                if not chunk:
                    sys.exit(f"server closed a connection early ({len(c.received)} bytes)")
                c.received += chunk
                if c.done():
                    sel.unregister(c.sock)
                    remaining -= 1
    bad = [i for i, c in enumerate(clients) if bytes(c.received) != c.payload]
    for c in clients:
        c.sock.close()
    return remaining, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    proc, port = sample_server.start(args.binary, args.backend, "--loops", str(args.loops))
    try:
        remaining, bad = run_clients(port, args.conns)
    finally:
        code, _, _ = sample_server.stop(proc)
    if remaining:
        sys.exit(f"{remaining} connections did not finish in time")
    if bad:
        sys.exit(f"{len(bad)} connections echoed wrong bytes, e.g. #{bad[0]}")
    if code != 0:
        sys.exit(f"echo_server exited with {code}")
    print(f"ok: {args.conns} connections echoed intact on {args.backend}; server exited 0")


if __name__ == "__main__":
    main()
