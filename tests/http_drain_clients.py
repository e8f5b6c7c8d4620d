#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""SIGTERM drain of samples/http_server under continuous load, proven with request ids.

20 rounds (sample_server.drain_rounds): 50 keep-alive connections pipeline numbered
`POST /echo` requests (the body is the id), 8 in flight each, and SIGTERM comes at a random
moment. HTTP answers in order, so each client checks that its answers are its requests'
ids from the first one on, each once, each with status 200 and the id as body; once the
server says `Connection: close` nothing more may follow but EOF. The server's totals line
must count exactly the answers the clients got: every request it read was answered, the
ones it never read got no answer and their client saw the connection close.

usage: http_drain_clients.py PATH/TO/http_server [--backend epoll|io_uring]
Exits 77 (skipped) when the io_uring backend is asked for and the kernel refuses it.
"""
import argparse
import select
import time

import sample_server


def request(rid):
    body = str(rid).encode()
    return (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n\r\n" + body)


def parse_response(buf):
    """(status, headers, body, bytes used) of the first whole response in buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(buf) < end + 4 + length:
        return None
    return status, headers, bytes(buf[end + 4:end + 4 + length]), end + 4 + length


def load_client(sock, first_id, result):
    """Keeps 8 requests in flight until the server closes; answers must come in order."""
    outstanding, answered, buf = [], 0, bytearray()
    next_id, ended, closing = first_id, None, False
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            wire = bytearray()
            while not closing and len(outstanding) < 8:
                wire += request(next_id)
                outstanding.append(next_id)
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
            while (parsed := parse_response(buf)) is not None:
                status, headers, body, used = parsed
                del buf[:used]
                if closing:
                    result["error"] = "a response after `Connection: close`"
                    return
                if not outstanding:
                    result["error"] = "a response to no request"
                    return
                rid = outstanding.pop(0)
                if status != 200 or body != str(rid).encode():
                    result["error"] = f"request {rid}: status {status}, body {body[:40]!r}"
                    return
                answered += 1
                closing = headers.get("connection", "").lower() == "close"
    except OSError as e:  # the server's close met a send or a receive
        ended = f"error {e.errno}"
    finally:
        sock.close()  # as a client does once the server has closed: its linger ends
    if buf and ended == "eof":
        result["error"] = f"{len(buf)} bytes of a response cut off by the close"
        return
    result["answered"] = answered
    result["ended"] = ended


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    took = sample_server.drain_rounds(args.server, args.backend, load_client, "http_server",
                                      server_args=("--loops", "2"))
    print(f"ok: {args.backend}: {len(took)} rounds of SIGTERM at a random moment under "
          f"pipelined keep-alive load from 50 connections: every request the server counted "
          f"answered once, in order, the rest none; exit 0 in "
          f"{min(took):.2f}-{max(took):.2f} s")


if __name__ == "__main__":
    main()
