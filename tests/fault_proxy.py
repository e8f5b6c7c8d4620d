#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A fault-injecting TCP relay for the black-box tests (this kernel has no netem).

FaultProxy listens on 127.0.0.1 (an ephemeral port) and relays every accepted connection
to an upstream server, byte for byte, with one thread per connection pair running a small
poll loop over its two non-blocking sockets. Each connection gets the Fault registered
for its client port (FaultProxy.connect() binds the client socket first, so the pairing
does not depend on accept order and cannot race):

  delay       every chunk read waits this long before it is forwarded (both directions;
              latency, not a throughput cap: chunks are pipelined).
  split       "up" (client -> server), "down" or "both": forward one byte per send(). The
              proxy's sockets have TCP_NODELAY and the next byte is sent only once the
              previous one has left the socket (SIOCOUTQNSD = 0; waited for up to 50 ms),
              so each byte is a TCP segment of its own: ConnRecord.up_data_segs (the
              upstream socket's tcpi_data_segs_out) shows it. The server reads whatever
              has arrived when it reads: one byte per read while it keeps up, a few when
              it falls behind. `split_pace` adds seconds between bytes.
  stall       (direction, after_bytes, seconds): once `after_bytes` have been read in that
              direction, stop reading its source for `seconds`: kernel buffers fill and the
              sender sees backpressure. Nothing is lost.
  reset       (direction, after_bytes, target): once exactly `after_bytes` have been
              forwarded in that direction, close with SO_LINGER {1, 0} (an RST) the
              "server" side, the "client" side or "both"; a side not reset is closed
              plainly. Bytes read and not forwarded are dropped (counted).
  half_close  (direction, after_bytes): once exactly `after_bytes` have been forwarded in
              that direction, shutdown(SHUT_WR) its destination; what its source still
              sends is read and dropped (counted). The other direction goes on.

Without a fault the relay is transparent: an EOF is passed on as shutdown(SHUT_WR), a
reset read from one side resets the other, a send refused by one side (it closed) stops
that direction while the other one drains. Nothing is ever reordered, duplicated or
altered: each direction keeps SHA-256 digests of what it read and what it sent, and
ConnRecord.error says so if the bytes sent plus the bytes still pending ever differ from
the bytes read (the tests fail on it). Used as a module (see fault_clients.py); run alone
it checks itself against a Python echo server.
"""
import collections
import dataclasses
import fcntl
import hashlib
import selectors
import socket
import struct
import threading
import time

CHUNK = 65536
PENDING_CAP = 256 * 1024  # bytes read and not yet forwarded, per direction, before reading stops
PAIR_DEADLINE = 120.0     # a connection pair that lives longer is a test bug: it is cut and reported


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str = "clean"
    delay: float = 0.0
    split: str = ""            # "", "up", "down", "both"
    split_pace: float = 0.0
    stall: tuple = None        # (direction, after_bytes, seconds)
    reset: tuple = None        # (direction, after_bytes, "server" | "client" | "both")
    half_close: tuple = None   # (direction, after_bytes)

    def truncates(self, direction):
        """True when this fault may stop `direction` before its source finished."""
        return any(f is not None and f[0] == direction for f in (self.reset, self.half_close))


CLEAN = Fault()


class Pipe:
    """One direction of a pair: bytes read from `src`, held, forwarded to `dst`."""

    def __init__(self, name, src, dst, fault):
        self.name, self.src, self.dst = name, src, dst
        self.pending = collections.deque()  # [release_time, bytes] chunks, oldest first
        self.pending_bytes = 0
        self.received = self.forwarded = self.dropped = self.sends = 0
        self.read_digest, self.sent_digest = hashlib.sha256(), hashlib.sha256()
        self.src_eof = False       # the source sent FIN (or is gone: see src_dead)
        self.src_dead = False      # the source socket was closed here
        self.finished = False      # nothing more will be forwarded (EOF passed on, or cut)
        self.cut = None            # why forwarding stopped early, or None
        self.blocked = False       # the last send met EAGAIN: wait for POLLOUT
        self.next_byte_at = 0.0    # split_pace: when the next single byte may go
        self.split = fault.split in (name, "both")
        self.pace = fault.split_pace if self.split else 0.0
        self.delay = fault.delay
        self.stall = fault.stall if fault.stall and fault.stall[0] == name else None
        self.stall_until = None
        self.reset = fault.reset if fault.reset and fault.reset[0] == name else None
        self.half_close = fault.half_close if fault.half_close and fault.half_close[0] == name else None
        # The byte count where forwarding must stop exactly (reset or half-close).
        self.limit = None
        for f in (self.reset, self.half_close):
            if f is not None:
                self.limit = f[1] if self.limit is None else min(self.limit, f[1])

    # ---- reading ----
    def wants_read(self, now):
        if self.src_eof or self.src_dead or self.pending_bytes >= PENDING_CAP:
            return False
        if self.stall_until is not None and now < self.stall_until:
            return False
        return not (self.stall and self.stall_until is None and self.received >= self.stall[1])

    def read(self, now):
        """Reads once from src. Returns "reset" when the source reset the connection."""
        size = CHUNK
        if self.stall and self.stall_until is None:
            size = min(size, self.stall[1] - self.received)
        try:
            data = self.src.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionResetError:
            return "reset"
        if not data:
            self.src_eof = True
            return None
        self.received += len(data)
        self.read_digest.update(data)
        if self.stall and self.stall_until is None and self.received >= self.stall[1]:
            self.stall_until = now + self.stall[2]
        if self.cut is not None:
            self.dropped += len(data)  # forwarding stopped: read and drop
        else:
            self.pending.append([now + self.delay, data])
            self.pending_bytes += len(data)
        return None

    # ---- writing ----
    def due(self, now):
        """When this pipe next has something to do on the clock (None: waits on a socket)."""
        times = []
        if self.pending and self.cut is None and not self.blocked:
            times.append(max(self.pending[0][0], self.next_byte_at))
        if self.stall_until is not None and now < self.stall_until:
            times.append(self.stall_until)
        return min(times) if times else None

    def pump(self, now):
        """Forwards what is due. Returns the fault that fired ("reset"/"half_close") or None."""
        while self.pending and self.cut is None and not self.blocked:
            release, data = self.pending[0]
            if release > now or self.next_byte_at > now:
                break
            n = len(data)
            if self.split:
                n = 1
                self.wait_sent()
            if self.limit is not None:
                n = min(n, self.limit - self.forwarded)
            if n > 0:
                try:
                    sent = self.dst.send(data[:n])
                except (BlockingIOError, InterruptedError):
                    self.blocked = True
                    break
                except (BrokenPipeError, ConnectionResetError):
                    self.stop("destination closed")
                    break
                self.sends += 1
                self.forwarded += sent
                self.sent_digest.update(data[:sent])
                self.pending_bytes -= sent
                if sent == len(data):
                    self.pending.popleft()
                else:
                    self.pending[0][1] = data[sent:]
                if self.pace:
                    self.next_byte_at = now + self.pace
            fired = self.check_limit()
            if fired:
                return fired
        if self.limit is not None and self.cut is None:
            fired = self.check_limit()
            if fired:
                return fired
        if self.src_eof and not self.pending and self.cut is None and not self.finished:
            self.verify()
            self.finished = True
            try:
                self.dst.shutdown(socket.SHUT_WR)  # pass the EOF on
            except OSError:
                pass
        return None

    def wait_sent(self):
        """Waits (briefly) until the last byte has left dst as a segment of its own: with
        TCP_NODELAY a send goes out at once unless the congestion window is full or the
        kernel corks it (tcp_autocorking), and then bytes queued meanwhile would share a
        segment. SIOCOUTQNSD = bytes queued and not yet sent."""
        give_up = time.monotonic() + 0.05
        while unsent_bytes(self.dst) > 0 and time.monotonic() < give_up:
            time.sleep(0)

    def check_limit(self):
        if self.limit is None or self.forwarded < self.limit:
            return None
        if self.reset and self.forwarded >= self.reset[1]:
            self.stop(f"reset after {self.forwarded} bytes")
            return "reset"
        if self.half_close and self.forwarded >= self.half_close[1]:
            self.stop(f"half-closed after {self.forwarded} bytes")
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return "half_close"
        return None

    def stop(self, why):
        """Forwarding ends here: what is pending is dropped, later input too."""
        if self.cut is not None or self.finished:
            return
        self.verify()
        self.cut = why
        self.finished = True
        self.dropped += self.pending_bytes
        self.pending.clear()
        self.pending_bytes = 0

    def verify(self):
        """What was sent, followed by what is still pending, is exactly what was read."""
        digest = self.sent_digest.copy()
        for _, data in self.pending:
            digest.update(data)
        if digest.digest() != self.read_digest.digest() or \
                self.forwarded + self.pending_bytes != self.received - self.dropped:
            raise AssertionError(f"{self.name}: relayed bytes differ from the bytes read "
                                 f"({self.received} read, {self.forwarded} sent)")

    def stats(self):
        return dict(received=self.received, forwarded=self.forwarded, dropped=self.dropped,
                    sends=self.sends, cut=self.cut, eof=self.src_eof)


@dataclasses.dataclass
class ConnRecord:
    """What happened to one relayed connection; filled by its thread, final once `done`."""
    fault: Fault
    client_port: int
    up: dict = None            # Pipe.stats() of client -> server
    down: dict = None          # Pipe.stats() of server -> client
    events: list = dataclasses.field(default_factory=list)
    error: str = None          # a proxy invariant broke, or the pair outlived its deadline
    up_data_segs: int = None   # data segments the upstream socket sent (TCP_INFO)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


def data_segs_out(sock):
    """tcpi_data_segs_out of a TCP socket (struct tcp_info, Linux 4.6+), or None."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    except OSError:
        return None
    return struct.unpack_from("I", info, 156)[0] if len(info) >= 160 else None


SIOCOUTQNSD = 0x894B  # linux/sockios.h


def unsent_bytes(sock):
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b"\0" * 4))[0]
    except OSError:
        return 0


def hard_close(sock, rst):
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Pair:
    """Both directions of one relayed connection, served by one thread."""

    def __init__(self, client, upstream, record):
        self.client, self.upstream, self.rec = client, upstream, record
        f = record.fault
        self.up = Pipe("up", client, upstream, f)
        self.down = Pipe("down", upstream, client, f)
        self.pipes = (self.up, self.down)
        for p in self.pipes:
            if p.stall and p.stall[1] == 0:  # stalled from the start
                p.stall_until = time.monotonic() + p.stall[2]
        self.sel = selectors.DefaultSelector()
        self.registered = {}  # socket -> selector events

    def run(self):
        rec = self.rec
        try:
            self.loop()
        except AssertionError as e:
            rec.error = str(e)
        finally:
            rec.up, rec.down = self.up.stats(), self.down.stats()
            for s in (self.client, self.upstream):
                if s.fileno() >= 0:
                    s.close()
            self.sel.close()
            rec.done.set()

    def close_side(self, sock, rst):
        """Closes one socket (an RST with `rst`); the pipes reading it see its end, the
        pipe writing to it drops what it still has."""
        if sock.fileno() < 0:
            return
        if sock is self.upstream and self.rec.up_data_segs is None:
            self.rec.up_data_segs = data_segs_out(sock)
        if self.registered.pop(sock, 0):
            self.sel.unregister(sock)
        hard_close(sock, rst)
        for p in self.pipes:
            if p.src is sock:
                p.src_dead = True
                p.src_eof = True  # what was read still goes on, then an EOF
            if p.dst is sock:
                p.stop("destination closed")

    def finish(self, rst_client, rst_server, why):
        self.rec.events.append(why)
        self.close_side(self.upstream, rst_server)
        self.close_side(self.client, rst_client)

    def on_reset_fault(self, p):
        """The reset fault fired on pipe p: RST its target side(s). A side not reset gets
        a FIN after what it is owed, and its input is read and dropped until its EOF."""
        target = p.reset[2]
        rst_client, rst_server = target in ("client", "both"), target in ("server", "both")
        self.rec.events.append(f"{p.name}: {p.cut}, RST to {target}")
        if rst_server:
            self.close_side(self.upstream, True)
        if rst_client:
            self.close_side(self.client, True)

    def done(self):
        return all(p.finished and (p.src_eof or p.src_dead) for p in self.pipes)

    def update_interest(self, now):
        want = collections.defaultdict(int)
        for p in self.pipes:
            if p.wants_read(now):
                want[p.src] |= selectors.EVENT_READ
            if p.blocked:
                want[p.dst] |= selectors.EVENT_WRITE
        for s in (self.client, self.upstream):
            if s.fileno() < 0:
                continue
            ev, old = want.get(s, 0), self.registered.get(s, 0)
            if ev == old:
                continue
            if old == 0:
                self.sel.register(s, ev)
            elif ev == 0:
                self.sel.unregister(s)
            else:
                self.sel.modify(s, ev)
            self.registered[s] = ev

    def loop(self):
        deadline = time.monotonic() + PAIR_DEADLINE
        while True:
            now = time.monotonic()
            for p in self.pipes:
                fired = p.pump(now)
                if fired == "reset":
                    self.on_reset_fault(p)
                elif fired == "half_close":
                    self.rec.events.append(f"{p.name}: {p.cut}")
            if self.done():
                self.finish(False, False, "closed")
                return
            if now > deadline:
                self.rec.error = f"still open after {PAIR_DEADLINE} s"
                self.finish(True, True, "deadline")
                return
            self.update_interest(now)
            dues = [d for d in (p.due(now) for p in self.pipes) if d is not None]
            timeout = min(max(0.0, min(dues) - now) if dues else 1.0, 1.0)
            if not any(self.registered.values()):
                if not dues:  # cannot happen: a pipe not done reads, writes or waits
                    self.rec.error = f"stuck: {self.up.stats()} {self.down.stats()}"
                    self.finish(True, True, "stuck")
                    return
                time.sleep(timeout)
                continue
            for key, ev in self.sel.select(timeout):
                now = time.monotonic()
                if ev & selectors.EVENT_WRITE:
                    for p in self.pipes:
                        if p.dst is key.fileobj:
                            p.blocked = False
                if ev & selectors.EVENT_READ:
                    for p in self.pipes:
                        if p.src is key.fileobj and p.wants_read(now) and \
                                p.read(now) == "reset":
                            # Transparent: a reset from one side resets the other.
                            p.src_dead = True
                            p.stop("source reset")
                            self.finish(p.src is self.upstream, p.src is self.client,
                                        f"{p.name}: source reset, passed on")
                            return


class FaultProxy:
    """Relays 127.0.0.1:<port> to upstream_port. Thread-safe: connect() from any thread."""

    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.mu = threading.Lock()
        self.expected = {}   # client port -> ConnRecord
        self.records = []
        self.threads = []
        self.closing = False
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    def connect(self, fault=CLEAN, timeout=10.0):
        """A client socket through the proxy with `fault`; returns (socket, ConnRecord)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        rec = ConnRecord(fault=fault, client_port=sock.getsockname()[1])
        with self.mu:
            self.expected[rec.client_port] = rec
            self.records.append(rec)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, rec

    def _accept_loop(self):
        while True:
            try:
                client, addr = self.listener.accept()
            except OSError:
                return  # closed
            with self.mu:
                rec = self.expected.pop(addr[1], None)
                if rec is None:  # someone else's connection: relay it cleanly, recorded
                    rec = ConnRecord(fault=CLEAN, client_port=addr[1])
                    self.records.append(rec)
            t = threading.Thread(target=self._serve, args=(client, rec), daemon=True)
            with self.mu:
                self.threads.append(t)
            t.start()

    def _serve(self, client, rec):
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError as e:
            rec.events.append(f"upstream connect failed: {e}")
            hard_close(client, True)
            rec.done.set()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
        Pair(client, upstream, rec).run()

    def close(self, timeout=10.0):
        """Stops accepting and waits for every pair; returns the records with errors."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        self.acceptor.join(timeout)
        with self.mu:
            threads = list(self.threads)
        for t in threads:
            t.join(timeout)
        return [r for r in self.records if r.error or not r.done.is_set()]


# ---- self-check against a Python echo server ----------------------------------------------

def _echo_server():
    srv = socket.create_server(("127.0.0.1", 0))

    def serve(c):
        with c:
            try:
                while True:
                    d = c.recv(CHUNK)
                    if not d:
                        c.shutdown(socket.SHUT_WR)
                        return
                    c.sendall(d)
            except OSError:
                pass

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def _self_check():
    srv = _echo_server()
    proxy = FaultProxy(srv.getsockname()[1])
    payload = hashlib.sha256(b"x").digest() * 2000  # 64,000 bytes
    for fault in (CLEAN, Fault("delay", delay=0.02), Fault("split", split="both"),
                  Fault("stall", stall=("down", 1000, 0.3))):
        sock, rec = proxy.connect(fault)
        sock.sendall(payload if not fault.split else payload[:3000])
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while (d := sock.recv(CHUNK)):
            got += d
        want = payload if not fault.split else payload[:3000]
        assert got == want, (fault.name, len(got))
        sock.close()
        assert rec.done.wait(5) and rec.error is None, rec
        print(f"ok: {fault.name}: {len(got)} bytes echoed; {rec.up}; {rec.up_data_segs} segs")
    sock, rec = proxy.connect(Fault("reset", reset=("up", 1000, "both")))
    sock.sendall(payload[:5000])
    got = bytearray()
    try:
        while (d := sock.recv(CHUNK)):
            got += d
    except ConnectionResetError:
        pass
    assert payload.startswith(got) and len(got) <= 1000, len(got)
    assert rec.done.wait(5) and rec.up["forwarded"] == 1000, rec
    print(f"ok: reset: {len(got)} bytes back; {rec.events}")
    assert not proxy.close()
    srv.close()


if __name__ == "__main__":
    _self_check()
