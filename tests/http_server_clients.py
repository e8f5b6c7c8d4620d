#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/http_server with clients nobody on this team wrote: curl
(GET, keep-alive reuse, chunked upload, Expect: 100-continue, 404/405, HTTP/1.0), plain
Python sockets (100 pipelined requests, one connection per malformed request: exact status
then EOF while another connection keeps working), then wrk and h2load if installed.
Finally SIGTERM must stop the server with exit status 0.

usage: http_server_clients.py PATH/TO/http_server [--backend epoll|io_uring] [--loops N]
Exits 77 (skipped) when curl is missing or the io_uring backend is unavailable.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import sample_server
from sample_server import fail

PLAINTEXT = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'


def curl(*args):
    """Runs curl; returns (exit code, stdout bytes, stderr text)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def parse_head(raw):
    """b"HTTP/1.1 200 OK\\r\\nA: b\\r\\n" -> (200, {"a": "b"})"""
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def curl_get(url, *extra):
    """GET with headers to a file: returns (status, headers, body) of the last response."""
    with tempfile.NamedTemporaryFile() as hdr:
        code, body, err = curl("-D", hdr.name, *extra, url)
        if code != 0:
            fail(f"curl {url} exited {code}: {err}")
        heads = [h for h in open(hdr.name, "rb").read().split(b"\r\n\r\n") if h]
        status, headers = parse_head(heads[-1])
        return status, headers, body


# ---- curl ------------------------------------------------------------------------------

def check_curl(base, tmp):
    status, headers, body = curl_get(base + "/plaintext")
    if (status, body, headers.get("content-type")) != (200, PLAINTEXT, "text/plain"):
        fail(f"/plaintext: {status} {headers} {body!r}")
    if headers.get("server") != "ringnet" or not re.fullmatch(
            r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", headers.get("date", "")):
        fail(f"/plaintext: missing Server/Date: {headers}")
    status, headers, body = curl_get(base + "/json")
    if (status, body, headers.get("content-type")) != (200, JSON, "application/json"):
        fail(f"/json: {status} {headers} {body!r}")

    # Keep-alive: two URLs in one invocation share one connection (curl says so, and
    # reports one new connection for the first transfer and none for the second).
    code, out, err = curl("-v", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                          base + "/plaintext", base + "/json")
    if code != 0 or out.split() != [b"1", b"0"] or "Re-using existing connection" not in err:
        fail(f"keep-alive: curl did not reuse the connection: {out!r}\n{err}")

    # Uploads: 200 KiB of random bytes, chunked and with Expect: 100-continue.
    payload = random.Random(7).randbytes(200 * 1024)
    upload = os.path.join(tmp, "upload.bin")
    with open(upload, "wb") as f:
        f.write(payload)
    code, out, err = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + upload,
                          base + "/echo")
    if code != 0 or out != payload:
        fail(f"chunked upload: exit {code}, {len(out)} bytes back, equal={out == payload}: {err}")
    code, out, err = curl("-v", "-H", "Expect: 100-continue", "--data-binary", "@" + upload,
                          base + "/echo")
    if code != 0 or out != payload or "HTTP/1.1 100 Continue" not in err:
        fail(f"Expect upload: exit {code}, {len(out)} bytes back, equal={out == payload}\n{err}")

    status, headers, body = curl_get(base + "/nope")
    if status != 404:
        fail(f"/nope: {status}")
    status, headers, body = curl_get(base + "/plaintext", "-X", "POST", "--data", "x")
    if status != 405 or headers.get("allow") != "GET, HEAD":
        fail(f"POST /plaintext: {status} {headers}")
    status, headers, body = curl_get(base + "/echo")
    if status != 405 or headers.get("allow") != "POST":
        fail(f"GET /echo: {status} {headers}")
    # curl -I prints the head as its output; no body may follow it.
    status, headers, out = curl_get(base + "/json", "-I")
    if status != 200 or not out.endswith(b"\r\n\r\n") or JSON in out or \
            headers.get("content-length") != str(len(JSON)):
        fail(f"HEAD /json: {status} {headers} {out!r}")

    code, out, err = curl("-0", "-v", base + "/plaintext")
    if code != 0 or out != PLAINTEXT or "< Connection: close" not in err or \
            "> GET /plaintext HTTP/1.0" not in err or "Closing connection" not in err:
        fail(f"HTTP/1.0: exit {code} {out!r}\n{err}")
    print("ok: curl GET/keep-alive/chunked/100-continue/404/405/HEAD/HTTP 1.0")


# ---- raw sockets -----------------------------------------------------------------------

class Conn:
    def __init__(self, port):
        self.sock = sample_server.connect(port)
        self.buf = b""

    def read_response(self):
        """One response: (status, headers, body), or None at a clean EOF."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                if self.buf:
                    fail(f"EOF inside a response head: {self.buf[:200]!r}")
                return None
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("EOF inside a response body")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def close(self):
        self.sock.close()


def check_pipelining(port):
    c = Conn(port)
    wire = b""
    expected = []
    for i in range(100):
        if i % 2:
            body = f"request {i}".encode()
            wire += (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
            expected.append(body)
        else:
            wire += b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
            expected.append(PLAINTEXT)
    c.sock.sendall(wire)
    for i, want in enumerate(expected):
        r = c.read_response()
        if r is None or r[0] != 200 or r[2] != want:
            fail(f"pipelined response {i}: {r!r}, wanted {want!r}")
    c.close()
    print("ok: 100 pipelined requests answered in order")


def check_bad_requests(port):
    keeper = Conn(port)

    def keeper_works(i):
        keeper.sock.sendall(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
        r = keeper.read_response()
        if r is None or r[0] != 200 or r[2] != JSON:
            fail(f"the other connection stopped working after bad request #{i}: {r!r}")

    cases = [
        (400, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        (400, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        (400, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\nabc\r\n0\r\n\r\n"),
        (431, b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n"),
        (414, b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"),
        # The body is never sent: the limit is checked from the head.
        (413, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n"),
        (505, b"GET /plaintext HTTP/2.0\r\nHost: t\r\n\r\n"),
    ]
    keeper_works(0)
    for i, (status, wire) in enumerate(cases, 1):
        c = Conn(port)
        c.sock.sendall(wire)
        try:
            r = c.read_response()
            after = c.read_response()
        except ConnectionResetError:
            fail(f"bad request #{i} ({status}): connection reset instead of response + EOF")
        if r is None or r[0] != status or r[1].get("connection") != "close":
            fail(f"bad request #{i}: got {r!r}, wanted status {status} with Connection: close")
        if after is not None:
            fail(f"bad request #{i}: more after the error response: {after!r}")
        c.close()
        keeper_works(i)
    keeper.close()
    print(f"ok: {len(cases)} malformed requests got their status then EOF; "
          "another connection kept working")


# ---- load tools ------------------------------------------------------------------------

def check_wrk(base):
    if shutil.which("wrk") is None:
        print("note: wrk not installed, load check skipped")
        return
    r = subprocess.run(["wrk", "-t1", "-c20", "-d2s", base + "/plaintext"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    m = re.search(r"(\d+) requests in", r.stdout)
    if r.returncode != 0 or not m or int(m.group(1)) == 0 or \
            "Non-2xx" in r.stdout or "Socket errors" in r.stdout:
        fail(f"wrk:\n{r.stdout}")
    print(f"ok: wrk {m.group(1)} requests in 2 s, no errors")


def check_h2load(base):
    if shutil.which("h2load") is None:
        print("note: h2load not installed, load check skipped")
        return
    r = subprocess.run(["h2load", "--h1", "-n", "20000", "-c", "20", base + "/plaintext"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", r.stdout)
    if r.returncode != 0 or not m or m.group(1) != "20000" or m.group(2) != "20000" or \
            m.group(3) != "0" or m.group(4) != "0" or "status codes: 20000 2xx" not in r.stdout:
        fail(f"h2load:\n{r.stdout}")
    print("ok: h2load --h1 20000 requests succeeded")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--backend", default="epoll")
    ap.add_argument("--loops", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("skip: curl not installed")
        sys.exit(77)
    started = time.monotonic()
    proc, port = sample_server.start(args.binary, args.backend, "--loops", str(args.loops))
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            check_curl(base, tmp)
        check_pipelining(port)
        check_bad_requests(port)
        check_wrk(base)
        check_h2load(base)
    finally:
        code, _, err = sample_server.stop(proc)
    if code != 0:
        fail(f"http_server exited with {code}: {err}")
    print(f"ok: http_server on {args.backend} passed in {time.monotonic() - started:.1f} s; "
          "SIGTERM -> exit 0")


if __name__ == "__main__":
    main()
