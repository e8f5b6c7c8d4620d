#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of the samples' TLS (--tls-cert/--tls-key ...) with clients nobody on
this team wrote: Python's ssl module, `openssl s_client`, curl and `redis-cli --tls`, plus
raw sockets carrying hand-made or damaged TLS bytes. The test PKI comes fresh from
scripts/tls_test_certs.sh into a temporary directory.

usage: tls_clients.py --echo-server PATH --http-server PATH --resp-server PATH
                      --certs-script PATH [--backend epoll|io_uring]

Cases (one server each, or a few sharing one; each server ends with SIGTERM (l): an idle
TLS connection then sees close_notify, and the server exits 0):
  a. echo: 1 MiB echoed intact; 200 one-byte records; 20 connections at once x 64 KiB and
     100 x 1 B..256 KiB (handshakes at once too); a ClientHello and records trickled one
     byte per TCP segment; data in the same segment as the client's Finished; the client's
     close_notify answered with the server's
  b. openssl s_client -tls1_2 / -tls1_3 (verified, echoed); with --tls-min 1.3 a TLS 1.2
     client is refused (result="protocol")
  c. ALPN: http_server picks http/1.1 from "h2,http/1.1" and refuses "h2" alone
     (result="alpn"), resp_server's default is "redis", --tls-alpn's order wins over the
     client's; a client offering no ALPN is served; SNI with -servername
  d. resumption, TLS 1.2 and 1.3: s_client -sess_out then -sess_in says "Reused"
     (ringnet_tls_resumed_total)
  e. curl: GET (13 B and 1 MiB), keep-alive reuse, a 200 KiB POST echoed, TLS 1.2 and 1.3;
     three requests pipelined in one write; Connection: close ends with close_notify
  f. mTLS (--tls-ca): a client certificate from the CA works; none, an expired one and
     one from another CA are refused (result="certificate"); good clients go on working
  g. a certificate for another name fails Python's hostname check (client side)
  h. redis-cli --tls: PING, SET/GET, a 100 KiB value, --pipe
  i. bad input, each closing only its own connection while another one keeps working:
     plain text, a truncated ClientHello, a bogus record before the handshake, a
     corrupted record after it, a TLS 1.2 renegotiation request (refused, counted in
     ringnet_tls_renegotiations_refused_total); a client stalling mid-handshake with
     --tls-handshake-timeout 300 (result="timeout", reason="handshake_timeout")
  j. backpressure: a client sending up to 96 MiB without reading; the server's VmRSS
     stays within +64 MiB, then every byte comes back intact
  k. SIGHUP reload: a new certificate from the same CA is served to new connections,
     open ones go on, a session from before resumes; a broken or mismatched key is
     refused ("tls: reload failed") and the previous certificate stays
  m. no leak: after 225 more connections (good and bad) the heap
     (process_heap_in_use_bytes) and the descriptors come back to where they were

Counters are read from /metrics (--admin-port 0) and polled with a deadline: the server
may count a connection's end after the client saw it. Exits 77 (skipped) when the io_uring
backend is unavailable or openssl/curl is missing; redis-cli without --tls skips case h.
Python retries a recv() interrupted by a signal by itself (PEP 475).
"""
import argparse
import atexit
import os
import random
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import sample_server
from sample_server import ServerProbe

FAILURES = []
LOOPS = "2"
IO_TIMEOUT = 10.0      # any one blocking socket operation
COUNT_TIMEOUT = 5.0    # how long a counter may lag behind what the client saw
RUNNING = []           # servers to kill if the script dies


def check(what, got, expected):
    if got != expected:
        FAILURES.append(f"{what}: expected {expected!r}, got {got!r}")
        print(f"FAIL: {what}: expected {expected!r}, got {got!r}")
        return False
    return True


def failure(message):
    FAILURES.append(message)
    print("FAIL:", message)


class CaseFailed(Exception):
    """Ends the current case (the rest of it depends on what just failed)."""


def require(condition, message):
    if not condition:
        raise CaseFailed(message)


def run_case(name, fn, *args):
    started = time.monotonic()
    before = len(FAILURES)
    try:
        fn(*args)
    except CaseFailed as e:
        failure(f"{name}: {e}")
    except Exception as e:  # one case's surprise must not hide the others' results
        ours = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
        failure(f"{name}: {type(e).__name__}: {e} (line {ours[-1].lineno if ours else '?'})")
    took = time.monotonic() - started
    print(f"{'ok' if len(FAILURES) == before else 'FAIL'}: {name} ({took:.1f} s)", flush=True)


# ---- metrics ---------------------------------------------------------------------------

LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`; None when none does."""
    total = None
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total = (total or 0) + float(m.group(3))
    return None if total is None else int(total)


def handshakes(text, result):
    return metric(text, "ringnet_tls_handshakes_total", tls="default", result=result)


def closed(text, reason=None):
    if reason is None:
        return metric(text, "ringnet_connections_closed_total")
    return metric(text, "ringnet_connections_closed_total", reason=reason)


# ---- servers ---------------------------------------------------------------------------

class Server:
    """A sample started with --admin-port 0 and TLS flags; stderr goes to a file (failed
    handshakes may be logged, and the reload case reads it)."""

    def __init__(self, binary, backend, *args):
        self.name = os.path.basename(binary)
        self.log = tempfile.TemporaryFile()
        self.proc, self.port, admin = sample_server.start_admin(
            binary, backend, "--loops", LOOPS, *args, stderr_file=self.log)
        RUNNING.append(self.proc)
        self.probe = ServerProbe(self.proc, admin)

    def metrics(self):
        require(self.proc.poll() is None, f"{self.name} died: exit {self.proc.returncode}; "
                                          f"stderr: {self.stderr()[-2000:]}")
        return self.probe.metrics()

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_metric(self, value_of, want, timeout=COUNT_TIMEOUT):
        """Polls value_of(metrics text) until it is >= want; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            got = value_of(self.metrics())
            if (got is not None and got >= want) or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def expect_metric(self, what, value_of, want, timeout=COUNT_TIMEOUT):
        return check(what, self.wait_metric(value_of, want, timeout), want)

    def stop(self, certs=None, hostname="localhost"):
        """SIGTERM; the server must exit 0 (case l). With `certs`, a TLS connection is open
        and idle at the signal: the drain must end it with close_notify."""
        idle = None
        if certs is not None and self.proc.poll() is None:
            try:
                idle = tls_connect(self.port, client_ctx(certs, cert="client"), hostname,
                                   strict_eof=True)
            except OSError as e:
                failure(f"{self.name}: the idle connection for the drain: {e!r}")
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(signal.SIGTERM)
        if idle is not None:
            try:
                got = idle.recv(64)
                if got:
                    failure(f"{self.name}: the idle connection got {got!r} at SIGTERM")
            except ssl.SSLEOFError:
                failure(f"{self.name}: SIGTERM closed an idle connection without close_notify")
            except OSError as e:
                failure(f"{self.name}: the idle connection at SIGTERM: {e!r}")
            idle.close()
        try:  # not sample_server.stop(): a second SIGTERM may mean "now"
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            failure(f"{self.name} did not exit within 10 s of SIGTERM")
        code = self.proc.returncode
        RUNNING.remove(self.proc)
        if not alive:
            failure(f"{self.name} had died before SIGTERM: exit {code}; stderr: "
                    f"{self.stderr()[-2000:]}")
        elif code != 0:
            failure(f"{self.name} exited {code} after SIGTERM; stderr: {self.stderr()[-2000:]}")


def kill_running():
    for proc in RUNNING:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- certificates ----------------------------------------------------------------------

class Certs:
    def __init__(self, script, directory):
        self.script, self.dir = script, directory
        r = subprocess.run(["bash", script, directory], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0 or r.stdout or r.stderr:
            sys.exit(f"FAIL: {script} {directory}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        self.ca = self.path("ca.pem")

    def path(self, name):
        return os.path.join(self.dir, name)

    def der(self, name):
        with open(self.path(name)) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def server_only(self, name):
        r = subprocess.run(["bash", self.script, self.dir, "--server-only", name],
                           capture_output=True, text=True, timeout=60)
        require(r.returncode == 0, f"--server-only {name}: exit {r.returncode} {r.stderr}")

    def tls_args(self, leaf="server"):
        chain = "server-chain.pem" if leaf == "server-chain" else leaf + ".pem"
        key = "server.key" if leaf == "server-chain" else leaf + ".key"
        return ["--tls-cert", self.path(chain), "--tls-key", self.path(key)]


def client_ctx(certs, cert=None, cafile=None, maximum=None, alpn=None):
    """Python's default client context (verifies the chain and the host name)."""
    ctx = ssl.create_default_context(cafile=cafile or certs.ca)
    if cert:
        ctx.load_cert_chain(certs.path(cert + ".pem"), certs.path(cert + ".key"))
    if maximum:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, hostname="localhost", timeout=IO_TIMEOUT, strict_eof=False):
    """A blocking TLS connection; with strict_eof, a TCP EOF without close_notify raises
    ssl.SSLEOFError instead of reading as b""."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname=hostname,
                               suppress_ragged_eofs=not strict_eof)
    except BaseException:
        raw.close()
        raise


def recv_exact(sock, n):
    data = sample_server.recv_n(sock, n)
    require(len(data) == n, f"EOF after {len(data)} of {n} bytes")
    return data


def echo_once(sock, what):
    msg = b"ping %s %08x\n" % (what.encode(), random.getrandbits(32))
    sock.sendall(msg)
    got = recv_exact(sock, len(msg))
    require(got == msg, f"{what}: echoed {got!r} for {msg!r}")


def read_until_close(sock, timeout):
    """Raw bytes the peer sends until it closes (EOF or reset); None if it has not closed
    within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def ktls_module_loaded():
    """Whether this kernel takes TCP_ULP "tls" (then kTLS paths may count)."""
    ls = socket.socket()
    try:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with socket.create_connection(ls.getsockname(), timeout=5) as c:
            a, _ = ls.accept()
            with a:
                c.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
        return True
    except OSError:
        return False
    finally:
        ls.close()


class EchoJob:
    """One non-blocking TLS connection sending `payload` in `piece`-byte writes while
    reading the echo; pump() drives many at once."""

    def __init__(self, sock, payload, piece):
        self.sock, self.payload, self.piece = sock, payload, piece
        sock.setblocking(False)
        self.sent, self.got, self.pending, self.error = 0, bytearray(), None, None

    def finished(self):
        return self.error is not None or len(self.got) >= len(self.payload)

    def step(self, send=True):
        self.read_available()
        if send and self.error is None:
            self.send_available()

    def read_available(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 18)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as e:  # ssl.SSLError is one
                self.error = f"recv after {len(self.got)} bytes: {e!r}"
                return
            if not chunk:
                self.error = f"EOF after {len(self.got)} of {len(self.payload)} bytes"
                return
            self.got += chunk

    def send_available(self):
        while self.sent < len(self.payload):
            if self.pending is None:  # a retried SSL_write must pass the same bytes
                self.pending = self.payload[self.sent:self.sent + self.piece]
            try:
                n = self.sock.send(self.pending)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as e:
                self.error = f"send after {self.sent} bytes: {e!r}"
                return
            self.sent += n
            self.pending = None if n == len(self.pending) else self.pending[n:]


def pump(jobs, timeout):
    sel = selectors.DefaultSelector()
    for j in jobs:
        sel.register(j.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, j)
    deadline = time.monotonic() + timeout
    live = set(jobs)
    while live and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            j = key.data
            if j not in live:
                continue
            j.step()
            if j.finished():
                live.discard(j)
                sel.unregister(j.sock)
            elif j.sent == len(j.payload) and j.pending is None:
                sel.modify(j.sock, selectors.EVENT_READ, j)
        for j in list(live):  # ssl may hold decrypted bytes the selector cannot see
            if j.sock.pending():
                j.step()
                if j.finished():
                    live.discard(j)
                    sel.unregister(j.sock)
    sel.close()
    return live


def client_hello(ctx):
    """The bytes of a real ClientHello (made in memory: no connection is opened)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class BioClient:
    """A TLS client over a raw socket through ssl.MemoryBIO: the test decides what bytes go
    on the wire and when."""

    def __init__(self, port, ctx, hostname="localhost"):
        self.sock = sample_server.connect(port, nodelay=True)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=hostname)

    def send_raw(self, data, trickle=False):
        if not trickle:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(0.0005)

    def feed(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            self.incoming.write_eof()
            return False
        self.incoming.write(chunk)
        return True

    def handshake(self, trickle=False, timeout=IO_TIMEOUT, hold_last=False):
        """Runs the handshake; with hold_last, the client's last flight (its Finished) is
        returned instead of sent."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                if hold_last:
                    return self.outgoing.read()
                self.send_raw(self.outgoing.read(), trickle)
                return None
            except ssl.SSLWantReadError:
                self.send_raw(self.outgoing.read(), trickle)
                require(self.feed(deadline), "EOF during the handshake")

    def records(self, *plaintexts):
        """The wire bytes of one record per plaintext."""
        for p in plaintexts:
            self.tls.write(p)
        return self.outgoing.read()

    def read_n(self, n, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < n:
            try:
                data += self.tls.read(n - len(data))
            except ssl.SSLWantReadError:
                if not self.feed(deadline):
                    break
        return bytes(data)

    def close(self):
        self.sock.close()


# ---- openssl s_client ------------------------------------------------------------------

class SClient:
    """`openssl s_client` as a child: we write its stdin; a thread collects its output
    (stdout and stderr together)."""

    def __init__(self, certs, port, *extra):
        self.args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                     "-CAfile", certs.ca, "-verify_return_error", *extra]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            with self.lock:
                self.out += chunk

    def text(self):
        with self.lock:
            return self.out.decode("latin-1")

    def send(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def wait_text(self, pattern, timeout=IO_TIMEOUT):
        """The first match of `pattern` in the output, waiting for it; None if it did not
        come before the timeout or the end of the output."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text(), re.M)
            if m or time.monotonic() >= deadline:
                return m
            if not self.reader.is_alive():
                return re.search(pattern, self.text(), re.M)
            time.sleep(0.01)

    def finish(self, timeout=IO_TIMEOUT):
        """Closes its stdin (s_client then closes the connection) and waits for the exit:
        (exit code, output)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode, self.text()


def negotiated(text):
    """("New"|"Reused", "TLSv1.x") from s_client's summary, or None (failed handshake)."""
    m = re.search(r"^(New|Reused), (TLSv1\.[0-3]), Cipher is (?!\(NONE\))", text, re.M)
    return (m.group(1), m.group(2)) if m else None


def s_client_echo(certs, port, *extra):
    """One s_client that must verify, handshake and echo a line: (summary, output)."""
    c = SClient(certs, port, *extra)
    marker = f"ringnet-tls-{random.getrandbits(48):012x}"
    c.send(marker.encode() + b"\n")
    echoed = c.wait_text(re.escape(marker))
    code, text = c.finish()
    what = "s_client " + " ".join(extra)
    require(echoed is not None, f"{what}: no echo (exit {code}):\n{text[-3000:]}")
    require("Verification: OK" in text, f"{what}: no 'Verification: OK':\n{text[-3000:]}")
    return negotiated(text), text


def s_client_refused(certs, port, *extra):
    """An s_client whose handshake the server must refuse: returns its output."""
    c = SClient(certs, port, *extra)
    code, text = c.finish()
    what = "s_client " + " ".join(extra)
    require(code != 0 and negotiated(text) is None,
            f"{what}: not refused (exit {code}):\n{text[-3000:]}")
    return text


# ---- a/b/d/g/i: echo_server ------------------------------------------------------------

def concurrent_echo(port, ctx, payloads, pieces):
    """len(payloads) connections, their handshakes at once (a thread each), then every
    payload sent in pieces[i]-byte writes and echoed, all at once."""
    socks = [None] * len(payloads)

    def connect_one(i):
        try:
            socks[i] = tls_connect(port, ctx)
        except OSError as e:
            socks[i] = e
    threads = [threading.Thread(target=connect_one, args=(i,)) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    errors = [s for s in socks if not isinstance(s, ssl.SSLSocket)]
    if errors:
        for s in socks:
            if isinstance(s, ssl.SSLSocket):
                s.close()
        raise CaseFailed(f"{len(socks)} concurrent handshakes: {len(errors)} failed, "
                         f"e.g. {errors[0]!r}")
    jobs = [EchoJob(s, p, n) for s, p, n in zip(socks, payloads, pieces)]
    left = pump(jobs, 30)
    bad = [i for i, j in enumerate(jobs) if j.error or bytes(j.got) != payloads[i]]
    for j in jobs:
        j.sock.close()
    require(not left and not bad, f"{len(jobs)} connections at once: {len(left)} unfinished, "
                                  f"wrong: {[(i, jobs[i].error) for i in bad][:3]}")


def check_echo(certs, srv):
    ctx = client_ctx(certs)
    rng = random.Random(11)
    # 1 MiB in 16 KiB writes, read while sending.
    big = rng.randbytes(1 << 20)
    job = EchoJob(tls_connect(srv.port, ctx), big, 16384)
    left = pump([job], 30)
    require(not left and job.error is None, f"1 MiB echo: {job.error or 'timed out'} "
                                            f"({len(job.got)} bytes back)")
    require(bytes(job.got) == big, "1 MiB echo: bytes differ")
    ver = job.sock.version()
    job.sock.close()
    # 200 one-byte writes: 200 records.
    small = rng.randbytes(200)
    with tls_connect(srv.port, ctx) as s:
        for i in range(len(small)):
            s.sendall(small[i:i + 1])
            if i % 20 == 0:
                time.sleep(0.002)
        got = recv_exact(s, len(small))
    require(got == small, "200 one-byte writes: bytes differ")
    # 20 connections at once (their handshakes too), 64 KiB each in 4 KiB writes.
    concurrent_echo(srv.port, ctx, [rng.randbytes(65536) for _ in range(20)], [4096] * 20)
    # 100 at once: sizes around the 16 KiB record limit and up to 256 KiB, random writes.
    sizes = [rng.choice([1, 100, 4096, 16383, 16384, 16385, 65536, 262144]) for _ in range(100)]
    concurrent_echo(srv.port, ctx, [rng.randbytes(n) for n in sizes],
                    [rng.randint(1, 70000) for _ in sizes])
    # A ClientHello and then records trickled one byte per TCP segment.
    b = BioClient(srv.port, ctx)
    b.handshake(trickle=True)
    msg = rng.randbytes(1000)
    b.send_raw(b.records(msg), trickle=True)
    require(b.read_n(len(msg)) == msg, "trickled record: echo differs")
    many = [rng.randbytes(rng.randint(1, 300)) for _ in range(50)]
    b.send_raw(b.records(*many))  # 50 records in one write
    want = b"".join(many)
    require(b.read_n(len(want)) == want, "50 records in one write: echo differs")
    b.close()
    # TLS 1.3: application data in the same TCP segment as the client's Finished.
    b = BioClient(srv.port, ctx)
    finished = b.handshake(hold_last=True)
    msg = rng.randbytes(3000)
    b.send_raw(finished + b.records(msg))
    require(b.read_n(len(msg)) == msg, "data sent with the client's Finished: echo differs")
    b.close()
    # The client's close_notify is answered with the server's.
    s = tls_connect(srv.port, ctx, strict_eof=True)
    echo_once(s, "before close_notify")
    s.unwrap().close()
    # A client that trusts another CA refuses the server (client side).
    try:
        tls_connect(srv.port, client_ctx(certs, cafile=certs.path("rogue-ca.pem"))).close()
        failure("a client trusting only rogue-ca.pem accepted the server")
    except ssl.SSLCertVerificationError:
        pass
    print(f"  1 MiB, 200 one-byte records, 20 x 64 KiB, 100 x 1 B..256 KiB, trickled "
          f"handshake, data with the Finished, close_notify ({ver})")


def check_s_client_versions(certs, srv):
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        summary, text = s_client_echo(certs, srv.port, flag)
        check(f"s_client {flag}: summary", summary, ("New", version))
        m = re.search(r"^\s*Protocol\s*:\s*(TLSv1\.\d)", text, re.M)
        if m:  # the session block (for 1.3 it follows the ticket; may be absent)
            check(f"s_client {flag}: session protocol", m.group(1), version)
    summary, _ = s_client_echo(certs, srv.port, "-servername", "localhost")
    check("s_client -servername localhost", summary, ("New", "TLSv1.3"))


def check_resumption(certs, srv, tmp):
    before = metric(srv.metrics(), "ringnet_tls_resumed_total", tls="default") or 0
    for n, (flag, version) in enumerate((("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")), 1):
        sess = os.path.join(tmp, f"session{flag}")
        summary, _ = s_client_echo(certs, srv.port, flag, "-sess_out", sess)
        check(f"s_client {flag} -sess_out", summary, ("New", version))
        require(os.path.exists(sess) and os.path.getsize(sess) > 0,
                f"s_client {flag} wrote no session to {sess}")
        summary, _ = s_client_echo(certs, srv.port, flag, "-sess_in", sess)
        check(f"s_client {flag} -sess_in", summary, ("Reused", version))
        srv.expect_metric(f"ringnet_tls_resumed_total after a {version} resumption",
                          lambda t: metric(t, "ringnet_tls_resumed_total", tls="default"),
                          before + n)


def check_other_name(certs, srv):
    try:
        tls_connect(srv.port, client_ctx(certs)).close()
        failure("a certificate for wrong.example passed the hostname check for localhost")
    except ssl.SSLCertVerificationError as e:
        if "hostname" not in str(e).lower():
            failure(f"other-name.pem refused for another reason: {e}")
    with tls_connect(srv.port, client_ctx(certs), hostname="wrong.example") as s:
        echo_once(s, "wrong.example")


def check_bad_input(certs, srv):
    ctx = client_ctx(certs)
    good = tls_connect(srv.port, ctx)
    echo_once(good, "good client")
    rng = random.Random(5)
    hello = client_hello(ctx)

    def one(what, act, results, reason=None):
        """Runs `act` (a bad connection, returning once it is closed); then the matching
        handshake results grew by 1, exactly one connection closed (with `reason`), and the
        good client still works."""
        text = srv.metrics()
        counted = lambda t: sum(handshakes(t, r) or 0 for r in results)
        want_fail, want_closed = counted(text) + 1, (closed(text) or 0) + 1
        want_reason = (closed(text, reason) or 0) + 1 if reason else None
        act()
        srv.expect_metric(f"{what}: handshakes result={'|'.join(results)}", counted, want_fail)
        srv.expect_metric(f"{what}: connections closed", closed, want_closed)
        if reason:
            srv.expect_metric(f"{what}: closed reason={reason}", lambda t: closed(t, reason),
                              want_reason)
        echo_once(good, f"good client after {what}")

    def expect_closed(sock, what, allowed_first=None):
        data = read_until_close(sock, IO_TIMEOUT)
        sock.close()
        require(data is not None, f"{what}: the server kept the connection open")
        if data and allowed_first is not None and data[0] != allowed_first:
            failure(f"{what}: the server answered {data[:40]!r}")

    def plain_text():
        s = sample_server.connect(srv.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        expect_closed(s, "plain text", allowed_first=0x15)  # an alert at most

    def truncated_hello():
        s = sample_server.connect(srv.port)
        s.sendall(hello[:40])
        time.sleep(0.05)
        s.close()

    def bogus_record():
        s = sample_server.connect(srv.port)
        s.sendall(b"\x17\x03\x03\x00\x10" + rng.randbytes(16))
        expect_closed(s, "application data before the handshake", allowed_first=0x15)

    def corrupted_record():
        b = BioClient(srv.port, ctx)
        b.handshake()
        b.send_raw(b.records(b"intact"))
        require(b.read_n(6) == b"intact", "corrupted record: the intact one was not echoed")
        wire = bytearray(b.records(b"x" * 64))
        wire[-1] ^= 0x55  # in the AEAD tag
        b.send_raw(bytes(wire))
        data = read_until_close(b.sock, IO_TIMEOUT)
        b.close()
        require(data is not None, "corrupted record: the server kept the connection open")
        b.incoming.write(data)
        b.incoming.write_eof()
        plain = b""
        try:
            while True:
                chunk = b.tls.read(4096)
                if not chunk:
                    break
                plain += chunk
        except (ssl.SSLError, ssl.SSLEOFError):
            pass
        check("corrupted record: plaintext echoed", plain, b"")

    one("plain text", plain_text, ["protocol"], "handshake_failed")
    one("truncated ClientHello then close", truncated_hello, ["closed", "protocol"])
    one("bogus record before the handshake", bogus_record, ["protocol"], "handshake_failed")
    # After the handshake: no handshake result, but one connection closed.
    text = srv.metrics()
    ok_before, closed_before = handshakes(text, "ok") or 0, closed(text) or 0
    corrupted_record()
    srv.expect_metric("corrupted record: handshakes ok", lambda t: handshakes(t, "ok"),
                      ok_before + 1)
    srv.expect_metric("corrupted record: connections closed", closed, closed_before + 1)
    echo_once(good, "good client after the corrupted record")
    # TLS 1.2 renegotiation (s_client's "R" command) is refused and counted.
    text = srv.metrics()
    reneg = lambda t: metric(t, "ringnet_tls_renegotiations_refused_total", tls="default")
    reneg_before, closed_before = reneg(text) or 0, closed(text) or 0
    c = SClient(certs, srv.port, "-tls1_2")
    c.send(b"before renegotiation\n")
    echoed = c.wait_text("^before renegotiation$")
    c.send(b"R\n")
    asked = c.wait_text("RENEGOTIATING")
    code, out = c.finish()
    require(echoed and asked, f"s_client -tls1_2 then R: {out[-2000:]}")
    srv.expect_metric("renegotiation: ringnet_tls_renegotiations_refused_total", reneg,
                      reneg_before + 1)
    srv.expect_metric("renegotiation: connections closed", closed, closed_before + 1)
    echo_once(good, "good client after a renegotiation request")
    good.close()


LEAK_SLACK = 1 << 20


def check_no_leak(certs, srv):
    """225 more connections (echoing, plain text, truncated ClientHellos, a refused
    certificate): afterwards the heap and the descriptors come back to where they were."""
    ctx = client_ctx(certs)
    hello = client_hello(ctx)
    untrusting = client_ctx(certs, cafile=certs.path("rogue-ca.pem"))

    def round_of(n):
        for i in range(n):
            with tls_connect(srv.port, ctx) as s:
                echo_once(s, f"leak round {i}")
            if i % 2 == 0:
                with sample_server.connect(srv.port) as s:
                    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    read_until_close(s, IO_TIMEOUT)
                with sample_server.connect(srv.port) as s:
                    s.sendall(hello[:len(hello) // 2])
            if i % 4 == 0:
                try:
                    tls_connect(srv.port, untrusting).close()
                except ssl.SSLCertVerificationError:
                    pass

    def settled():
        text = srv.metrics()
        if metric(text, "ringnet_connections_open") != 0:
            return None
        return metric(text, "process_heap_in_use_bytes"), srv.probe.fds()

    round_of(40)
    base = sample_server.wait_for(settled, COUNT_TIMEOUT)
    require(base, "connections still open after the warm-up round")
    round_of(100)
    after = sample_server.wait_for(
        lambda: (v := settled()) and v[0] <= base[0] + LEAK_SLACK and v[1] <= base[1] and v,
        COUNT_TIMEOUT)
    if not after:
        failure(f"after 225 more connections: heap/fds {settled()} vs {base} before "
                f"(slack {LEAK_SLACK} bytes)")
    else:
        print(f"  heap {base[0] >> 10} KiB -> {after[0] >> 10} KiB, fds {base[1]} -> {after[1]}")


def check_min13(certs, srv):
    text = srv.metrics()
    proto = handshakes(text, "protocol") or 0
    s_client_refused(certs, srv.port, "-tls1_2")
    try:
        tls_connect(srv.port, client_ctx(certs, maximum=ssl.TLSVersion.TLSv1_2)).close()
        failure("Python's TLS 1.2-only client was accepted under --tls-min 1.3")
    except (ssl.SSLError, ConnectionResetError):
        pass
    srv.expect_metric("TLS 1.2 clients vs --tls-min 1.3: result=protocol",
                      lambda t: handshakes(t, "protocol"), proto + 2)
    summary, _ = s_client_echo(certs, srv.port, "-tls1_3")
    check("TLS 1.3 client vs --tls-min 1.3", summary, ("New", "TLSv1.3"))


def check_handshake_timeout(certs, srv):
    """--tls-handshake-timeout 300: a silent connection and one stopping after half a
    ClientHello are closed in 0.25..3 s; an established connection idle for longer is not."""
    ctx = client_ctx(certs)
    good = tls_connect(srv.port, ctx)
    text = srv.metrics()
    t0, r0 = handshakes(text, "timeout") or 0, closed(text, "handshake_timeout") or 0
    hello = client_hello(ctx)
    started = time.monotonic()
    silent = sample_server.connect(srv.port)
    half = sample_server.connect(srv.port, nodelay=True)
    half.sendall(hello[:len(hello) // 2])
    ends = []
    for what, s in (("silent", silent), ("half ClientHello", half)):
        data = read_until_close(s, 5)
        took = time.monotonic() - started
        s.close()
        if data is None:
            failure(f"{what}: still open 5 s after connecting (handshake timeout 300 ms)")
        elif data and data[0] != 0x15:
            failure(f"{what}: the server sent {data[:40]!r}")
        ends.append(took)
        if not 0.25 <= took <= 3.0:
            failure(f"{what}: closed {took:.2f} s after connecting, not in 0.25..3 s")
    srv.expect_metric("handshake timeouts: result=timeout", lambda t: handshakes(t, "timeout"),
                      t0 + 2)
    srv.expect_metric("handshake timeouts: reason=handshake_timeout",
                      lambda t: closed(t, "handshake_timeout"), r0 + 2)
    time.sleep(max(0.0, started + 1.0 - time.monotonic()))
    echo_once(good, "established connection idle past the handshake timeout")
    good.close()
    print(f"  closed after {', '.join(f'{t:.2f}' for t in ends)} s")


# ---- c/e: http_server ------------------------------------------------------------------

PLAINTEXT = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def check_alpn_http(certs, srv):
    c = SClient(certs, srv.port, "-alpn", "h2,http/1.1", "-servername", "localhost")
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n")
    body = c.wait_text(re.escape(PLAINTEXT.decode()))
    code, text = c.finish()
    require(body is not None, f"s_client -alpn h2,http/1.1: no answer:\n{text[-3000:]}")
    m = re.search(r"^ALPN protocol: (\S+)", text, re.M)
    check("s_client -alpn h2,http/1.1", m and m.group(1), "http/1.1")
    before = handshakes(srv.metrics(), "alpn") or 0
    text = s_client_refused(certs, srv.port, "-alpn", "h2")
    if "no application protocol" not in text:
        failure(f"s_client -alpn h2: no no_application_protocol alert:\n{text[-2000:]}")
    srv.expect_metric("s_client -alpn h2: result=alpn", lambda t: handshakes(t, "alpn"),
                      before + 1)
    with tls_connect(srv.port, client_ctx(certs, alpn=["http/1.1"])) as s:
        check("Python ALPN [http/1.1]", s.selected_alpn_protocol(), "http/1.1")
    with tls_connect(srv.port, client_ctx(certs)) as s:  # no ALPN offered: accepted
        check("Python without ALPN", s.selected_alpn_protocol(), None)


def check_alpn_flag(certs, srv):
    """echo_server --tls-alpn x-first,x-second: the server's order wins."""
    cases = ((["x-second", "x-first"], "x-first"), (["x-second"], "x-second"),
             (["x-other", "x-second"], "x-second"), (None, None))
    for offer, want in cases:
        with tls_connect(srv.port, client_ctx(certs, alpn=offer)) as s:
            check(f"--tls-alpn x-first,x-second, client offers {offer}",
                  s.selected_alpn_protocol(), want)
            echo_once(s, f"ALPN {want}")
    before = handshakes(srv.metrics(), "alpn") or 0
    try:
        with tls_connect(srv.port, client_ctx(certs, alpn=["x-other"])) as s:
            s.sendall(b"hello\n")
            got = s.recv(64)
        failure(f"--tls-alpn x-first,x-second accepted a client offering only x-other "
                f"(got {got!r})")
    except (ssl.SSLError, ConnectionResetError):
        pass
    srv.expect_metric("client offering only x-other: result=alpn",
                      lambda t: handshakes(t, "alpn"), before + 1)


def read_response(sock, buf):
    """One HTTP response from a blocking socket: (status, body, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        require(chunk, f"EOF inside a response head: {buf[:200]!r}")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = sample_server.content_length(head)
    while len(buf) < length:
        chunk = sock.recv(65536)
        require(chunk, "EOF inside a response body")
        buf += chunk
    return int(head.split(b" ")[1]), buf[:length], buf[length:]


def check_curl(certs, srv, tmp):
    base = f"https://localhost:{srv.port}"
    common = ["--cacert", certs.ca, "--resolve", f"localhost:{srv.port}:127.0.0.1"]
    code, out, err = curl(*common, base + "/plaintext")
    require(code == 0 and out == PLAINTEXT, f"curl /plaintext: exit {code} {out!r} {err}")
    code, out, err = curl(*common, base + "/json")
    check("curl /json", (code, out), (0, JSON))
    code, out, err = curl(*common, base + "/bytes/1048576")
    if code != 0 or out != b"x" * (1 << 20):
        failure(f"curl /bytes/1048576: exit {code}, {len(out)} bytes: {err}")
    code, out, err = curl(*common, "-v", "-o", "/dev/null", "-o", "/dev/null",
                          "-w", "%{num_connects}\n", base + "/plaintext", base + "/json")
    if code != 0 or out.split() != [b"1", b"0"] or "Re-using existing connection" not in err:
        failure(f"curl keep-alive: exit {code} {out!r}\n{err[-3000:]}")
    if not re.search(r"ALPN[:,] server accepted (to use )?http/1\.1", err):
        failure(f"curl: no ALPN http/1.1 in -v output:\n{err[-3000:]}")
    payload = random.Random(9).randbytes(200 * 1024)
    upload = os.path.join(tmp, "upload.bin")
    with open(upload, "wb") as f:
        f.write(payload)
    code, out, err = curl(*common, "--data-binary", "@" + upload, base + "/echo")
    if code != 0 or out != payload:
        failure(f"curl POST 200 KiB: exit {code}, {len(out)} bytes back, "
                f"equal={out == payload}: {err}")
    for flags, version in ((["--tls-max", "1.2"], "TLSv1.2"), (["--tlsv1.3"], "TLSv1.3")):
        code, out, err = curl(*common, "-v", *flags, base + "/plaintext")
        if code != 0 or out != PLAINTEXT or f"SSL connection using {version}" not in err:
            failure(f"curl {' '.join(flags)}: exit {code} {out!r}\n{err[-2000:]}")
    # Three requests in one write over one TLS connection, answered in order (the middle
    # one 1 MiB long).
    with tls_connect(srv.port, client_ctx(certs)) as s:
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  b"GET /bytes/1048576 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buf = b""
        for i, want in enumerate((PLAINTEXT, b"x" * (1 << 20), JSON)):
            status, body, buf = read_response(s, buf)
            check(f"pipelined response {i}", (status, body), (200, want))
    # Connection: close -> the response, then close_notify (not a bare TCP FIN).
    with tls_connect(srv.port, client_ctx(certs), strict_eof=True) as s:
        s.sendall(b"GET /json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status, body, rest = read_response(s, b"")
        check("Connection: close response", (status, body), (200, JSON))
        try:
            check("after Connection: close", rest + s.recv(4096), b"")
        except ssl.SSLEOFError:
            failure("Connection: close: the server closed without close_notify")


# ---- h: resp_server --------------------------------------------------------------------

def check_redis_cli(certs, srv, tmp):
    help_text = subprocess.run(["redis-cli", "--help"], capture_output=True, text=True,
                               timeout=10)
    if "--tls" not in help_text.stdout + help_text.stderr:
        print("  note: this redis-cli has no --tls; redis-cli checks skipped")
        return
    base = ["redis-cli", "--tls", "--cacert", certs.ca, "-h", "127.0.0.1", "-p", str(srv.port),
            "--sni", "localhost"]

    def cli(*args, stdin=None):
        r = subprocess.run([*base, *args], input=stdin, capture_output=True, timeout=20)
        return r.stdout

    check("redis-cli --tls PING", cli("PING"), b"PONG\n")
    check("redis-cli --tls SET", cli("SET", "tls:key", "value 1"), b"OK\n")
    check("redis-cli --tls GET", cli("GET", "tls:key"), b"value 1\n")
    value = random.Random(3).randbytes(100 * 1024)
    r = subprocess.run([*base, "-x", "SET", "tls:big"], input=value, capture_output=True,
                       timeout=20)
    check("redis-cli --tls -x SET 100 KiB", r.stdout, b"OK\n")
    check("redis-cli --tls GET 100 KiB", cli("GET", "tls:big"), value + b"\n")
    cmds = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k)
                    for k in (b"tls:pipe:%d" % i for i in range(1000)))
    r = subprocess.run([*base, "--pipe"], input=cmds, capture_output=True, timeout=30)
    out = r.stdout.decode("latin-1")
    if r.returncode != 0 or "errors: 0, replies: 1000" not in out:
        failure(f"redis-cli --tls --pipe: exit {r.returncode} {out!r} {r.stderr!r}")
    with tls_connect(srv.port, client_ctx(certs, alpn=["redis"])) as s:
        check("Python ALPN [redis]", s.selected_alpn_protocol(), "redis")
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        check("PING over TLS with ALPN redis", recv_exact(s, 7), b"+PONG\r\n")
    before = handshakes(srv.metrics(), "alpn") or 0
    try:
        with tls_connect(srv.port, client_ctx(certs, alpn=["http/1.1"])) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            got = s.recv(64)
        failure(f"resp_server accepted ALPN [http/1.1] (got {got!r})")
    except (ssl.SSLError, ConnectionResetError):
        pass
    srv.expect_metric("resp_server, ALPN [http/1.1]: result=alpn",
                      lambda t: handshakes(t, "alpn"), before + 1)


# ---- f: mTLS ---------------------------------------------------------------------------

def check_mtls(certs, srv):
    good_ctx = client_ctx(certs, cert="client")
    goods = 0

    def good_works(what):
        nonlocal goods
        with tls_connect(srv.port, good_ctx) as s:
            echo_once(s, f"client.pem {what}")
        goods += 1

    def refused(what, ctx):
        """The handshake fails on the client, or (TLS 1.3: the server judges the client's
        certificate after the client's side is done) the first read does."""
        try:
            with tls_connect(srv.port, ctx) as s:
                s.sendall(b"hello\n")
                got = s.recv(64)
            if got:
                failure(f"{what}: echoed {got!r}")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass

    good_works("first")
    text = srv.metrics()
    cert0, fail0 = handshakes(text, "certificate") or 0, closed(text, "handshake_failed") or 0
    bad = [("no client certificate (TLS 1.3)", client_ctx(certs)),
           ("no client certificate (TLS 1.2)",
            client_ctx(certs, maximum=ssl.TLSVersion.TLSv1_2)),
           ("expired client certificate", client_ctx(certs, cert="client-expired")),
           ("client certificate from another CA", client_ctx(certs, cert="client-untrusted"))]
    for n, (what, ctx) in enumerate(bad, 1):
        refused(what, ctx)
        srv.expect_metric(f"{what}: result=certificate", lambda t: handshakes(t, "certificate"),
                          cert0 + n)
        srv.expect_metric(f"{what}: reason=handshake_failed",
                          lambda t: closed(t, "handshake_failed"), fail0 + n)
        good_works(f"after {what}")
    text = srv.metrics()
    check("mTLS: result=ok", handshakes(text, "ok"), goods)
    check("mTLS: ringnet_tls_handshake_seconds_count",
          metric(text, "ringnet_tls_handshake_seconds_count", tls="default"), goods)
    if not ktls_module_loaded():
        check("mTLS: ktls path=unavailable (no tls module)",
              metric(text, "ringnet_tls_ktls_total", tls="default", path="unavailable"), goods)
        for path in ("tx", "rx"):
            check(f"mTLS: ktls path={path}",
                  metric(text, "ringnet_tls_ktls_total", tls="default", path=path), 0)


# ---- j: backpressure -------------------------------------------------------------------

BP_TOTAL = 96 << 20
BP_LIMIT_KIB = 64 * 1024


def check_backpressure(certs, srv):
    probe = srv.probe
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    raw.settimeout(IO_TIMEOUT)
    raw.connect(("127.0.0.1", srv.port))
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    echo_once(s, "backpressure warm-up")
    base = probe.rss_kib()
    payload = random.Random(21).randbytes(BP_TOTAL)
    job = EchoJob(s, payload, 256 * 1024)
    # Phase 1: send without reading until nothing moves for 1 s (or all is sent, 8 s cap).
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    peak, last_progress, started = base, time.monotonic(), time.monotonic()
    while job.sent < BP_TOTAL and time.monotonic() - last_progress < 1.0 and \
            time.monotonic() - started < 8:
        before = job.sent
        if sel.select(timeout=0.1):
            job.send_available()
            require(job.error is None, f"backpressure: {job.error}")
        if job.sent > before:
            last_progress = time.monotonic()
        peak = max(peak, probe.rss_kib())
    sel.close()
    stalled_at = job.sent
    for _ in range(5):
        peak = max(peak, probe.rss_kib())
        time.sleep(0.05)
    require(srv.proc.poll() is None, f"echo_server died under backpressure: "
                                     f"{srv.stderr()[-2000:]}")
    grew = peak - base
    if grew > BP_LIMIT_KIB:
        failure(f"backpressure: VmRSS grew {grew} KiB (> {BP_LIMIT_KIB}) with "
                f"{stalled_at >> 20} MiB sent unread")
    # Phase 2: read everything that was sent (send no more).
    job.payload = payload[:stalled_at] if job.pending is None else \
        payload[:job.sent + len(job.pending)]
    left = pump([job], 30)
    require(not left and job.error is None,
            f"backpressure read-back: {job.error or 'timed out'}, "
            f"{len(job.got)} of {len(job.payload)} bytes")
    require(bytes(job.got) == job.payload, "backpressure read-back: bytes differ")
    s.close()
    print(f"  {stalled_at / (1 << 20):.1f} MiB sent before the client stalled; server VmRSS "
          f"+{grew / 1024:.1f} MiB; all {len(job.payload) >> 20} MiB echoed back")


# ---- k: reload -------------------------------------------------------------------------

def replace_file(src, dst):
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def check_reload(certs, srv, live_dir, tmp):
    ctx = client_ctx(certs)
    live = lambda name: os.path.join(live_dir, name)

    def served():
        with tls_connect(srv.port, ctx) as s:
            echo_once(s, "reload")
            return s.getpeercert(binary_form=True)

    def hup_and_wait(marker, count):
        srv.proc.send_signal(signal.SIGHUP)
        lines = lambda: len(re.findall("^" + re.escape(marker), srv.stderr(), re.M))
        seen = sample_server.wait_for(lambda: lines() >= count, COUNT_TIMEOUT)
        require(seen, f"no {marker!r} (#{count}) on stderr after SIGHUP: "
                      f"{srv.stderr()[-2000:]}")

    reloads = lambda t: metric(t, "ringnet_tls_reloads_total", tls="default")
    check("served before the reload is server.pem", served() == certs.der("server.pem"), True)
    old = tls_connect(srv.port, ctx)
    sess = os.path.join(tmp, "session-reload")
    s_client_echo(certs, srv.port, "-sess_out", sess)
    certs.server_only("server2")
    replace_file(certs.path("server2.key"), live("server.key"))
    replace_file(certs.path("server2.pem"), live("server.pem"))
    hup_and_wait("tls: reloaded", 1)
    srv.expect_metric("ringnet_tls_reloads_total after a reload", reloads, 1)
    check("served after the reload is server2.pem", served() == certs.der("server2.pem"), True)
    echo_once(old, "connection opened before the reload")
    summary, _ = s_client_echo(certs, srv.port, "-sess_in", sess)
    check("a session from before the reload resumes", summary, ("Reused", "TLSv1.3"))
    # A broken key, then a valid key that does not match the certificate: both refused.
    with open(live("server.key"), "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    hup_and_wait("tls: reload failed", 1)
    check("served after a broken key is still server2.pem",
          served() == certs.der("server2.pem"), True)
    replace_file(certs.path("other-name.key"), live("server.key"))
    hup_and_wait("tls: reload failed", 2)
    check("served after a mismatched key is still server2.pem",
          served() == certs.der("server2.pem"), True)
    check("ringnet_tls_reloads_total after two failed reloads", reloads(srv.metrics()), 1)
    replace_file(certs.path("server2.key"), live("server.key"))
    hup_and_wait("tls: reloaded", 2)
    srv.expect_metric("ringnet_tls_reloads_total after the fix", reloads, 2)
    echo_once(old, "connection opened before the reloads")
    old.close()


# ---- main ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--echo-server", required=True)
    ap.add_argument("--http-server", required=True)
    ap.add_argument("--resp-server", required=True)
    ap.add_argument("--certs-script", required=True)
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    for tool in ("openssl", "curl"):
        if shutil.which(tool) is None:
            print(f"skip: {tool} not found")
            sys.exit(77)
    atexit.register(kill_running)
    started = time.monotonic()
    backend = args.backend
    with tempfile.TemporaryDirectory(prefix="ringnet-tls-") as tmp:
        certs = Certs(args.certs_script, os.path.join(tmp, "pki"))

        srv = Server(args.echo_server, backend, *certs.tls_args())
        run_case("a. echo over TLS (Python ssl)", check_echo, certs, srv)
        run_case("b. s_client TLS 1.2 and 1.3, SNI", check_s_client_versions, certs, srv)
        run_case("d. resumption TLS 1.2 and 1.3", check_resumption, certs, srv, tmp)
        run_case("i. bad input closes only its connection", check_bad_input, certs, srv)
        run_case("m. heap and fds back after 225 connections", check_no_leak, certs, srv)
        srv.stop(certs)

        srv = Server(args.echo_server, backend, *certs.tls_args(), "--tls-min", "1.3",
                     "--tls-handshake-timeout", "300")
        run_case("b. --tls-min 1.3 refuses TLS 1.2", check_min13, certs, srv)
        run_case("i. handshake timeout 300 ms", check_handshake_timeout, certs, srv)
        srv.stop(certs)

        srv = Server(args.echo_server, backend, *certs.tls_args(), "--tls-ca", certs.ca)
        run_case("f. mTLS", check_mtls, certs, srv)
        srv.stop(certs)

        srv = Server(args.echo_server, backend, *certs.tls_args("other-name"))
        run_case("g. hostname check (client side)", check_other_name, certs, srv)
        srv.stop(certs, hostname="wrong.example")

        srv = Server(args.echo_server, backend, *certs.tls_args(), "--tls-alpn",
                     "x-first,x-second")
        run_case("c. --tls-alpn preference order (echo_server)", check_alpn_flag, certs, srv)
        srv.stop(certs)

        srv = Server(args.echo_server, backend, *certs.tls_args())
        run_case("j. backpressure across TLS", check_backpressure, certs, srv)
        srv.stop(certs)

        live_dir = os.path.join(tmp, "live")
        os.mkdir(live_dir)
        shutil.copyfile(certs.path("server.pem"), os.path.join(live_dir, "server.pem"))
        shutil.copyfile(certs.path("server.key"), os.path.join(live_dir, "server.key"))
        srv = Server(args.echo_server, backend, "--tls-cert",
                     os.path.join(live_dir, "server.pem"), "--tls-key",
                     os.path.join(live_dir, "server.key"))
        run_case("k. SIGHUP reload", check_reload, certs, srv, live_dir, tmp)
        srv.stop(certs)

        srv = Server(args.http_server, backend, *certs.tls_args("server-chain"))
        run_case("c. ALPN and SNI (http_server)", check_alpn_http, certs, srv)
        run_case("e. curl and pipelining (http_server)", check_curl, certs, srv, tmp)
        srv.stop(certs)

        if shutil.which("redis-cli"):
            srv = Server(args.resp_server, backend, *certs.tls_args())
            run_case("h. redis-cli --tls (resp_server)", check_redis_cli, certs, srv, tmp)
            srv.stop(certs)
        else:
            print("note: redis-cli not found; case h skipped")
    took = time.monotonic() - started
    if FAILURES:
        print(f"{len(FAILURES)} failures on {backend} ({took:.1f} s):")
        for f in FAILURES:
            print("FAIL:", f)
        sys.exit(1)
    print(f"ok: TLS samples on {backend} passed in {took:.1f} s; every server exited 0 "
          "on SIGTERM")


if __name__ == "__main__":
    main()
