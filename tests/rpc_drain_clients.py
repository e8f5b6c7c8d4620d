#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""SIGTERM drain of a server child process (samples/rpc_echo), checked by request ids.

1. Drain completes: 8 connections each pipeline 150 requests (echo, plus `sleep` calls of
   200-400 ms that run on the server's worker pool, so many are still in flight). Once the
   server's /metrics says it has received every byte and decoded every frame, the test
   sends SIGTERM, then:
   - a new connection is refused within 0.5 s (the listener closed at once);
   - /healthz answers 503 while the drain runs;
   - every request id gets exactly one answer with the right body, then the connection
     closes (EOF);
   - the process exits 0 before its --drain-timeout (5 s) and reports 0 connections
     closed at the deadline; its totals line counts every request.
2. Under continuous load, 20 rounds: 50 connections never stop sending numbered requests
   (echo, and `sleep` calls of 50 ms on the worker pool), keeping 8 in flight each, and
   SIGTERM comes at a random moment in the middle of it (sample_server.drain_rounds). Every request the server counted (its totals line)
   gets exactly one answer, with the right body, before its connection closes; requests
   the server never took get none (the client sees the connection end); the process exits
   0 and reports 0 connections closed at the deadline.
3. A stuck handler: one connection sends a `hang` request (taken, never answered),
   another an echo. SIGTERM with --drain-timeout 500: the echo is answered, the stuck
   connection is closed at the deadline (EOF, no answer), the process still exits 0 and
   reports 1 connection closed at the deadline.

usage: rpc_drain_clients.py PATH/TO/rpc_echo [--backend epoll|io_uring]
Exits 77 (skipped) when the io_uring backend is asked for and the kernel refuses it.
"""
import argparse
import errno
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import sample_server
from sample_server import fail, http_get, metric_sum, start_admin, wait_for

HEADER = struct.Struct(">HBBHHQI")  # magic, version, type, flags, method, request_id, length
MAGIC, VERSION = 0x524E, 1
REQUEST, RESPONSE = 0, 1
ECHO, SLEEP, HANG = 1, 3, 4


def check(condition, message):
    if not condition:
        fail(message)


def frame(method, request_id, body):
    return HEADER.pack(MAGIC, VERSION, REQUEST, 0, method, request_id, len(body)) + body


def read_frames_until_eof(sock):
    """Every frame the server sends until it closes: {request_id: body}; fails on repeats."""
    data = sample_server.recv_until_eof(sock)
    answers = {}
    while data:
        check(len(data) >= HEADER.size, f"truncated header at the end ({len(data)} bytes)")
        magic, version, ftype, _, method, rid, length = HEADER.unpack_from(data)
        check(magic == MAGIC and version == VERSION, "bad header from the server")
        check(ftype == RESPONSE, f"request {rid}: frame type {ftype}, expected a response")
        body = data[HEADER.size:HEADER.size + length]
        check(len(body) == length, f"request {rid}: truncated body")
        check(rid not in answers, f"request {rid} answered twice")
        answers[rid] = body
        data = data[HEADER.size + length:]
    return answers


def refused_within(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except ConnectionRefusedError:
            return True
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return True
        time.sleep(0.01)
    return False


def drain_completes(binary, backend):
    proc, port, admin = start_admin(binary, backend, "--loops", "2", "--drain-timeout", "5000",
                                    "--pool-threads", "16")
    conns, expected, wires = [], [], []
    next_id = 1
    for c in range(8):
        want, wire = {}, bytearray()
        for i in range(150):
            if i % 10 == 3:  # 15 sleep calls per connection, 200-400 ms each
                body = struct.pack(">I", 200 + (next_id * 37) % 200) + os.urandom(16)
                wire += frame(SLEEP, next_id, body)
            else:
                body = os.urandom(1 + (next_id * 131) % 700)
                wire += frame(ECHO, next_id, body)
            want[next_id] = body
            next_id += 1
        conns.append(sample_server.connect(port, timeout=15.0, nodelay=True))
        expected.append(want)
        wires.append(bytes(wire))
    total = sum(len(w) for w in wires)
    readers, answers = [], [None] * len(conns)

    def reader(k):
        answers[k] = read_frames_until_eof(conns[k])

    for k, s in enumerate(conns):
        readers.append(threading.Thread(target=reader, args=(k,), daemon=True))
        readers[-1].start()
        s.sendall(wires[k])
    # Every request has reached the server before the signal.
    deadline = time.monotonic() + 10
    while True:
        status, text = http_get(admin, "/metrics")
        check(status == 200, f"/metrics answered {status}")
        frames = metric_sum(text, 'ringnet_frames_total{protocol="rpc"}')
        if metric_sum(text, "ringnet_received_bytes_total") >= total and frames == next_id - 1:
            break
        check(time.monotonic() < deadline, "the server did not receive every request in 10 s")
        time.sleep(0.01)
    in_flight = metric_sum(text, "ringnet_pool_queue_depth") + metric_sum(
        text, "ringnet_pool_busy_threads")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    check(refused_within(port, 0.5), "a new connection was still accepted 0.5 s after SIGTERM")
    status, body = http_get(admin, "/healthz")
    check(status == 503 and body == "draining\n",
          f"/healthz during the drain: {status} {body!r} (expected 503 draining)")
    for t in readers:
        t.join(15)
        check(not t.is_alive(), "a connection was neither answered in full nor closed in 15 s")
    answered = 0
    for k in range(len(conns)):
        got, want = answers[k], expected[k]
        missing = sorted(set(want) - set(got))
        check(not missing, f"connection {k}: {len(missing)} requests unanswered, e.g. {missing[:5]}")
        check(set(got) == set(want), f"connection {k}: answers to ids never sent")
        for rid, body in want.items():
            check(got[rid] == body, f"request {rid}: wrong body")
        answered += len(got)
        conns[k].close()
    try:
        code = proc.wait(timeout=5.5 - (time.monotonic() - t0))
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("the server did not exit before its 5 s drain deadline")
    out, err = proc.communicate()
    took = time.monotonic() - t0
    check(code == 0, f"exit code {code}: {err}")
    m = re.search(r"drained after signal 15 \((\d+) connections closed at the deadline\)", err)
    check(m is not None and m.group(1) == "0", f"drain report: {err!r}")
    m = re.search(r"rpc_echo: requests=(\d+) ", out)
    check(m is not None and int(m.group(1)) == next_id - 1, f"totals line: {out!r}")
    print(f"ok: {backend}: SIGTERM with {int(in_flight)} pool jobs in flight; all {answered} "
          f"requests on 8 connections answered by id; listener refused at once; /healthz 503; "
          f"exit 0 in {took:.2f} s, 0 closed at the deadline")


def load_client(sock, first_id, result):
    """Keeps 8 requests in flight until the server closes; result gets the answers by id."""
    outstanding, answered, buf = {}, {}, bytearray()
    next_id, ended = first_id, None
    sock.settimeout(None)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            wire = bytearray()
            while len(outstanding) < 8:
                if next_id % 4 == 0:
                    body = struct.pack(">I", 50) + next_id.to_bytes(8, "big")
                    wire += frame(SLEEP, next_id, body)
                else:
                    body = os.urandom(1 + next_id % 200)
                    wire += frame(ECHO, next_id, body)
                outstanding[next_id] = body
                next_id += 1
            if wire:
                sock.sendall(wire)
            readable, _, _ = select.select([sock], [], [], 1.0)
            if not readable:
                continue
            chunk = sock.recv(65536)
            if not chunk:
                ended = "eof"
                break
            buf += chunk
            while len(buf) >= HEADER.size:
                magic, version, ftype, _, method, rid, length = HEADER.unpack_from(buf)
                if len(buf) < HEADER.size + length:
                    break
                body = bytes(buf[HEADER.size:HEADER.size + length])
                del buf[:HEADER.size + length]
                if ftype != RESPONSE or rid not in outstanding or rid in answered:
                    result["error"] = f"request {rid}: unexpected, repeated or failed answer"
                    return
                if outstanding.pop(rid) != body:
                    result["error"] = f"request {rid}: wrong body"
                    return
                answered[rid] = True
    except OSError as e:  # the server's close met a send or a receive
        ended = f"error {e.errno}"
    finally:
        sock.close()  # as a client does once the server has closed: the server's linger ends
    result["answered"] = len(answered)
    result["ended"] = ended


def drain_under_load(binary, backend):
    took = sample_server.drain_rounds(binary, backend, load_client, "rpc_echo",
                                      server_args=("--loops", "2", "--pool-threads", "64"))
    print(f"ok: {backend}: {len(took)} rounds of SIGTERM at a random moment under load from 50 "
          f"connections: every request the server counted answered once, the rest none; "
          f"exit 0 in {min(took):.2f}-{max(took):.2f} s")


def stuck_handler(binary, backend):
    proc, port, admin = start_admin(binary, backend, "--loops", "1", "--drain-timeout", "500")
    stuck = sample_server.connect(port, nodelay=True)
    fine = sample_server.connect(port, nodelay=True)
    stuck.sendall(frame(HANG, 1, b"never answered"))
    fine.sendall(frame(ECHO, 2, b"answered"))
    head = sample_server.recv_n(fine, HEADER.size + len(b"answered"))
    check(head[HEADER.size:] == b"answered", "echo before the signal not answered")
    fine.sendall(frame(ECHO, 3, b"during"))
    # The hang request is taken before the signal (else the drain rightly closes its
    # connection at once, with nothing read to answer): all three frames were handled.
    handled = wait_for(lambda: metric_sum(http_get(admin, "/metrics")[1],
                                          "ringnet_frames_total") >= 3, 10)
    check(handled, "the server did not take the three requests within 10 s")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    check(read_frames_until_eof(fine).get(3) == b"during", "echo not answered before EOF")
    stuck.settimeout(5)
    check(read_frames_until_eof(stuck) == {}, "the stuck request got an answer")
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("the server did not exit within 5 s of SIGTERM with a stuck handler")
    took = time.monotonic() - t0
    _, err = proc.communicate()
    check(code == 0, f"exit code {code}: {err}")
    check(0.45 <= took < 3.0, f"exit {took:.2f} s after SIGTERM; the deadline was 0.5 s")
    m = re.search(r"\((\d+) connections closed at the deadline\)", err)
    check(m is not None and m.group(1) == "1", f"drain report: {err!r}")
    print(f"ok: {backend}: stuck handler closed at the 0.5 s deadline and counted; "
          f"exit 0 in {took:.2f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    drain_completes(args.server, args.backend)
    drain_under_load(args.server, args.backend)
    stuck_handler(args.server, args.backend)


if __name__ == "__main__":
    main()
