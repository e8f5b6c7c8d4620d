#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A sample server behind the fault-injecting relay (fault_proxy.py), checked per fault.

Each scenario sends one request workload over one relayed connection with one fault and
checks what the client gets: the exact answer stream (HTTP: Date values masked), or, for
a fault that cuts the connection, a prefix of it ending in a clean EOF or reset. Alongside
it a clean control connection through the same relay is open all along (half its requests
answered before the faulty connection opens, the rest after it ended: every answer must
be right), and a "keeper" connection straight to the server is pinged every 20 ms while
the faulty connection is in use, and once after. Then, polling with a deadline (the server
updates its counters after the client saw the end), the server must come back to its
baseline:
  - exactly 2 more connections accepted (the faulty and the control one),
    ringnet_connections_open back to 1 (the keeper), accepted - closed = open, no task
    queued (rpc: no worker-pool job busy or queued), as many open descriptors
    (/proc/PID/fd) as right after it started;
  - byte counters: the server read exactly the bytes the relay forwarded to it and sent
    exactly the bytes the relay read from it (keeper and control subtracted); after an
    RST toward it, at most / at least that;
  - ringnet_frames_total grew by exactly the request frames that reached the server whole
    (at most that after an RST toward it), no protocol error (the relay never corrupts);
    resp: the INCR counter equals the INCRs among the decoded frames;
  - a reset toward the server is counted as closed{reason="reset"}; a stall with large
    answers makes the server pause reading (ringnet_read_pauses_total grows).
Each fault is also checked to have happened (cut at the exact byte, one byte per send,
the delay or stall visible in the time taken), and the relay's own SHA-256 check (what it
sent is what it read) fails the scenario if it ever reordered, duplicated or altered a byte.

The scenarios run --rounds times (default 3). Memory: VmRSS climbs in the first rounds
(per-loop buffer pools, io_uring provided buffers); the last round repeats the same faults
and may add RSS_ROUND_SLACK_KIB at most, and the total stays within RSS_BOUND_KIB of the
VmRSS right after start. The server runs with a fixed malloc mmap threshold, so freed large
buffers are returned to the OS and do not hide in the heap.

Faults (see fault_proxy.py): clean relay; 30 ms delay per chunk; every byte its own
segment up, down, and both ways; a 1 s stall of the answers with ~24 MiB of them (server
backpressure); a 0.5 s stall of the requests halfway; RST mid-request-frame (to both
sides, and to the server with a FIN to the client); RST mid-answer (to both, and to the
client with a FIN to the server); half-close toward the server after the whole request
(every answer must still come, then EOF) and mid-frame (answers to the whole frames, then
EOF); half-close toward the client mid-answer (exactly the bytes before the cut, then
EOF). rpc also: a half-close with a worker-pool job in flight (its answer still comes).

usage: fault_clients.py --proto echo|http|resp|rpc PATH/TO/SERVER
       [--backend epoll|io_uring] [--rounds N]
Prints one "ok:" line per scenario. Exits 77 (skipped) when the io_uring backend is asked
for and the kernel refuses it.
"""
import argparse
import bisect
import dataclasses
import hashlib
import os
import re
import socket
import struct
import tempfile
import threading
import time

import sample_server
from fault_proxy import CLEAN, Fault, FaultProxy
from sample_server import fail, metric_sum, recv_n, wait_for

RSS_ROUND_SLACK_KIB = 4 * 1024
# What the server may legitimately keep over its start: per loop (--loops 2) a buffer pool
# of up to Options::pool_cache_bytes (16 MiB) and io_uring's provided buffers (512 x 16 KiB,
# touched lazily), plus 16 MiB for malloc's own slack.
RSS_BOUND_KIB = (2 * (16 + 8) + 16) * 1024
SETTLE_SECONDS = 5.0
STABLE_SECONDS = 0.02


def sanitized(binary):
    """Whether the server is built with AddressSanitizer or ThreadSanitizer. ASan's
    quarantine holds freed memory back (256 MiB by default) and TSan's shadow memory grows
    with the heap, so VmRSS says nothing there; LeakSanitizer checks the server's heap at
    exit instead (a leak makes it exit non-zero). CI runs this suite under ASan only."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def blob(seed, size):
    """Deterministic bytes, all 256 values (CR, LF and NUL included)."""
    return hashlib.shake_256(seed.encode()).digest(size)


@dataclasses.dataclass
class Work:
    """A request stream and the exact answer stream a server owes it."""
    request: bytes
    expected: bytes
    frame_ends: list     # offset in `request` where each request frame ends
    answer_ends: list    # offset in `expected` where each answer ends
    incr_frames: list = None  # resp: indexes of the INCR frames (side-effect check)
    stream: bool = False      # echo: no frames, every byte is answered by itself

    def frames_in(self, n):
        """Request frames wholly inside request[:n]."""
        return bisect.bisect_right(self.frame_ends, n)

    def answer_for(self, n):
        """Answer bytes owed to request[:n]: the answers to its whole frames."""
        if self.stream:
            return n
        k = self.frames_in(n)
        return self.answer_ends[k - 1] if k else 0

    def mid_frame(self, k):
        start = self.frame_ends[k - 1] if k else 0
        return (start + self.frame_ends[k] + 1) // 2

    def mid_answer(self, k):
        start = self.answer_ends[k - 1] if k else 0
        return (start + self.answer_ends[k] + 1) // 2


def concat(pieces):
    """[bytes] -> (joined, end offsets)."""
    ends, total = [], 0
    for p in pieces:
        total += len(p)
        ends.append(total)
    return b"".join(pieces), ends


# ---- protocols ------------------------------------------------------------------------------

class Echo:
    name = "echo"
    frames_family = None

    def work(self, tag, size):
        n = {"small": 3000, "std": 300 * 1024, "big": 24 << 20}[size]
        payload = blob(tag, n)
        # No frames: the quarter marks stand in for them (where a cut falls).
        ends = [n // 4, n // 2, 3 * n // 4, n]
        return Work(payload, payload, ends, ends, stream=True)

    def normalize(self, data):
        return data

    def ping(self, sock, i):
        msg = b"keeper %d " % i + b"k" * 50
        sock.sendall(msg)
        if recv_n(sock, len(msg)) != msg:
            fail("the keeper connection got a wrong echo")


class Resp:
    name = "resp"
    frames_family = 'ringnet_frames_total{protocol="resp"}'

    @staticmethod
    def command(*args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out

    @staticmethod
    def bulk(value):
        return b"$%d\r\n%s\r\n" % (len(value), value)

    def work(self, tag, size):
        # tag = "<scenario>@<round>": the keys are the scenario's, overwritten each round
        # (the keyspace does not grow with the rounds, so VmRSS can be compared); the INCR
        # counter is the round's own (it must start from 0).
        t = tag.split("@")[0].encode()
        ctr = tag.encode() + b":ctr"
        cmds, answers, incrs = [], [], []
        if size == "big":  # ~24 MiB of answers from a small request
            value = blob(tag, 1 << 20)
            cmds.append(self.command(b"SET", t + b":big", value))
            answers.append(b"+OK\r\n")
            for _ in range(24):
                cmds.append(self.command(b"GET", t + b":big"))
                answers.append(self.bulk(value))
        else:
            count = 8 if size == "small" else 120
            for i in range(count):
                key = t + b":k%d" % i
                value = blob(f"{tag}:{i}", 1 + (i * 37) % (100 if size == "small" else 1500))
                cmds += [self.command(b"SET", key, value), self.command(b"GET", key),
                         self.command(b"INCR", ctr)]
                answers += [b"+OK\r\n", self.bulk(value), b":%d\r\n" % (i + 1)]
                incrs.append(len(cmds) - 1)
            if size == "std":
                big = blob(tag + ":v", 64 * 1024)
                cmds += [self.command(b"SET", t + b":v", big), self.command(b"GET", t + b":v")]
                answers += [b"+OK\r\n", self.bulk(big)]
            cmds.append(self.command(b"ECHO", b"done"))
            answers.append(self.bulk(b"done"))
        request, frame_ends = concat(cmds)
        expected, answer_ends = concat(answers)
        return Work(request, expected, frame_ends, answer_ends, incrs)

    def normalize(self, data):
        return data

    def ping(self, sock, i):
        sock.sendall(self.command(b"PING"))
        if recv_n(sock, 7) != b"+PONG\r\n":
            fail("the keeper connection got a wrong PING answer")

    def counter(self, sock, tag):
        sock.sendall(self.command(b"GET", tag.encode() + b":ctr"))
        head = b""
        while not head.endswith(b"\r\n"):
            head += recv_n(sock, 1)
        if head == b"$-1\r\n":
            return 0
        return int(recv_n(sock, int(head[1:-2]) + 2)[:-2])


class Rpc:
    name = "rpc"
    frames_family = 'ringnet_frames_total{protocol="rpc"}'
    HEADER = struct.Struct(">HBBHHQI")  # magic, version, type, flags, method, request_id, length
    MAGIC, VERSION, REQUEST, RESPONSE = 0x524E, 1, 0, 1
    ECHO, REVERSE, SLEEP = 1, 2, 3

    def frame(self, ftype, method, rid, body, flags=0):
        return self.HEADER.pack(self.MAGIC, self.VERSION, ftype, flags, method, rid,
                                len(body)) + body

    def work(self, tag, size):
        reqs, answers = [], []
        if size == "big":
            plan = [(i, 512 * 1024) for i in range(48)]  # 24 MiB each way
        else:
            plan = [(i, 1 + (i * 131) % (300 if size == "small" else 3000))
                    for i in range(10 if size == "small" else 200)]
        for i, n in plan:
            rid = 1000 + i
            method = self.REVERSE if i % 3 == 2 else self.ECHO
            body = blob(f"{tag}:{i}", n)
            # Flag bits that pass through unchanged: idempotent and reserved ones (bit 1
            # is the budget field, bits 2-3 the compression: they change the wire).
            flags = (0, 0x1, 0x10, 0x11, 0x8000, 0x8001, 0x20)[i % 7]
            reqs.append(self.frame(self.REQUEST, method, rid, body, flags))
            back = body[::-1] if method == self.REVERSE else body
            answers.append(self.frame(self.RESPONSE, method, rid, back, flags))
        request, frame_ends = concat(reqs)
        expected, answer_ends = concat(answers)
        return Work(request, expected, frame_ends, answer_ends)

    def normalize(self, data):
        return data

    def ping(self, sock, i):
        body = b"keeper %d" % i
        sock.sendall(self.frame(self.REQUEST, self.ECHO, i, body))
        want = self.frame(self.RESPONSE, self.ECHO, i, body)
        if recv_n(sock, len(want)) != want:
            fail("the keeper connection got a wrong RPC answer")


class Http:
    name = "http"
    frames_family = 'ringnet_frames_total{protocol="http"}'
    DATE = re.compile(rb"\r\nDate: ")

    def __init__(self):
        self.port = None  # set once the server runs: expected answers come from it

    @staticmethod
    def chunked(body, sizes):
        out, i, k = b"", 0, 0
        while i < len(body):
            n = sizes[k % len(sizes)]
            out += b"%x\r\n%s\r\n" % (len(body[i:i + n]), body[i:i + n])
            i, k = i + n, k + 1
        return out + b"0\r\n\r\n"

    def requests(self, tag, size):
        """[(method, wire, expected status, expected body or None)]"""
        plain, json = b"Hello, World!", b'{"message":"Hello, World!"}'
        if size == "big":  # ~24 MB of answers
            return [("POST", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % 1_000_000 + blob(f"{tag}:{i}", 1_000_000), 200,
                     blob(f"{tag}:{i}", 1_000_000)) for i in range(24)]
        reqs = []
        rounds = 1 if size == "small" else 4
        for r in range(rounds):
            body = blob(f"{tag}:{r}", 300 if size == "small" else 20000 + r * 777)
            chunks = self.chunked(body, [1, 7, 100, 4096])
            reqs += [
                ("GET", b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 200, plain),
                ("POST", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Type: application/octet-stream\r\n\r\n" + chunks, 200, body),
                ("GET", b"GET /json HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n", 200, json),
            ]
            if size == "std":
                reqs += [
                    ("POST", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body, 200, body),
                    ("HEAD", b"HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n", 200, None),
                    ("GET", b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, None),
                ]
        return reqs

    @staticmethod
    def answer_at(data, pos, method):
        """The answer starting at data[pos:]: (status, body, end offset), or None while it
        is incomplete."""
        head_end = data.find(b"\r\n\r\n", pos) + 4
        if head_end < 4:
            return None
        lines = bytes(data[pos:head_end - 4]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        end = head_end + (0 if method == "HEAD" else length)
        if end > len(data):
            return None
        return status, bytes(data[head_end:end]), end

    def work(self, tag, size):
        reqs = self.requests(tag, size)
        request, frame_ends = concat([r[1] for r in reqs])
        # The expected answers: what the server says on a direct, fault-free connection
        # (Date masked), checked here for the statuses and bodies each request must get.
        with sample_server.connect(self.port, timeout=20) as s:
            sender = threading.Thread(target=s.sendall, args=(request,))
            sender.start()
            golden, answer_ends = bytearray(), []
            while len(answer_ends) < len(reqs):
                method, _, status, body = reqs[len(answer_ends)]
                answer = self.answer_at(golden, answer_ends[-1] if answer_ends else 0, method)
                if answer is None:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        fail("http: the direct connection closed before every answer")
                    golden += chunk
                    continue
                got_status, got_body, end = answer
                if got_status != status or (body is not None and got_body != body):
                    fail(f"http: {method} answered {got_status}, {len(got_body)} body bytes on "
                         f"a direct connection")
                answer_ends.append(end)
            sender.join()
        if len(golden) != answer_ends[-1]:
            fail("http: bytes after the last answer on a direct connection")
        return Work(request, self.normalize(bytes(golden)), frame_ends, answer_ends)

    def normalize(self, data):
        """Masks the value of every Date header (29 bytes) with 'D's, a cut one too."""
        out = bytearray(data)
        for m in self.DATE.finditer(data):
            start = m.end()
            end = min(start + 29, len(out))
            out[start:end] = b"D" * (end - start)
        return bytes(out)

    def ping(self, sock, i):
        sock.sendall(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b'{"message":"Hello, World!"}'):
            chunk = sock.recv(4096)
            if not chunk:
                fail("the keeper connection closed")
            data += chunk
        if not data.startswith(b"HTTP/1.1 200 "):
            fail(f"the keeper connection got {data[:40]!r}")


PROTOCOLS = {"echo": Echo, "resp": Resp, "rpc": Rpc, "http": Http}


# ---- the environment: server, proxy, keeper ---------------------------------------------

class Counted:
    """The keeper's socket, counting its bytes: they are in the server's byte counters."""

    def __init__(self, sock):
        self.sock, self.sent, self.received = sock, 0, 0

    def sendall(self, data):
        self.sock.sendall(data)
        self.sent += len(data)

    def recv(self, n):
        data = self.sock.recv(n)
        self.received += len(data)
        return data

    def close(self):
        self.sock.close()


COUNTERS = ("ringnet_connections_open", "ringnet_connections_accepted_total",
            "ringnet_connections_closed_total", "ringnet_tasks_queued",
            "ringnet_protocol_errors_total", "ringnet_read_pauses_total",
            "ringnet_pool_busy_threads", "ringnet_pool_queue_depth",
            "ringnet_read_calls_total", "ringnet_received_bytes_total",
            "ringnet_sent_bytes_total")


class Env:
    def __init__(self, proto, binary, backend):
        self.proto, self.backend = proto, backend
        self.stderr = tempfile.TemporaryFile()
        self.proc, self.port, admin = sample_server.start_admin(
            binary, backend, "--loops", "2", stderr_file=self.stderr)
        self.probe = sample_server.ServerProbe(self.proc, admin)
        if isinstance(proto, Http):
            proto.port = self.port
        self.proxy = FaultProxy(self.port)
        self.keeper = Counted(sample_server.connect(self.port, nodelay=True))
        self.keeper_frames = 0  # request frames the keeper sent
        self.ping()
        # The baseline: the ping was answered, so the keeper is accepted; no /metrics scrape
        # has run yet, so no admin connection is open.
        self.base_fds = self.probe.fds()

    def ping(self):
        self.keeper_frames += 1
        self.proto.ping(self.keeper, self.keeper_frames)

    def counters(self):
        text = self.probe.metrics()
        c = {name: metric_sum(text, name) for name in COUNTERS}
        reasons = {}
        for m in re.finditer(r'^ringnet_connections_closed_total\{loop="\d+",reason="(\w+)"\} '
                             r'(\S+)$', text, re.M):
            reasons[m.group(1)] = reasons.get(m.group(1), 0) + float(m.group(2))
        c["closed_by_reason"] = reasons
        c["reset_closes"] = reasons.get("reset", 0)
        c["frames"] = metric_sum(text, self.proto.frames_family) if self.proto.frames_family \
            else 0
        c["keeper_frames"] = self.keeper_frames
        c["keeper_in"], c["keeper_out"] = self.keeper.sent, self.keeper.received
        return c

    def settled(self, accepted):
        """The baseline state, or None: `accepted` connections accepted so far (None: any),
        only the keeper open, counters consistent, nothing queued, as many descriptors as
        at the start."""
        fds = self.probe.fds()  # before the scrape: its admin connection is not counted
        c = self.counters()
        ok = ((accepted is None or c["ringnet_connections_accepted_total"] == accepted) and
              c["ringnet_connections_open"] == 1 and
              c["ringnet_connections_accepted_total"] - c["ringnet_connections_closed_total"] == 1
              and c["ringnet_tasks_queued"] == 0 and
              c["ringnet_pool_busy_threads"] + c["ringnet_pool_queue_depth"] == 0 and
              fds == self.base_fds)
        return (c, fds) if ok else None

    def wait_settled(self, what, accepted=None):
        """Polls (bounded) until the server is back to its baseline, having accepted
        `accepted` connections in all; returns (counters, seconds it took)."""
        t0 = time.monotonic()
        # A loop bumps its byte counters right after the syscall, so a peer (the keeper
        # just now) can see bytes the counters do not show yet (a loop thread preempted
        # between the two, seen on both backends): the state counts as reached once two
        # scrapes at least STABLE_SECONDS apart agree on the traffic totals.
        prev = []

        def stable():
            state = self.settled(accepted)
            if state is None:
                prev.clear()
                return None
            totals = tuple(state[0][k] for k in ("ringnet_received_bytes_total",
                                                 "ringnet_sent_bytes_total", "frames"))
            now = time.monotonic()
            if prev and prev[0] == totals and now - prev[1] >= STABLE_SECONDS:
                return state
            if not prev or prev[0] != totals:
                prev[:] = [totals, now]
            return None

        state = wait_for(stable, SETTLE_SECONDS)
        if not state:
            c, fds = self.counters(), self.probe.fds()
            fail(f"{what}: the server did not return to its baseline within {SETTLE_SECONDS} s: "
                 f"accepted {c['ringnet_connections_accepted_total']:.0f} (want {accepted}), "
                 f"open={c['ringnet_connections_open']:.0f} (want 1), accepted-closed="
                 f"{c['ringnet_connections_accepted_total'] - c['ringnet_connections_closed_total']:.0f}"
                 f", tasks queued={c['ringnet_tasks_queued']:.0f}, pool jobs="
                 f"{c['ringnet_pool_busy_threads'] + c['ringnet_pool_queue_depth']:.0f}, "
                 f"fds={fds} (baseline {self.base_fds})")
        return state[0], time.monotonic() - t0

    def close(self):
        self.keeper.close()
        bad = self.proxy.close()
        code, _, _ = sample_server.stop(self.proc)
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace")
        if bad:
            fail(f"proxy records with errors: {[(r.fault.name, r.error) for r in bad]}")
        if code != 0:
            fail(f"server exited {code}: {err[-2000:]}")


# ---- one scenario ---------------------------------------------------------------------------

# ---- one scenario ---------------------------------------------------------------------------

def talk(sock, work, stop_when_complete, res):
    """Sends the request (its own thread), reads answers until complete, EOF or reset."""
    def send():
        try:
            sock.sendall(work.request)
        except OSError as e:
            res["send_error"] = type(e).__name__

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    got, end = bytearray(), None
    try:
        while True:
            if stop_when_complete and len(got) >= len(work.expected):
                end = "complete"
                break
            chunk = sock.recv(1 << 20)
            if not chunk:
                end = "eof"
                break
            got += chunk
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        end = "timeout"
    sender.join(20)
    res["got"], res["end"] = bytes(got), end
    if sender.is_alive():
        res["end"] = "sender stuck"


@dataclasses.dataclass


@dataclasses.dataclass
class Scenario:
    name: str
    size: str
    fault: object            # Work -> Fault
    # What the client must see: "complete" (every answer, the client then closes),
    # "complete+eof" (every answer then EOF), or "prefix" (a prefix of the answers of at
    # most `max_answer(work)` bytes) ending in one of `ends`.
    outcome: str = "complete"
    ends: tuple = ()
    max_answer: object = None    # Work -> bytes
    exact_answer: object = None  # Work -> the exact byte count the client must get
    resets: int = 0              # closes with reason "reset" the server must count
    backpressure: bool = False
    min_seconds: float = 0.0     # the fault makes the exchange last at least this long


def scenarios():
    half = lambda w: w.frames_in(len(w.request) // 2)  # noqa: E731 (a frame near the middle)
    return [
        Scenario("clean relay", "std", lambda w: CLEAN),
        # Request to answer crosses the relay twice: at least two delays.
        Scenario("30 ms delay per chunk", "std", lambda w: Fault("delay", delay=0.03),
                 min_seconds=0.06),
        Scenario("1-byte segments up", "small", lambda w: Fault("split up", split="up")),
        Scenario("1-byte segments down", "small", lambda w: Fault("split down", split="down")),
        Scenario("1-byte segments both ways", "small",
                 lambda w: Fault("split both", split="both")),
        Scenario("answers stalled 1 s (backpressure)", "big",
                 lambda w: Fault("stall down", stall=("down", 0, 1.0)), backpressure=True,
                 min_seconds=1.0),
        Scenario("requests stalled 0.5 s halfway", "std",
                 lambda w: Fault("stall up", stall=("up", len(w.request) // 2, 0.5)),
                 min_seconds=0.5),
        Scenario("RST to both mid-request-frame", "std",
                 lambda w: Fault("reset up", reset=("up", w.mid_frame(half(w)), "both")),
                 outcome="prefix", ends=("reset", "eof"),
                 max_answer=lambda w: w.answer_for(w.mid_frame(half(w))), resets=1),
        Scenario("RST to server mid-request-frame, FIN to client", "std",
                 lambda w: Fault("reset up srv", reset=("up", w.mid_frame(1), "server")),
                 outcome="prefix", ends=("eof",), max_answer=lambda w: w.answer_for(w.mid_frame(1)),
                 resets=1),
        Scenario("RST to both mid-answer", "std",
                 lambda w: Fault("reset down", reset=("down", w.mid_answer(half(w)), "both")),
                 outcome="prefix", ends=("reset", "eof"),
                 max_answer=lambda w: w.mid_answer(half(w)), resets=1),
        Scenario("RST to client mid-answer, FIN to server", "std",
                 lambda w: Fault("reset down cli", reset=("down", w.mid_answer(1), "client")),
                 outcome="prefix", ends=("reset",), max_answer=lambda w: w.mid_answer(1)),
        Scenario("half-close to server after the request", "std",
                 lambda w: Fault("half-close up", half_close=("up", len(w.request))),
                 outcome="complete+eof"),
        Scenario("half-close to server mid-frame", "std",
                 lambda w: Fault("half-close up mid", half_close=("up", w.mid_frame(half(w)))),
                 outcome="prefix", ends=("eof",),
                 exact_answer=lambda w: w.answer_for(w.mid_frame(half(w))),
                 max_answer=lambda w: w.answer_for(w.mid_frame(half(w)))),
        Scenario("half-close to client mid-answer", "std",
                 lambda w: Fault("half-close down", half_close=("down", w.mid_answer(half(w)))),
                 outcome="prefix", ends=("eof",), max_answer=lambda w: w.mid_answer(half(w)),
                 exact_answer=lambda w: w.mid_answer(half(w))),
    ]


def check_answers(what, sc, work, got, end, detail):
    if sc.outcome in ("complete", "complete+eof"):
        want_end = "complete" if sc.outcome == "complete" else "eof"
        if end != want_end or got != work.expected:
            first = next((i for i, (a, b) in enumerate(zip(got, work.expected)) if a != b), None)
            fail(f"{what}: wanted every answer and {want_end}: {detail}, first difference at "
                 f"{first}")
        return
    if end not in sc.ends:
        fail(f"{what}: the connection ended with {end}, wanted one of {sc.ends}: {detail}")
    if not work.expected.startswith(got):
        fail(f"{what}: the answers are not a prefix of the right ones: {detail}")
    if len(got) > sc.max_answer(work):
        fail(f"{what}: more answer bytes than possible ({sc.max_answer(work)}): {detail}")
    if sc.exact_answer and len(got) != sc.exact_answer(work):
        fail(f"{what}: wanted exactly {sc.exact_answer(work)} answer bytes: {detail}")


def check_fault_fired(what, fault, rec, took, sc):
    """The fault really happened as asked (else the scenario would test nothing)."""
    for direction, stats in (("up", rec.up), ("down", rec.down)):
        for f in (fault.reset, fault.half_close):
            if f is not None and f[0] == direction and stats["forwarded"] != f[1]:
                fail(f"{what}: the proxy forwarded {stats['forwarded']} bytes {direction}, the "
                     f"fault cuts at {f[1]}")
        if fault.split in (direction, "both") and \
                (stats["forwarded"] == 0 or stats["sends"] != stats["forwarded"]):
            fail(f"{what}: {direction}: {stats['sends']} sends for {stats['forwarded']} bytes, "
                 f"wanted one byte per send")
    if took < sc.min_seconds:
        fail(f"{what}: took {took:.3f} s, the fault alone takes {sc.min_seconds} s")


def run_scenario(env, sc, tag):
    """One faulty connection through the proxy, with a clean control connection through
    the proxy open all along and the keeper pinging; then the server's state."""
    proto = env.proto
    what = f"{proto.name} {env.backend}: {sc.name}"
    work = proto.work(tag, sc.size)
    cwork = proto.work("c" + tag, "small")  # the control connection's
    fault = sc.fault(work)
    # Settled first (http: work() used direct connections), then the counters to compare.
    before, _ = env.wait_settled(f"{what} (before)")
    csock, crec = env.proxy.connect(CLEAN, timeout=20)
    ccut = cwork.frame_ends[len(cwork.frame_ends) // 2 - 1]  # a frame boundary
    # The control's first half is answered before the faulty connection opens: it is
    # accepted first (placement on the loops is the same each round) and live all along.
    csock.sendall(cwork.request[:ccut])
    cgot = recv_n(csock, cwork.answer_for(ccut))
    t0 = time.monotonic()
    sock, rec = env.proxy.connect(fault, timeout=20)
    res = {}
    client = threading.Thread(target=talk, args=(sock, work, sc.outcome == "complete", res),
                              daemon=True)
    client.start()
    while client.is_alive():  # the keeper keeps working meanwhile
        env.ping()
        client.join(0.02)
    sock.close()
    took = time.monotonic() - t0
    if not rec.done.wait(10):
        fail(f"{what}: the proxy still relays 10 s after the client closed")
    if rec.error:
        fail(f"{what}: proxy: {rec.error}")
    env.ping()  # ... and after
    # The control connection outlived the fault: the rest of its request, every answer.
    csock.sendall(cwork.request[ccut:])
    cgot = proto.normalize(cgot + recv_n(csock, len(cwork.expected) - len(cgot)))
    if cgot != cwork.expected:
        fail(f"{what}: the control connection got {len(cgot)} answer bytes, not the "
             f"{len(cwork.expected)} right ones")
    csock.close()
    if not crec.done.wait(10) or crec.error:
        fail(f"{what}: the control connection's relay: {crec.error or 'still open'}")

    got, end = proto.normalize(res["got"]), res["end"]
    detail = f"end={end}, {len(got)} of {len(work.expected)} answer bytes, proxy {rec.events}"
    check_answers(what, sc, work, got, end, detail)
    check_fault_fired(what, fault, rec, took, sc)

    after, settle = env.wait_settled(what, before["ringnet_connections_accepted_total"] + 2)
    # An RST toward the server may beat bytes it has not read yet; otherwise the server
    # read exactly what the proxy forwarded and sent exactly what the proxy read from it,
    # and decoded exactly the request frames that reached it whole.
    server_reset = fault.reset is not None and fault.reset[2] in ("server", "both")
    up_fwd, down_read = rec.up["forwarded"], rec.down["received"]
    whole = work.frames_in(up_fwd)

    def accounted(c):
        """(problems, numbers) for counters c: the faulty connection's share of them."""
        d = {k: c[k] - before[k] for k in before if k != "closed_by_reason"}
        srv_in = d["ringnet_received_bytes_total"] - d["keeper_in"] - len(cwork.request)
        srv_out = d["ringnet_sent_bytes_total"] - d["keeper_out"] - len(cwork.expected)
        frames = (d["frames"] - d["keeper_frames"] - len(cwork.frame_ends)
                  if proto.frames_family else None)
        bad = []
        if (srv_in > up_fwd or srv_out < down_read) if server_reset else \
                (srv_in != up_fwd or srv_out != down_read):
            bad.append(f"server bytes in/out {srv_in:.0f}/{srv_out:.0f}, the proxy forwarded "
                       f"{up_fwd} to it and read {down_read} from it")
        if frames is not None and ((frames > whole) if server_reset else (frames != whole)):
            bad.append(f"the server decoded {frames:.0f} request frames, "
                       f"{'at most ' if server_reset else ''}{whole} reached it whole")
        if d["ringnet_protocol_errors_total"]:
            bad.append(f"{d['ringnet_protocol_errors_total']:.0f} protocol errors counted")
        return bad, (d, srv_in, srv_out, frames)

    # The counters are final once the server has reached its baseline, but a byte count
    # may trail what the peer saw (io_uring: a send completes before the loop reaps it):
    # polled too, bounded; it must come out exact.
    last = [accounted(after)]
    if last[0][0]:
        t1 = time.monotonic()

        def matched():
            last.append(accounted(env.counters()))
            return not last[-1][0]

        if not wait_for(matched, SETTLE_SECONDS):
            fail(f"{what}: {'; '.join(last[-1][0])} (proxy up {rec.up}, down {rec.down}; "
                 f"first scrape: {'; '.join(last[0][0])})")
        print(f"note: {what}: the counters matched {time.monotonic() - t1:.3f} s after the "
              f"baseline was reached (first: {'; '.join(last[0][0])})")
    delta, srv_in, srv_out, frames = last[-1][1]

    if sc.resets and delta["reset_closes"] != sc.resets:
        reasons = {k: v - before["closed_by_reason"].get(k, 0)
                   for k, v in after["closed_by_reason"].items()
                   if v != before["closed_by_reason"].get(k, 0)}
        fail(f"{what}: {delta['reset_closes']:.0f} closes counted as reset, wanted "
             f"{sc.resets}; closes by reason in this scenario: {reasons}")
    if sc.backpressure and delta["ringnet_read_pauses_total"] < 1:
        fail(f"{what}: the server never paused reading (no backpressure seen)")
    if isinstance(proto, Resp):
        # Side effects: exactly the INCRs among the frames the server decoded ran.
        want = sum(1 for i in work.incr_frames if i < frames)
        env.keeper_frames += 1  # the GET is one more keeper frame
        got_ctr = proto.counter(env.keeper, tag)
        if got_ctr != want:
            fail(f"{what}: the counter is {got_ctr}, {want} INCRs were decoded")
    extra = ""
    if fault.split:
        extra = (f", {rec.up_data_segs} TCP segments to the server for {up_fwd} bytes, "
                 f"server read calls +{delta['ringnet_read_calls_total']:.0f}")
    print(f"ok: {what}: {took:.2f} s, end={end}, {len(got)}/{len(work.expected)} answer bytes, "
          f"server in/out {srv_in:.0f}/{srv_out:.0f} B"
          f"{'' if frames is None else f', {frames:.0f} frames'}"
          f", resets +{delta['reset_closes']:.0f}, read pauses "
          f"+{delta['ringnet_read_pauses_total']:.0f}{extra}; control {len(cgot)} B right, "
          f"keeper {delta['keeper_frames']} pings; settled in {settle:.2f} s", flush=True)
    return took


def run_rpc_hold(env, tag):
    """rpc only: a half-close with a worker-pool job in flight (Conn::hold): the sleep's
    answer still comes, after the echoes, then EOF."""
    rpc = env.proto
    what = f"rpc {env.backend}: half-close with a pool job in flight"
    wire = (rpc.frame(rpc.REQUEST, rpc.ECHO, 1, b"first") +
            rpc.frame(rpc.REQUEST, rpc.SLEEP, 2, struct.pack(">I", 300) + tag.encode()) +
            rpc.frame(rpc.REQUEST, rpc.ECHO, 3, b"third"))
    before, _ = env.wait_settled(f"{what} (before)")
    t0 = time.monotonic()
    sock, rec = env.proxy.connect(Fault("half-close up, sleep", half_close=("up", len(wire))))
    sock.sendall(wire)
    data = sample_server.recv_until_eof(sock)
    sock.close()
    took = time.monotonic() - t0
    answers = {}
    while data:
        _, _, ftype, _, method, rid, n = rpc.HEADER.unpack_from(data)
        answers[rid] = (ftype, data[rpc.HEADER.size:rpc.HEADER.size + n])
        data = data[rpc.HEADER.size + n:]
    want = {1: (rpc.RESPONSE, b"first"), 2: (rpc.RESPONSE, struct.pack(">I", 300) + tag.encode()),
            3: (rpc.RESPONSE, b"third")}
    if answers != want:
        fail(f"{what}: answers {answers}")
    if not rec.done.wait(10) or rec.error:
        fail(f"{what}: proxy {rec}")
    if took < 0.3:
        fail(f"{what}: answered in {took:.3f} s, the sleep takes 0.3 s")
    _, settle = env.wait_settled(what, before["ringnet_connections_accepted_total"] + 1)
    print(f"ok: {what}: 3 answers then EOF in {took:.2f} s; settled in {settle:.2f} s")


def kept_kib(probe):
    """KiB the server keeps on purpose by its own metrics: free buffers parked in the loops'
    pools, and (io_uring) the provided buffers offered to the kernel, 16 KiB each (an upper
    bound: a buffer's pages become resident as the kernel fills them)."""
    text = probe.metrics()
    pooled = metric_sum(text, "ringnet_buffer_pool_cached_bytes")
    offered = metric_sum(text, "ringnet_uring_buffers_offered") * 16 * 1024
    return int((pooled + offered) // 1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True, choices=sorted(PROTOCOLS))
    ap.add_argument("server")
    ap.add_argument("--backend", default="epoll")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be 2 or more (the memory check compares the last two)")
    started = time.monotonic()
    # A fixed mmap threshold: a freed large buffer goes back to the OS. glibc's default
    # raises the threshold after the first large free, and the heap then stays at its peak,
    # which would hide in VmRSS what the engine keeps or releases.
    os.environ["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=131072"
    proto = PROTOCOLS[args.proto]()
    env = Env(proto, args.server, args.backend)
    rss = [env.probe.rss_kib()]  # the baseline: started, the keeper connected
    kept = [kept_kib(env.probe)]
    times = []
    for r in range(args.rounds):
        for i, sc in enumerate(scenarios()):
            times.append(run_scenario(env, sc, f"s{i}@r{r}"))
        if isinstance(proto, Rpc):
            run_rpc_hold(env, f"r{r}hold")
        rss.append(env.probe.rss_kib())
        kept.append(kept_kib(env.probe))
    # VmRSS climbs in the first round or two (each loop's buffer pool parks freed buffers,
    # io_uring's provided buffers get touched); the last round repeats the same faults on
    # the same loops and must add at most RSS_ROUND_SLACK_KIB beyond what the engine says
    # it keeps on purpose (pool free lists, buffers offered to the kernel), which may still
    # grow in a late round when the machine is busy: 28+ connections leaking 150 KiB each
    # would exceed it.
    grew = rss[-1] - rss[-2] - max(0, kept[-1] - kept[-2])
    if sanitized(args.server):
        print(f"note: sanitizer build: VmRSS per round {rss} KiB not judged (quarantine, "
              "shadow memory); LeakSanitizer checks the heap at exit under ASan")
    elif grew > RSS_ROUND_SLACK_KIB or rss[-1] > rss[0] + RSS_BOUND_KIB:
        fail(f"{proto.name}: VmRSS per round {rss} KiB (kept on purpose {kept} KiB): the "
             f"last round added {grew} KiB unexplained (at most {RSS_ROUND_SLACK_KIB}), "
             f"{rss[-1] - rss[0]} KiB over the baseline (at most {RSS_BOUND_KIB})")
    env.close()
    n = len(scenarios())
    print(f"ok: {proto.name} on {args.backend}: {n} faults x {args.rounds} rounds, each with a "
          f"control connection and the keeper answered right, counters, descriptors "
          f"({env.base_fds}) back to baseline each time; VmRSS per round {rss} KiB "
          f"(kept on purpose {kept} KiB); "
          f"{time.monotonic() - started:.1f} s (slowest fault {max(times):.2f} s)")


if __name__ == "__main__":
    main()
