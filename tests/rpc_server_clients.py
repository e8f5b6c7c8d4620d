#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/rpc_server (RpcServer: services "kv" and "compute") with an
independent client: frames packed with struct, protobuf encoded by hand, nothing shared
with ringnet's codec or client.

Server A (--timeout 5000, --admin-port 0):
 1. rpc.list on both services ("<id> <name>" lines); echo called by the id rpc.list gives
    it; a 1 MiB echo comes back intact; reverse.
 2. kv with hand-encoded protobuf: put then get returns the value (and put again says
    replaced); get of a missing key says not found; a body that is not protobuf
    (ff ff ff) gets INVALID_ARGUMENT, and the connection still works.
 3. An unknown method gets UNKNOWN_METHOD (12) naming the id; the connection is kept.
 4. fail with each code 1..16 answers an error frame with that code (0 and 17 refused
    with INVALID_ARGUMENT).
 5. Deadlines: hang with a 200 ms budget answers DEADLINE_EXCEEDED after >= ~195 ms and
    long before --timeout; a budget of 0 answers DEADLINE_EXCEEDED at once; sleep 1000 ms
    with a 150 ms budget answers DEADLINE_EXCEEDED well before 1000 ms.
 7. A request trickled one byte per segment is answered, and not before its last byte.
 8. 200 requests in one sendall (echo, reverse, sleep on the pool, fail, rpc.list): every
    answer matched by request_id, bodies intact.
10. /metrics: ringnet_rpc_requests_total for compute/echo equals the echo calls made, and
    ringnet_rpc_responses_total counts the DEADLINE_EXCEEDED answers of case 5.
    At SIGTERM server A exits 0 with totals equal to what this script counted.
Server B (--max-body 65536):
 6. Malformed frames each close only their own connection (EOF or reset, no answer):
    bad magic ("GET / HTTP/1.1"), version 2, a response frame and an error frame from the
    client, body_length of 1 MiB over --max-body, the budget flag with body_length 2.
    Another connection opened before them keeps working after each.
Server C (--drain-limit 300 --drain-timeout 3000):
 9. SIGTERM under load from 8 connections (echo, sleep 50 ms, one hang each), checked by
    the rule in drain_under_load()'s comment.

usage: rpc_server_clients.py PATH/TO/rpc_server [--backend epoll|io_uring]
Exits 77 (skipped) when the io_uring backend is asked for and the kernel refuses it.
"""
import argparse
import collections
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import sample_server
from sample_server import fail, http_get, metric_sum, wait_for

MAGIC, VERSION = 0x524E, 1
REQUEST, RESPONSE, ONE_WAY, ERROR = 0, 1, 2, 3
FLAG_BUDGET = 0x0002
HEADER = struct.Struct(">HBBHHQI")  # magic, version, type, flags, method, request_id, length
assert HEADER.size == 20
LIST, ECHO, REVERSE, SLEEP, HANG, FAIL = 0, 1, 2, 3, 4, 5  # compute's ids
KV_GET, KV_PUT = 1, 2
CANCELLED, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 1, 3, 4
UNKNOWN_METHOD, UNAVAILABLE = 12, 14
TIMEOUT = 10.0


def check(condition, message):
    if not condition:
        fail(message)


# ---------------------------------------------------------------- frames

def frame(ftype, method, request_id, body=b"", flags=0, budget=None, magic=MAGIC,
          version=VERSION, length=None):
    """One frame; with `budget` the flag is set and the u32 goes before the body (it counts
    in body_length)."""
    if budget is not None:
        flags |= FLAG_BUDGET
        body = struct.pack(">I", budget) + body
    if length is None:
        length = len(body)
    return HEADER.pack(magic, version, ftype, flags, method, request_id, length) + body


def request(method, request_id, body=b"", budget=None):
    return frame(REQUEST, method, request_id, body, budget=budget)


def parse_frames(buf):
    """Takes every whole frame off the front of `buf` (a bytearray)."""
    out = []
    while len(buf) >= HEADER.size:
        magic, version, ftype, flags, method, rid, length = HEADER.unpack_from(buf)
        check(magic == MAGIC and version == VERSION,
              f"bad header from the server: {bytes(buf[:HEADER.size]).hex()}")
        if len(buf) < HEADER.size + length:
            break
        body = bytes(buf[HEADER.size:HEADER.size + length])
        del buf[:HEADER.size + length]
        out.append(make_answer(ftype, flags, method, rid, body))
    return out


def make_answer(ftype, flags, method, rid, body):
    ans = {"type": ftype, "flags": flags, "method": method, "id": rid, "body": body,
           "code": None, "message": None}
    if ftype == ERROR:
        check(len(body) >= 2, f"error frame for {rid} with a {len(body)}-byte body")
        ans["code"] = struct.unpack(">H", body[:2])[0]
        ans["message"] = body[2:].decode("utf-8", errors="replace")
    else:
        check(ftype == RESPONSE, f"answer to {rid} has frame type {ftype}")
    return ans


class Client:
    """One connection: numbered requests, answers read frame by frame."""

    def __init__(self, port, first_id=1):
        self.sock = sample_server.connect(port, timeout=TIMEOUT, nodelay=True)
        self.buf = bytearray()
        self.pending = collections.deque()  # answers parsed, not yet read
        self.next_id = first_id

    def close(self):
        self.sock.close()

    def new_id(self):
        self.next_id += 1
        return self.next_id - 1

    def send(self, data):
        """sendall on a thread, so that a large request and its answer cannot deadlock."""
        t = threading.Thread(target=self.sock.sendall, args=(data,), daemon=True)
        t.start()
        return t

    def read(self):
        while not self.pending:
            chunk = self.sock.recv(1 << 20)
            check(chunk, "the server closed the connection while an answer was due")
            self.buf += chunk
            self.pending.extend(parse_frames(self.buf))
        return self.pending.popleft()

    def call(self, method, body=b"", budget=None):
        rid = self.new_id()
        sender = self.send(request(method, rid, body, budget))
        ans = self.read()
        sender.join(TIMEOUT)
        check(ans["id"] == rid, f"method {method}: answer for id {ans['id']}, expected {rid}")
        check(ans["method"] == method, f"answer to {rid} names method {ans['method']}")
        return ans

    def ok(self, method, body=b"", what=""):
        ans = self.call(method, body)
        check(ans["type"] == RESPONSE,
              f"{what or method}: error {ans['code']} {ans['message']!r} instead of a response")
        check(ans["flags"] == 0, f"{what}: response flags {ans['flags']:#x}")
        return ans["body"]

    def error(self, method, body, code, what, budget=None):
        ans = self.call(method, body, budget)
        check(ans["type"] == ERROR and ans["code"] == code,
              f"{what}: expected an error frame with code {code}, got type {ans['type']} "
              f"code {ans['code']} {ans['message']!r} body {ans['body'][:40]!r}")
        return ans


# ---------------------------------------------------------------- protobuf by hand

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def pb_decode(data):
    """{field: value} for varint (wire type 0) and length-delimited (2) fields."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        n, shift = 0, 0
        while True:
            check(i < len(data), f"truncated varint in {data!r}")
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        key = read_varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            fields[field] = read_varint()
        elif wire == 2:
            n = read_varint()
            check(i + n <= len(data), f"truncated field {field} in {data!r}")
            fields[field] = data[i:i + n]
            i += n
        else:
            fail(f"unexpected wire type {wire} (field {field}) in {data!r}")
    return fields


def kv_put(c, key, value):
    body = pb_bytes(1, key.encode()) + pb_bytes(2, value)
    reply = pb_decode(c.ok(KV_PUT, body, f"put {key}"))
    check(set(reply) <= {1}, f"PutReply has unknown fields {reply}")
    return bool(reply.get(1, 0))


def kv_get(c, key):
    reply = pb_decode(c.ok(KV_GET, pb_bytes(1, key.encode()), f"get {key}"))
    check(set(reply) <= {1, 2}, f"GetReply has unknown fields {reply}")
    return bool(reply.get(1, 0)), reply.get(2, b"")


# ---------------------------------------------------------------- the server

def start_server(binary, backend, *args, admin=False):
    """Starts rpc_server on ephemeral ports; returns (proc, kv_port, compute_port, admin
    port or None, stderr file)."""
    err_file = tempfile.TemporaryFile()
    cmd = [binary, "--port", "0", "--compute-port", "0", "--backend", backend, *args]
    if admin:
        cmd += ["--admin-port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
    lines = [proc.stdout.readline() for _ in range(3 if admin else 2)]
    ports = {}
    for line in lines:
        m = re.match(r"listening on 127\.0\.0\.1:(\d+) \(service (\w+),", line)
        if m:
            ports[m.group(2)] = int(m.group(1))
        m = re.match(r"admin on 127\.0\.0\.1:(\d+) ", line)
        if m:
            ports["admin"] = int(m.group(1))
    if set(ports) == {"kv", "compute"} | ({"admin"} if admin else set()):
        return proc, ports["kv"], ports["compute"], ports.get("admin"), err_file
    sample_server.start_failed(proc, backend, f"rpc_server did not report its ports: {lines!r}",
                               err_file)


def stderr_text(err_file):
    err_file.seek(0)
    return err_file.read().decode(errors="replace")


TOTALS = re.compile(r"rpc_server: calls=(\d+) ok=(\d+) errors=(\d+) deadline_exceeded=(\d+) "
                    r"cancelled=(\d+) unavailable=(\d+)")


def totals(out, err_file):
    m = TOTALS.search(out or "")
    check(m is not None, f"no totals line at exit: {out!r} {stderr_text(err_file)[-2000:]}")
    names = ("calls", "ok", "errors", "deadline_exceeded", "cancelled", "unavailable")
    return dict(zip(names, (int(x) for x in m.groups()))), m.group(0)


class Tally:
    """What server A should count, from the answers this script got. The server counts an
    unknown method apart from errors; a handler's error (fail 12 included) is an error."""

    METHODS = {"kv": {LIST, KV_GET, KV_PUT}, "compute": {LIST, ECHO, REVERSE, SLEEP, HANG, FAIL}}

    def __init__(self):
        self.ok = 0
        self.errors = 0          # error frames the server accounts (not unknown methods)
        self.unknown = 0
        self.deadline = 0
        self.cancelled = 0
        self.echo = 0            # compute echo calls (case 10)

    def add(self, ans, method, service="compute"):
        if method not in self.METHODS[service]:
            check(ans["type"] == ERROR and ans["code"] == UNKNOWN_METHOD,
                  f"{service} method {method}: {ans}")
            self.unknown += 1
        elif ans["type"] == RESPONSE:
            self.ok += 1
        else:
            self.errors += 1
            self.deadline += ans["code"] == DEADLINE_EXCEEDED
            self.cancelled += ans["code"] == CANCELLED
        if service == "compute" and method == ECHO:
            self.echo += 1


class Counting(Client):
    """A Client whose every answer goes into a Tally."""

    def __init__(self, port, tally, service, first_id=1):
        super().__init__(port, first_id)
        self.tally, self.service = tally, service

    def call(self, method, body=b"", budget=None):
        ans = super().call(method, body, budget)
        self.tally.add(ans, method, self.service)
        return ans


# ---------------------------------------------------------------- cases 1-5, 7, 8, 10

def parse_list(text):
    methods = {}
    for line in text.decode().splitlines():
        m = re.fullmatch(r"(\d+) (\S+)", line)
        check(m is not None, f"rpc.list line {line!r}")
        check(m.group(2) not in methods, f"rpc.list names {m.group(2)} twice")
        methods[m.group(2)] = int(m.group(1))
    check(text.endswith(b"\n"), f"rpc.list does not end with a newline: {text!r}")
    return methods


def case_list_echo(kv_port, compute_port, tally):
    kv = Counting(kv_port, tally, "kv")
    listed = parse_list(kv.ok(LIST, b"", "kv rpc.list"))
    check(listed == {"rpc.list": 0, "get": 1, "put": 2}, f"kv rpc.list: {listed}")
    kv.close()
    c = Counting(compute_port, tally, "compute", first_id=1 << 40)
    listed = parse_list(c.ok(LIST, b"ignored", "compute rpc.list"))
    check(listed == {"rpc.list": 0, "echo": 1, "reverse": 2, "sleep": 3, "hang": 4, "fail": 5},
          f"compute rpc.list: {listed}")
    echo = listed["echo"]
    body = b"hello\x00rpc\xff"
    check(c.ok(echo, body, "echo") == body, "echo came back wrong")
    check(c.ok(echo, b"", "empty echo") == b"", "empty echo came back non-empty")
    big = random.Random(1).randbytes(1 << 20)
    got = c.ok(echo, big, "1 MiB echo")
    check(got == big, f"1 MiB echo: {len(got)} bytes back, "
                      f"{'equal length' if len(got) == len(big) else 'wrong length'}")
    check(c.ok(listed["reverse"], b"abc\x00def", "reverse") == b"fed\x00cba", "reverse wrong")
    mid = os.urandom(100_000)
    check(c.ok(listed["reverse"], mid, "100 kB reverse") == mid[::-1], "100 kB reverse wrong")
    c.close()
    print("ok: case 1: rpc.list on kv and compute; echo by the listed id; 1 MiB echo intact; "
          "reverse")


def case_kv(kv_port, tally):
    c = Counting(kv_port, tally, "kv")
    key = f"key-{os.getpid()}-\u00e9"
    value = bytes(range(256)) + b"\x00" * 50  # 306 bytes: a two-byte length varint
    check(kv_get(c, key) == (False, b""), "get before put found something")
    check(kv_put(c, key, value) is False, "first put said replaced")
    got = kv_get(c, key)
    check(got == (True, value), f"get after put: {got}")
    check(kv_put(c, key, b"second") is True, "second put did not say replaced")
    check(kv_get(c, key) == (True, b"second"), "get after the second put")
    check(kv_get(c, "missing-key") == (False, b""), "get of a missing key")
    ans = c.error(KV_GET, b"\xff\xff\xff", INVALID_ARGUMENT, "get with a body not protobuf")
    check(ans["id"] == c.next_id - 1, "INVALID_ARGUMENT for the wrong id")
    c.error(KV_PUT, b"\xff\xff\xff", INVALID_ARGUMENT, "put with a body not protobuf")
    c.error(KV_PUT, pb_bytes(2, b"v"), INVALID_ARGUMENT, "put with an empty key")
    check(kv_get(c, key) == (True, b"second"), "the connection after INVALID_ARGUMENT")
    c.close()
    print("ok: case 2: kv put/get with hand-encoded protobuf, missing key not found, "
          "ff ff ff -> INVALID_ARGUMENT and the connection kept")


def case_unknown(kv_port, compute_port, tally):
    for port, service, method in ((compute_port, "compute", 77), (kv_port, "kv", 65535)):
        c = Counting(port, tally, service)
        ans = c.error(method, b"payload", UNKNOWN_METHOD, f"{service} method {method}")
        check(re.search(rf"\b{method}\b", ans["message"]) is not None,
              f"UNKNOWN_METHOD message does not name {method}: {ans['message']!r}")
        if service == "compute":
            check(c.ok(ECHO, b"after", "echo after unknown") == b"after",
                  "echo after UNKNOWN_METHOD")
        else:
            check(kv_get(c, "nothing") == (False, b""), "kv get after UNKNOWN_METHOD")
        c.close()
    print("ok: case 3: unknown method -> UNKNOWN_METHOD (12) naming the id; connection kept")


def case_fail(compute_port, tally):
    c = Counting(compute_port, tally, "compute")
    for code in range(1, 17):
        ans = c.error(FAIL, str(code).encode(), code, f"fail {code}")
        check(ans["message"] == "failed as asked", f"fail {code}: message {ans['message']!r}")
    for bad in (b"0", b"17", b"x"):
        c.error(FAIL, bad, INVALID_ARGUMENT, f"fail {bad!r}")
    check(c.ok(ECHO, b"still", "echo after fails") == b"still", "echo after the fail calls")
    c.close()
    print("ok: case 4: fail 1..16 -> error frames with those codes; 0, 17, x -> "
          "INVALID_ARGUMENT")


def timed_error(c, method, body, budget, what):
    t0 = time.monotonic()
    ans = c.error(method, body, DEADLINE_EXCEEDED, what, budget=budget)
    return time.monotonic() - t0, ans


def case_deadlines(compute_port, tally):
    c = Counting(compute_port, tally, "compute")
    took, _ = timed_error(c, HANG, b"h", 200, "hang with a 200 ms budget")
    check(0.195 <= took < 2.5,
          f"hang with a 200 ms budget: DEADLINE_EXCEEDED after {took * 1000:.0f} ms "
          f"(expected 195 ms .. well before --timeout 5000)")
    took0, _ = timed_error(c, HANG, b"h", 0, "hang with a budget of 0")
    check(took0 < 0.15, f"budget 0: DEADLINE_EXCEEDED after {took0 * 1000:.0f} ms, not at once")
    took_e, _ = timed_error(c, ECHO, b"e", 0, "echo with a budget of 0")
    check(took_e < 0.15, f"echo, budget 0: answer after {took_e * 1000:.0f} ms")
    took_s, _ = timed_error(c, SLEEP, struct.pack(">I", 1000), 150, "sleep 1000 ms, budget 150")
    check(0.145 <= took_s < 0.8,
          f"sleep 1000 ms with a 150 ms budget: DEADLINE_EXCEEDED after {took_s * 1000:.0f} ms")
    # A budget above the need changes nothing; the connection serves on.
    ans = c.call(SLEEP, struct.pack(">I", 10) + b"z", budget=2000)
    check(ans["type"] == RESPONSE and ans["body"] == struct.pack(">I", 10) + b"z",
          f"sleep 10 ms with a 2 s budget: {ans}")
    check(c.ok(ECHO, b"after deadlines", "echo after the deadlines") == b"after deadlines",
          "echo after the deadlines")
    c.close()
    print(f"ok: case 5: hang budget 200 -> DEADLINE_EXCEEDED in {took * 1000:.0f} ms; budget 0 "
          f"-> at once ({took0 * 1000:.1f} ms hang, {took_e * 1000:.1f} ms echo); sleep 1000 "
          f"with budget 150 -> DEADLINE_EXCEEDED in {took_s * 1000:.0f} ms")


def nothing_to_read(sock, seconds):
    readable, _, _ = select.select([sock], [], [], seconds)
    return not readable


def case_trickle(compute_port, tally):
    c = Counting(compute_port, tally, "compute")
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for method, body, budget, want in ((ECHO, b"trickled, one byte a segment", None, None),
                                       (REVERSE, b"budget too", 3000, b"oot tegdub")):
        rid = c.new_id()
        wire = request(method, rid, body, budget)
        for i, b in enumerate(wire[:-1]):
            c.sock.send(bytes([b]))
            time.sleep(0.002 if i % 4 else 0.0)
        check(nothing_to_read(c.sock, 0.05), "an answer came before the request's last byte")
        c.sock.send(wire[-1:])
        ans = c.read()
        tally.add(ans, method)
        check(ans["type"] == RESPONSE and ans["id"] == rid and
              ans["body"] == (want if want is not None else body),
              f"trickled request {method}: {ans}")
    c.close()
    print("ok: case 7: requests sent one byte at a time (one with a budget) answered after "
          "their last byte")


def case_pipeline(compute_port, tally, n=200):
    rng = random.Random(7)
    expected, wire = {}, bytearray()
    ids = rng.sample(range(1, 1 << 63), n)
    for i, rid in enumerate(ids):
        kind = i % 10
        if kind in (0, 3, 6):
            body = rng.randbytes(rng.randrange(0, 3000))
            wire += request(ECHO, rid, body)
            expected[rid] = (ECHO, RESPONSE, body)
        elif kind in (1, 4, 7):
            body = rng.randbytes(rng.randrange(1, 500))
            wire += request(REVERSE, rid, body)
            expected[rid] = (REVERSE, RESPONSE, body[::-1])
        elif kind in (2, 5):
            body = struct.pack(">I", rng.randrange(0, 6)) + rng.randbytes(8)
            wire += request(SLEEP, rid, body)
            expected[rid] = (SLEEP, RESPONSE, body)
        elif kind == 8:
            code = rng.randrange(1, 17)
            wire += request(FAIL, rid, str(code).encode())
            expected[rid] = (FAIL, ERROR, code)
        else:
            wire += request(LIST, rid)
            expected[rid] = (LIST, RESPONSE, None)
    c = Client(compute_port)
    sender = c.send(bytes(wire))
    seen = set()
    for _ in range(n):
        ans = c.read()
        rid = ans["id"]
        check(rid in expected, f"pipelined answer with an unknown id {rid}")
        check(rid not in seen, f"pipelined request {rid} answered twice")
        seen.add(rid)
        method, ftype, want = expected[rid]
        tally.add(ans, method)
        check(ans["method"] == method and ans["type"] == ftype,
              f"pipelined {rid}: method {ans['method']} type {ans['type']}, expected "
              f"{method} {ftype} ({ans['message']!r})")
        if ftype == ERROR:
            check(ans["code"] == want, f"pipelined fail {rid}: code {ans['code']} != {want}")
        elif method == LIST:
            check(parse_list(ans["body"]).get("echo") == ECHO, f"pipelined rpc.list {rid}")
        else:
            check(ans["body"] == want, f"pipelined {rid} (method {method}): wrong body")
    sender.join(TIMEOUT)
    check(nothing_to_read(c.sock, 0.1), "more answers than requests")
    c.close()
    print(f"ok: case 8: {n} pipelined requests in one sendall, all answered once, matched by "
          f"id, bodies intact")


def case_metrics(admin_port, tally):
    def series(method, code=None):
        labels = f'service="compute",method="{method}"'
        if code is None:
            return f"ringnet_rpc_requests_total{{{labels}}}"
        return f'ringnet_rpc_responses_total{{{labels},code="{code}"}}'

    def current():
        status, text = http_get(admin_port, "/metrics")
        check(status == 200, f"/metrics answered {status}")
        return text

    want = {series("echo"): tally.echo, series("hang", "DEADLINE_EXCEEDED"): 2,
            series("sleep", "DEADLINE_EXCEEDED"): 1, series("echo", "DEADLINE_EXCEEDED"): 1}
    def matches():
        text = current()
        return all(metric_sum(text, k) == v for k, v in want.items())

    if not wait_for(matches, 5):
        text = current()
        got = {k: metric_sum(text, k) for k in want}
        fail(f"/metrics after 5 s: {got}, expected {want}")
    print(f"ok: case 10: /metrics: compute echo requests_total = {tally.echo}; "
          f"DEADLINE_EXCEEDED: hang 2, sleep 1, echo 1")


# ---------------------------------------------------------------- case 6

def expect_closed(sock, what):
    """The server must close this connection without answering: EOF or a reset."""
    sock.settimeout(5.0)
    data = bytearray()
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        fail(f"{what}: connection still open after 5 s")
    except ConnectionResetError:
        pass
    check(not data, f"{what}: server sent {bytes(data[:40])!r} instead of closing")


def case_malformed(kv_port, compute_port, admin_port):
    good = Client(compute_port)
    good_kv = Client(kv_port)
    check(good.ok(ECHO, b"before", "echo before") == b"before", "echo before the bad frames")
    cases = [
        ("bad magic (HTTP request)", compute_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("bad magic on kv", kv_port, b"GET / HTTP/1.1\r\n\r\n"),
        ("version 2", compute_port, frame(REQUEST, ECHO, 1, b"v2", version=2)),
        ("a response frame from the client", compute_port, frame(RESPONSE, ECHO, 2, b"r")),
        ("an error frame from the client", compute_port,
         frame(ERROR, ECHO, 3, b"\x00\x0dx")),
        ("body_length 1 MiB over --max-body 65536", compute_port,
         frame(REQUEST, ECHO, 4, b"", length=1 << 20)),
        ("budget flag with body_length 2", compute_port,
         frame(REQUEST, ECHO, 5, b"\x00\x01", flags=FLAG_BUDGET)),
    ]
    for k, (what, port, wire) in enumerate(cases):
        bad = sample_server.connect(port, timeout=TIMEOUT, nodelay=True)
        bad.sendall(wire)
        expect_closed(bad, what)
        bad.close()
        body = f"still here {k}".encode()
        check(good.ok(REVERSE, body, f"reverse after {what}") == body[::-1],
              f"the other connection after {what}")
        check(kv_get(good_kv, "absent") == (False, b""), f"the kv connection after {what}")
    # A body of exactly --max-body is still taken.
    exact = os.urandom(65536)
    check(good.ok(ECHO, exact, "echo of --max-body bytes") == exact, "echo of 65536 bytes")
    protocol_errors = 'ringnet_rpc_server_events_total{event="protocol_error"}'
    n = wait_for(lambda: metric_sum(http_get(admin_port, "/metrics")[1], protocol_errors)
                 == len(cases), 5)
    check(n, f"protocol_error events: "
             f"{metric_sum(http_get(admin_port, '/metrics')[1], protocol_errors)}, "
             f"expected {len(cases)}")
    good.close()
    good_kv.close()
    print(f"ok: case 6: {len(cases)} malformed frames each closed their own connection "
          f"(bad magic x2, version, response, error, body over --max-body, short budget); "
          f"the other connections kept working; {len(cases)} protocol_error events")


# ---------------------------------------------------------------- case 9

class DrainConn:
    """One connection of the drain test: a writer thread, a reader thread, and what each
    request became. `reqs` is in write order (one writer per socket, so that is also the
    order of the bytes on the wire)."""

    WINDOW = 8

    def __init__(self, port, first_id):
        self.sock = sample_server.connect(port, timeout=15.0, nodelay=True)
        self.cv = threading.Condition()
        self.reqs = []          # dicts: id, method, body, end (sendall returned), cls
        self.by_id = {}
        self.answers = {}       # id -> answer
        self.outstanding = 0
        self.ended_at = None    # when the reader saw EOF or a reset
        self.ended_how = None
        self.next_id = first_id
        self.error = None
        self.buf = bytearray()

    def add(self, method, body):
        req = {"id": self.next_id, "method": method, "body": body, "end": None, "cls": None}
        self.next_id += 1
        self.reqs.append(req)
        self.by_id[req["id"]] = req
        return req

    def prime(self):
        """A hang, then an echo whose answer proves the hang was read (frames of one
        connection are dispatched in order)."""
        hang = self.add(HANG, b"hang")
        echo = self.add(ECHO, b"primer")
        self.sock.sendall(request(HANG, hang["id"], hang["body"]) +
                          request(ECHO, echo["id"], echo["body"]))
        hang["end"] = echo["end"] = time.monotonic()
        hang["cls"] = echo["cls"] = "sent"
        self.outstanding = 1
        while echo["id"] not in self.answers:
            chunk = self.sock.recv(65536)
            check(chunk, "the connection ended before the primer echo was answered")
            self.buf += chunk
            for ans in parse_frames(self.buf):
                self.answers[ans["id"]] = ans
        check(self.answers.keys() == {echo["id"]}, f"primer: unexpected answers "
                                                   f"{sorted(self.answers)}")

    def writer(self, stop, rng):
        """Keeps WINDOW requests in flight until the connection ends or stop["at"]."""
        try:
            while True:
                with self.cv:
                    while (self.outstanding >= self.WINDOW and self.ended_at is None
                           and time.monotonic() < stop["at"]):
                        self.cv.wait(0.05)
                    if self.ended_at is not None or time.monotonic() >= stop["at"]:
                        return
                    if rng.random() < 0.25:
                        req = self.add(SLEEP, struct.pack(">I", 50) + rng.randbytes(8))
                    else:
                        req = self.add(ECHO, rng.randbytes(rng.randrange(1, 300)))
                    self.outstanding += 1
                try:
                    self.sock.sendall(request(req["method"], req["id"], req["body"]))
                except OSError as e:
                    with self.cv:
                        req["cls"] = f"write failed ({e.errno})"
                    return
                with self.cv:
                    req["end"] = time.monotonic()
                    # "sent": sendall completed before the reader observed the end.
                    req["cls"] = "sent" if self.ended_at is None else "after end"
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = f"writer: {e!r}"

    def reader(self):
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk, how = None, "reset"
                else:
                    how = "eof"
                if not chunk:
                    with self.cv:
                        self.ended_at = time.monotonic()
                        self.ended_how = how
                        self.cv.notify_all()
                    return
                self.buf += chunk
                for ans in parse_frames(self.buf):
                    with self.cv:
                        rid = ans["id"]
                        if rid not in self.by_id or rid in self.answers:
                            self.error = f"answer to {rid}: unknown or repeated"
                        self.answers[rid] = ans
                        self.outstanding -= 1
                        self.cv.notify_all()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a failed check() exits;
            self.error = f"reader: {e}"          # the main thread reports it
            with self.cv:
                self.ended_at = time.monotonic()
                self.ended_how = "reader error"
                self.cv.notify_all()


def drain_under_load(binary, backend, seed):
    """SIGTERM under load, and the rule asserted.

    The server's contract: every request it READ gets exactly one answer (OK, UNAVAILABLE
    once draining, CANCELLED at the drain limit); bytes it never read get none, and the
    connection ends (FIN after the answers; input after it is read away and dropped).
    What a client can know: the order of its own bytes. One writer per socket, so the
    requests are on the wire in `reqs` order, and the server reads a connection in order.
    Per connection the test asserts:
      (a) every answer is for a request written, answered once, with the right body
          (OK) or the code UNAVAILABLE/CANCELLED; every hang is CANCELLED, no other call;
      (b) the answered requests are exactly a PREFIX of `reqs`: the server read the
          first K and answered each; none of the rest (it never read them);
      (c) no request whose sendall completed before the SIGTERM was sent is unanswered:
          the server reads every byte the kernel holds until its engine drain, which
          comes after the signal (the window of 8 small requests keeps the bytes in the
          server's receive buffer, never waiting in ours);
      (d) after the first UNAVAILABLE no later request is OK (draining only starts).
    The unanswered tail is split three ways and printed: "write failed" (sendall raised),
    "after end" (sendall returned after the reader saw EOF/reset: its bytes may or may
    not have been accepted, the server certainly did not read them as a request), and
    "sent" (sendall returned before the end was observed). "sent" but unanswered is
    legitimate only after the signal: the kernel takes bytes after the server stopped
    reading and before its FIN reaches us; (b) and (c) bound that.
    Server totals: calls = answers counted here; ok = OK answers; cancelled = the hangs;
    unavailable = UNAVAILABLE answers (the server counts those refusals apart from
    errors, so errors = CANCELLED answers); deadline_exceeded = 0. Exit 0.
    """
    rng = random.Random(seed)
    proc, _, port, _, err_file = start_server(
        binary, backend, "--loops", "2", "--pool-threads", "16", "--drain-limit", "300",
        "--drain-timeout", "3000")
    conns = [DrainConn(port, (k + 1) * 1_000_000) for k in range(8)]
    for c in conns:
        c.prime()
    stop = {"at": time.monotonic() + 30}  # set below, once the signal time is known
    threads = []
    for c in conns:
        w = threading.Thread(target=c.writer, args=(stop, random.Random(rng.random())),
                             daemon=True)
        r = threading.Thread(target=c.reader, daemon=True)
        threads += [w, r]
        r.start()
        w.start()
    time.sleep(0.5)
    t_sig = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # Writers go on until their connection ends (or 1.5 s, which a drain limit of 300 ms
    # never needs).
    stop["at"] = t_sig + 1.5
    for t in threads:
        t.join(10)
        if t.is_alive():
            proc.kill()
            fail(f"drain: a client thread did not finish in 10 s (seed {seed})")
    for c in conns:
        c.sock.close()  # ends the server's lingering read, as a client that saw EOF does
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail(f"drain: the server did not exit within 10 s of SIGTERM (seed {seed})")
    took = time.monotonic() - t_sig
    err = stderr_text(err_file)
    check(proc.returncode == 0, f"drain: exit code {proc.returncode}: {err[-2000:]}")

    n = {"ok": 0, "unavailable": 0, "cancelled": 0, "answers": 0, "hangs": 0, "requests": 0,
         "sent_unanswered": 0, "after_end": 0, "write_failed": 0}
    for k, c in enumerate(conns):
        where = f"drain connection {k} (seed {seed})"
        check(c.error is None, f"{where}: {c.error}")
        check(c.ended_at is not None, f"{where}: the connection did not end")
        first_unanswered, unavailable_seen = None, False
        for i, req in enumerate(c.reqs):
            n["requests"] += 1
            n["hangs"] += req["method"] == HANG
            ans = c.answers.get(req["id"])
            if ans is None:
                if first_unanswered is None:
                    first_unanswered = i
                if req["cls"] is None or req["cls"].startswith("write failed"):
                    n["write_failed"] += 1
                elif req["cls"] == "after end":
                    n["after_end"] += 1
                else:
                    n["sent_unanswered"] += 1
                    check(req["end"] >= t_sig,
                          f"{where}: request {req['id']} (method {req['method']}) written "
                          f"{(t_sig - req['end']) * 1000:.1f} ms before SIGTERM, never answered")
                continue
            if first_unanswered is not None:
                fail(f"{where}: request {req['id']} answered after request "
                     f"{c.reqs[first_unanswered]['id']} (written earlier) got no answer: "
                     f"the answered requests are not a prefix of the stream")
            check(req["cls"] == "sent" or req["cls"] == "after end",
                  f"{where}: request {req['id']} answered though its write failed")
            n["answers"] += 1
            if req["method"] == HANG:
                check(ans["type"] == ERROR and ans["code"] == CANCELLED,
                      f"{where}: hang {req['id']} answered type {ans['type']} code "
                      f"{ans['code']} {ans['message']!r}, expected CANCELLED")
                n["cancelled"] += 1
            elif ans["type"] == RESPONSE:
                check(ans["body"] == req["body"], f"{where}: request {req['id']}: wrong body")
                check(ans["method"] == req["method"], f"{where}: {req['id']}: wrong method")
                check(not unavailable_seen,
                      f"{where}: request {req['id']} answered OK after an earlier request "
                      f"got UNAVAILABLE")
                n["ok"] += 1
            else:
                check(ans["code"] == UNAVAILABLE,
                      f"{where}: request {req['id']} (method {req['method']}) answered "
                      f"code {ans['code']} {ans['message']!r}; only hangs may be "
                      f"CANCELLED, the rest OK or UNAVAILABLE")
                unavailable_seen = True
                n["unavailable"] += 1
        check(set(c.answers) <= set(c.by_id), f"{where}: answers to ids never written")
    check(n["cancelled"] == n["hangs"] == len(conns),
          f"drain: {n['cancelled']} hangs CANCELLED of {n['hangs']}")
    check(n["unavailable"] > 0, f"drain: no request was refused UNAVAILABLE: {n}")
    t, line = totals(out, err_file)
    want = {"calls": n["answers"], "ok": n["ok"], "errors": n["cancelled"],
            "deadline_exceeded": 0, "cancelled": n["hangs"], "unavailable": n["unavailable"]}
    check(t == want, f"drain: server totals {line!r}, the clients counted {want} "
                     f"(seed {seed})")
    print(f"ok: case 9: SIGTERM under load on 8 connections: {n['requests']} requests, "
          f"{n['answers']} answered once (ok {n['ok']}, UNAVAILABLE {n['unavailable']}, "
          f"CANCELLED {n['cancelled']} = the hangs), answered = a prefix of each stream; "
          f"unanswered tail: {n['sent_unanswered']} sent after SIGTERM before the end was "
          f"seen, {n['after_end']} written after the end, {n['write_failed']} write failed; "
          f"exit 0 in {took:.2f} s; {line}")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    seed = int(os.environ.get("RINGNET_TEST_SEED", str(int(time.time() * 1000) % 1_000_000)))
    print(f"RINGNET_TEST_SEED={seed}")
    random.seed(seed)

    proc, kv_port, compute_port, admin_port, err_file = start_server(
        args.server, args.backend, "--loops", "2", "--timeout", "5000", admin=True)
    tally = Tally()
    try:
        case_list_echo(kv_port, compute_port, tally)
        case_kv(kv_port, tally)
        case_unknown(kv_port, compute_port, tally)
        case_fail(compute_port, tally)
        case_deadlines(compute_port, tally)
        case_trickle(compute_port, tally)
        case_pipeline(compute_port, tally)
        case_metrics(admin_port, tally)
    finally:
        code, out, _ = sample_server.stop(proc)
    check(code == 0, f"server A exited {code}: {stderr_text(err_file)[-2000:]}")
    t, line = totals(out, err_file)
    want = {"calls": tally.ok + tally.errors + tally.unknown, "ok": tally.ok,
            "errors": tally.errors, "deadline_exceeded": tally.deadline,
            "cancelled": tally.cancelled,
            "unavailable": 0}
    check(t == want, f"server A totals {line!r}, expected {want}")
    print(f"ok: server A: SIGTERM -> exit 0; {line}")

    proc, kv_port, compute_port, admin_port, err_file = start_server(
        args.server, args.backend, "--loops", "2", "--max-body", "65536", admin=True)
    try:
        case_malformed(kv_port, compute_port, admin_port)
    finally:
        code, out, _ = sample_server.stop(proc)
    check(code == 0, f"server B exited {code}: {stderr_text(err_file)[-2000:]}")

    drain_under_load(args.server, args.backend, seed)


if __name__ == "__main__":
    main()
