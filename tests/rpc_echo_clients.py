#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/rpc_echo, with two clients:

1. samples/rpc_client (the C++ sample, many calls in flight on one connection): 20,000
   echo calls and 20,000 reverse calls of 100 bytes with a window of 64, then 16 calls of
   1 MiB each way; its exit status and the counts it prints are checked.
2. An independent implementation of the frame in Python (struct.pack, not the codec):
   echo, reverse, unknown method (UNKNOWN_METHOD error body), a budget field (not echoed),
   one-way (no reply), an empty body, a body of exactly
   --max-body, 1,000 pipelined requests in one sendall matched by id, and the refusals:
   bad magic and body_length over --max-body and a response sent to the server each close
   that connection (recv gives b"") while another connection keeps working.

Finally SIGTERM must give exit 0 and a totals line whose counts match what was sent.

usage: rpc_echo_clients.py PATH/TO/rpc_echo PATH/TO/rpc_client [--backend epoll|io_uring]
Exits 77 (skipped) when the io_uring backend is asked for and the kernel refuses it.
"""
import argparse
import re
import socket
import struct
import subprocess
import threading

import sample_server
from sample_server import fail

MAGIC = 0x524E
VERSION = 1
REQUEST, RESPONSE, ONE_WAY, ERROR = 0, 1, 2, 3
HEADER = struct.Struct(">HBBHHQI")  # magic, version, type, flags, method, request_id, length
assert HEADER.size == 20
BUDGET_FLAG = 0x0002  # a u32 of remaining milliseconds follows the header
# Error frame bodies: a u16 status code (gRPC's numbers, rpc_status.h), then the message.
INVALID_ARGUMENT, UNKNOWN_METHOD = 3, 12
MAX_BODY = 2 * 1024 * 1024
TIMEOUT = 10.0


def check(condition, message):
    if not condition:
        fail(message)


def frame(ftype, method, request_id, body=b"", flags=0, magic=MAGIC, version=VERSION,
          length=None):
    if length is None:
        length = len(body)
    return HEADER.pack(magic, version, ftype, flags, method, request_id, length) + body


def error_body(code, message):
    return struct.pack(">H", code) + message


def recv_exact(sock, n):
    data = sample_server.recv_n(sock, n)
    check(len(data) == n, f"connection closed after {len(data)} of {n} bytes")
    return data


def read_frame(sock):
    magic, version, ftype, flags, method, request_id, length = HEADER.unpack(
        recv_exact(sock, HEADER.size))
    check(magic == MAGIC and version == VERSION, f"bad header from server: {magic:#x} v{version}")
    return {"type": ftype, "flags": flags, "method": method, "id": request_id,
            "body": recv_exact(sock, length)}


def connect(port):
    return sample_server.connect(port, timeout=TIMEOUT, nodelay=True)


def send_in_background(sock, data):
    """sendall on a thread, so large requests and their answers cannot deadlock."""
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def call(sock, method, request_id, body, flags=0):
    sender = send_in_background(sock, frame(REQUEST, method, request_id, body, flags))
    reply = read_frame(sock)
    sender.join(TIMEOUT)
    return reply


def expect_closed(sock, what):
    """The server must close without answering: recv gives b"" (not data, not a timeout)."""
    sock.settimeout(5.0)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        fail(f"{what}: connection still open after 5 s")
    except ConnectionResetError:
        fail(f"{what}: connection reset instead of closed")
    check(data == b"", f"{what}: server answered {data[:40]!r} instead of closing")


def run_rpc_client(client, port, calls, window, size, method):
    args = [client, "--port", str(port), "--calls", str(calls), "--window", str(window),
            "--size", str(size), "--method", str(method)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    what = f"rpc_client calls={calls} window={window} size={size} method={method}"
    check(res.returncode == 0, f"{what} exited {res.returncode}: {res.stdout} {res.stderr}")
    m = re.fullmatch(r"calls=(\d+) ok=(\d+) errors=(\d+) calls_per_sec=\d+ "
                     r"p50_us=\d+ p99_us=\d+\n", res.stdout)
    check(m is not None, f"{what}: unexpected output {res.stdout!r}")
    check((int(m[1]), int(m[2]), int(m[3])) == (calls, calls, 0),
          f"{what}: wrong counts: {res.stdout.strip()}")
    print(f"ok: {what}: {res.stdout.strip()}")
    return calls


class Counts:
    """What the server should report at exit, tallied from what this script sent."""

    def __init__(self):
        self.requests = 0
        self.one_way = 0
        self.unknown_method = 0
        self.misuse = 0
        self.protocol_errors = 0


def check_methods(port, counts):
    with connect(port) as s:
        r = call(s, 1, 0x1122334455667788, b"hello\x00world", flags=0x8001)
        check(r == {"type": RESPONSE, "flags": 0x8001, "method": 1, "id": 0x1122334455667788,
                    "body": b"hello\x00world"}, f"echo: {r}")
        r = call(s, 2, 7, b"abc\xffdef")
        check(r == {"type": RESPONSE, "flags": 0, "method": 2, "id": 7,
                    "body": b"fed\xffcba"}, f"reverse: {r}")
        r = call(s, 7, 8, b"payload")
        check(r == {"type": ERROR, "flags": 0, "method": 7, "id": 8,
                    "body": error_body(UNKNOWN_METHOD, b"unknown method 7")},
              f"unknown method: {r}")
        r = call(s, 65535, 9, b"")
        check(r["type"] == ERROR and r["id"] == 9 and
              r["body"] == error_body(UNKNOWN_METHOD, b"unknown method 65535"),
              f"unknown method 65535: {r}")
        r = call(s, 1, 10, b"")
        check(r == {"type": RESPONSE, "flags": 0, "method": 1, "id": 10, "body": b""},
              f"empty body: {r}")
        # A request with a budget (the caller's remaining ms, counted in body_length):
        # echoed and reversed without it; a response carries no budget.
        r = call(s, 1, 21, struct.pack(">I", 1500) + b"timed", flags=BUDGET_FLAG | 1)
        check(r == {"type": RESPONSE, "flags": 1, "method": 1, "id": 21, "body": b"timed"},
              f"echo with a budget: {r}")
        r = call(s, 2, 22, struct.pack(">I", 1500) + b"timed", flags=BUDGET_FLAG)
        check(r == {"type": RESPONSE, "flags": 0, "method": 2, "id": 22, "body": b"demit"},
              f"reverse with a budget: {r}")
        counts.requests += 7
        counts.unknown_method += 2

        # One-way frames (any method) get no reply: the next reply answers the request.
        s.sendall(frame(ONE_WAY, 1, 11, b"a") + frame(ONE_WAY, 2, 12, b"b") +
                  frame(ONE_WAY, 99, 13, b"c"))
        counts.one_way += 3
        r = call(s, 2, 14, b"xy")
        check(r["type"] == RESPONSE and r["id"] == 14 and r["body"] == b"yx",
              f"after one-way frames: {r}")
        counts.requests += 1
        s.settimeout(0.3)
        try:
            extra = s.recv(1)
            fail(f"one-way frames were answered: {extra!r}")
        except socket.timeout:
            pass
        s.settimeout(TIMEOUT)

        # A body of exactly --max-body is allowed, both ways.
        big = bytes((i * 7 + 3) & 0xFF for i in range(MAX_BODY))
        r = call(s, 2, 15, big)
        check(r["type"] == RESPONSE and r["id"] == 15 and r["body"] == big[::-1],
              "max-body reverse came back wrong")
        counts.requests += 1

        # sleep (method 3) runs on the worker pool; a bad delay is refused with an error.
        r = call(s, 3, 16, struct.pack(">I", 20) + b"slept")
        check(r == {"type": RESPONSE, "flags": 0, "method": 3, "id": 16,
                    "body": struct.pack(">I", 20) + b"slept"}, f"sleep: {r}")
        r = call(s, 3, 17, b"\x00\x01")
        check(r["type"] == ERROR and r["id"] == 17 and
              r["body"][:2] == struct.pack(">H", INVALID_ARGUMENT) and
              b"big-endian u32" in r["body"], f"sleep with a short body: {r}")
        r = call(s, 3, 18, struct.pack(">I", 10001))
        check(r["type"] == ERROR and r["id"] == 18 and
              r["body"][:2] == struct.pack(">H", INVALID_ARGUMENT), f"sleep over 10 s: {r}")
        # A later request overtakes a sleeping one: answers are matched by id.
        s.sendall(frame(REQUEST, 3, 19, struct.pack(">I", 300)) + frame(REQUEST, 1, 20, b"fast"))
        first, second = read_frame(s), read_frame(s)
        check((first["id"], second["id"]) == (20, 19), f"sleep not overtaken: {first} {second}")
        counts.requests += 5
    print("ok: echo, reverse, unknown method, budget, one-way, empty body, body == --max-body, "
          "sleep on the pool (overtaken by a later echo)")


def check_pipelining(port, counts, n=1000):
    expected = {}
    wire = bytearray()
    for i in range(n):
        request_id = (i * 2654435761) & 0xFFFFFFFFFFFFFFFF  # spread over 64 bits
        body = f"call-{i}-".encode() * (i % 17)
        method = (1, 2, 33)[i % 3]  # 33: no such method
        wire += frame(REQUEST, method, request_id, body)
        if method == 1:
            expected[request_id] = (RESPONSE, body)
        elif method == 2:
            expected[request_id] = (RESPONSE, body[::-1])
        else:
            expected[request_id] = (ERROR, error_body(UNKNOWN_METHOD, b"unknown method 33"))
    check(len(expected) == n, "request ids collide")
    counts.requests += n
    counts.unknown_method += n // 3
    order = list(expected)
    with connect(port) as s:
        s.sendall(bytes(wire))
        for i in range(n):
            r = read_frame(s)
            check(r["id"] in expected, f"response {i} has an unknown id {r['id']}")
            check((r["type"], r["body"]) == expected.pop(r["id"]),
                  f"response {i} (id {r['id']}) has the wrong type or body")
            check(r["id"] == order[i], f"response {i} out of order")
    check(not expected, f"{len(expected)} requests not answered")
    print(f"ok: {n} pipelined requests in one sendall, answered in order, matched by id")


def check_refusals(port, counts):
    with connect(port) as good:
        check(call(good, 1, 1, b"before")["body"] == b"before", "good connection before")
        counts.requests += 1
        cases = [
            ("bad magic", frame(REQUEST, 1, 2, magic=0x5858)),
            ("body_length over --max-body", frame(REQUEST, 1, 3, length=MAX_BODY + 1)),
            ("response sent to the server", frame(RESPONSE, 1, 4, b"")),
        ]
        for what, wire in cases:
            with connect(port) as bad:
                bad.sendall(wire)  # the header only: the server must not wait for a body
                expect_closed(bad, what)
            r = call(good, 2, 5, b"still here")
            check(r["type"] == RESPONSE and r["body"] == b"ereh llits",
                  f"other connection after {what}: {r}")
            counts.requests += 1
        counts.protocol_errors += 2
        counts.misuse += 1
    print("ok: bad magic, oversized body_length, response-to-server: closed; "
          "another connection kept working")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("client")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    proc, port = sample_server.start(args.server, args.backend, "--loops", "2",
                                     "--max-body", str(MAX_BODY))
    counts = Counts()
    try:
        counts.requests += run_rpc_client(args.client, port, 20000, 64, 100, 1)
        counts.requests += run_rpc_client(args.client, port, 20000, 64, 100, 2)
        counts.requests += run_rpc_client(args.client, port, 16, 4, 1 << 20, 1)
        counts.requests += run_rpc_client(args.client, port, 16, 4, 1 << 20, 2)
        check_methods(port, counts)
        check_pipelining(port, counts)
        check_refusals(port, counts)
    finally:
        code, out, err = sample_server.stop(proc)
    check(code == 0, f"rpc_echo exited with {code}: {err}")
    m = re.search(r"rpc_echo: requests=(\d+) one_way=(\d+) unknown_method=(\d+) "
                  r"misuse=(\d+) protocol_errors=(\d+)", out)
    check(m is not None, f"no totals line at exit: {out!r}")
    got = tuple(int(x) for x in m.groups())
    want = (counts.requests, counts.one_way, counts.unknown_method, counts.misuse,
            counts.protocol_errors)
    check(got == want, f"server totals {m.group(0)!r}, expected {want}")
    print(f"ok: SIGTERM -> exit 0 on {args.backend}; {m.group(0)}")


if __name__ == "__main__":
    main()
