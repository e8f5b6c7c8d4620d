#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Slow clients against http_server with --read-timeout and --idle-timeout.

  slowloris_clients.py <http_server> --backend B

A slowloris client sends a request's head one byte at a time, slowly enough that the
head never completes, so a server that waits for it holds the connection for ever. With
--read-timeout T the engine closes a connection whose input has stayed unconsumed (a
partial frame) for T, however steadily bytes trickle in; with --idle-timeout I it closes
one that sends nothing at all. Checked, all at once on one server:
  - 24 slowloris connections (one header byte every second) are each closed by the
    server between T and T + 1.5 s after their first byte, while they were still sending;
  - 8 silent connections are closed between I and I + 1.5 s after they connected;
  - a request trickled in 1-byte pieces that completes within T is answered (200);
  - a keep-alive client making a request every 40 ms throughout gets every answer;
  - afterwards the server's open descriptors come back to what they were before (polled
    with a deadline: the client sees its close before the server has freed the slot);
  - SIGTERM -> exit 0.
"""
import argparse
import os
import selectors
import socket
import sys
import time

import sample_server
from sample_server import fail, wait_for

READ_TIMEOUT = 2.5
IDLE_TIMEOUT = 1.5   # over the trickle's period: the slowloris connections are not idle
SLACK = 1.5          # the wheel fires 10-20 ms late; the rest is this 2-core machine's jitter
SLOW_CONNS = 24
SILENT_CONNS = 8
TRICKLE_EVERY = 1.0
HEAD = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: "


def server_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_response(sock, deadline):
    """One response (status, body) on a blocking socket, or None if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = sample_server.content_length(head)
    while len(rest) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            return None
        rest += chunk
    return int(head.split(b" ")[1]), rest[:length]


def check_trickled_request_answered(port):
    """A whole request sent a byte at a time, well within the read timeout."""
    wire = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
    with sample_server.connect(port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in wire:
            s.sendall(bytes([b]))
            time.sleep(0.004)
        r = read_response(s, time.monotonic() + 5)
    if r is None or r[0] != 200:
        fail(f"a request trickled in 1-byte pieces got {r!r}")
    print(f"ok: a {len(wire)}-byte request sent in 1-byte pieces within the read timeout "
          "was answered 200")


def run_slow_and_silent(port):
    sel = selectors.DefaultSelector()
    slow = []    # [sock, first_byte_time, sent, closed_at]
    silent = []  # [sock, connected_at, closed_at]
    for _ in range(SLOW_CONNS):
        s = sample_server.connect(port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        slow.append([s, None, 0, None])
        sel.register(s, selectors.EVENT_READ, ("slow", slow[-1]))
    for _ in range(SILENT_CONNS):
        s = sample_server.connect(port)
        s.setblocking(False)
        silent.append([s, time.monotonic(), None])
        sel.register(s, selectors.EVENT_READ, ("silent", silent[-1]))
    # A keep-alive client alongside: every answer must come.
    keeper = sample_server.connect(port)
    keeper_ok = 0
    next_keep = time.monotonic()
    next_byte = time.monotonic()
    wire = HEAD + b"a" * 100000  # never ends within the test
    end = time.monotonic() + READ_TIMEOUT + IDLE_TIMEOUT + 2 * SLACK + 1
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_byte:
            next_byte = now + TRICKLE_EVERY
            for rec in slow:
                if rec[3] is not None:
                    continue
                try:
                    n = rec[0].send(wire[rec[2]:rec[2] + 1])
                except (BrokenPipeError, ConnectionResetError):
                    rec[3] = now
                    continue
                except BlockingIOError:
                    continue
                if rec[1] is None:
                    rec[1] = now
                rec[2] += n
        # The server closes without answering: an EOF (or a reset) ends a connection.
        for key, _ in sel.select(timeout=0.005):
            kind, rec = key.data
            try:
                data = rec[0].recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                fail(f"a {kind} connection was sent {data!r}")
            slot = 3 if kind == "slow" else 2
            if rec[slot] is None:  # (a send may have seen the reset first)
                rec[slot] = time.monotonic()
            sel.unregister(rec[0])
        if now >= next_keep:
            next_keep = now + 0.04
            keeper.sendall(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
            r = read_response(keeper, time.monotonic() + 5)
            if r is None or r[0] != 200:
                fail(f"the keep-alive client's request {keeper_ok} got {r!r}")
            keeper_ok += 1
        if all(r[3] is not None for r in slow) and all(r[2] is not None for r in silent):
            break
    keeper.close()
    for i, (s, first, sent, closed) in enumerate(slow):
        s.close()
        if closed is None:
            fail(f"slowloris connection {i} still open after {sent} bytes "
                 f"({time.monotonic() - first:.1f} s)")
        held = closed - first
        if not READ_TIMEOUT <= held + 0.02 <= READ_TIMEOUT + SLACK:
            fail(f"slowloris connection {i} closed {held:.3f} s after its first byte "
                 f"(read timeout {READ_TIMEOUT} s)")
        if sent < READ_TIMEOUT / TRICKLE_EVERY:
            fail(f"slowloris connection {i} sent only {sent} bytes: not trickling")
    for i, (s, opened, closed) in enumerate(silent):
        s.close()
        if closed is None:
            fail(f"silent connection {i} still open")
        held = closed - opened
        if not IDLE_TIMEOUT <= held + 0.02 <= IDLE_TIMEOUT + SLACK:
            fail(f"silent connection {i} closed {held:.3f} s after connecting "
                 f"(idle timeout {IDLE_TIMEOUT} s)")
    held_slow = sorted(r[3] - r[1] for r in slow)
    held_silent = sorted(r[2] - r[1] for r in silent)
    print(f"ok: {SLOW_CONNS} slowloris connections (1 byte / {TRICKLE_EVERY * 1000:.0f} ms) "
          f"closed {held_slow[0]:.2f}-{held_slow[-1]:.2f} s after their first byte "
          f"(read timeout {READ_TIMEOUT} s); {SILENT_CONNS} silent ones "
          f"{held_silent[0]:.2f}-{held_silent[-1]:.2f} s after connecting (idle timeout "
          f"{IDLE_TIMEOUT} s); {keeper_ok} keep-alive requests alongside, all answered")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    proc, port = sample_server.start(
        args.binary, args.backend, "--loops", "2",
        "--read-timeout", str(int(READ_TIMEOUT * 1000)),
        "--idle-timeout", str(int(IDLE_TIMEOUT * 1000)))
    try:
        baseline = server_fds(proc.pid)
        check_trickled_request_answered(port)
        run_slow_and_silent(port)
        fds = wait_for(lambda: server_fds(proc.pid) == baseline and baseline, 5)
        if not fds:
            fail(f"server holds {server_fds(proc.pid)} descriptors, {baseline} before the "
                 "slow clients")
        print(f"ok: server descriptors back to {baseline}")
    finally:
        code, _, err = sample_server.stop(proc)
    if code != 0:
        fail(f"http_server exited with {code}: {err}")
    print(f"ok: {args.backend}: SIGTERM -> exit 0")


if __name__ == "__main__":
    main()
