#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shared libraries' ABI surface, read from the built files.

  abi_check.py --engine libringnet.so.X --proto libringnet_proto.so.X [--static-engine EXE...]

- SONAMEs are libringnet.so.0 and libringnet_proto.so.0;
- every dynamic symbol they define is in namespace ringnet (functions, variables, their
  vtables and typeinfo): no std or fmt template instantiations;
- none names an engine internal (event loop, pollers, admin server, socket helpers, buffer
  ring, timer wheel, task queue...), while the public API is there (Engine, Conn, version);
- libringnet_proto defines no engine function of its own (it uses libringnet.so's) and
  needs libringnet.so.0;
- the white-box test executables (engine objects linked in) load neither library, so no
  program has two copies of the engine's statics.
Exit 1 with every finding; 77 (skip) when binutils is missing.
"""
import argparse
import re
import shutil
import subprocess
import sys

RINGNET_PREFIXES = (
    "ringnet::",
    "typeinfo for ringnet::",
    "typeinfo name for ringnet::",
    "vtable for ringnet::",
    "guard variable for ringnet::",
)
# Engine internals: none of these may be exported (matched in the symbol's own name, not
# in its parameter list).
INTERNAL = re.compile(
    r"EventLoop|Poller|AdminServer|BufferRing|TimerWheel|TimerQueue|TaskQueue|LoopGroup|"
    r"SourceLimiter|Slab|Listener|ringnet::sockets::|setup_ring|probe_io_uring|make_poller|"
    r"resolve_backend|kernel_at_least|Engine::Impl|"
    r"WorkerPool::Impl|PoolShared|PeerPool::State|RpcClient::State|CallbacksInFlight|"
    r"LoopCounters|LoopHistogram|UringTag|ChunkLimits|Resolver|resolve_now|"
    r"parse_named_address|NamedAddress")
EXPECTED = {
    "engine": [
        "ringnet::Engine::Engine(ringnet::EventHandler&, ringnet::Options)",
        "ringnet::version()",
        "ringnet::version_string()",
        "ringnet::Conn::write(",
        "ringnet::ConnHandle::async_write(",
        "ringnet::WorkerPool::enqueue(",
        "ringnet::detail::log_write(",
        "ringnet::detail::g_log_level",
        "typeinfo for ringnet::detail::PoolJob",
    ],
    "proto": [
        "ringnet::proto::Http1Codec::decode_from(",
        "ringnet::proto::RpcClient::call(",
        "ringnet::proto::PeerPool::get(",
        "ringnet::proto::kRpcErrorBadMagic",
        "ringnet::proto::rpc_decompress(",
    ],
}
SONAMES = {"engine": "libringnet.so.0", "proto": "libringnet_proto.so.0"}


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def own_name(symbol):
    """The symbol without its parameter list: "ringnet::Conn::write(...)" -> "ringnet::Conn::write"."""
    depth = 0
    for i, ch in enumerate(symbol):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            return symbol[:i]
    return symbol


def dynamic_symbols(path):
    """(type letter, demangled name) of every dynamic symbol the file defines."""
    out = []
    for line in run("nm", "-D", "--defined-only", "-C", path).splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def dynamic_section(path):
    soname, needed = None, []
    for line in run("readelf", "-d", path).splitlines():
        m = re.search(r"\((SONAME|NEEDED)\)\s+.*\[(.*)\]", line)
        if m and m.group(1) == "SONAME":
            soname = m.group(2)
        elif m:
            needed.append(m.group(2))
    return soname, needed


def check_library(kind, path, errors):
    soname, needed = dynamic_section(path)
    if soname != SONAMES[kind]:
        errors.append(f"{path}: SONAME {soname!r}, expected {SONAMES[kind]!r}")
    symbols = dynamic_symbols(path)
    for letter, name in symbols:
        if not name.startswith(RINGNET_PREFIXES):
            errors.append(f"{path}: exports a symbol outside namespace ringnet: {letter} {name}")
        elif INTERNAL.search(own_name(name)):
            errors.append(f"{path}: exports an engine internal: {letter} {name}")
        # Strong definitions only: a weak copy of an inline engine member is harmless.
        elif kind == "proto" and letter in "TDBR" and "ringnet::proto::" not in own_name(name):
            errors.append(f"{path}: defines an engine symbol: {letter} {name}")
    for want in EXPECTED[kind]:
        if not any(name.startswith(want) for _, name in symbols):
            errors.append(f"{path}: public API missing from its dynamic symbols: {want}")
    if kind == "proto" and SONAMES["engine"] not in needed:
        errors.append(f"{path}: does not need {SONAMES['engine']} (NEEDED: {needed})")
    print(f"{path}: SONAME {soname}, {len(symbols)} dynamic symbols defined")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--static-engine", nargs="*", default=[],
                    help="executables that link the engine's objects (ringnet_internal_dep)")
    args = ap.parse_args()
    if shutil.which("readelf") is None or shutil.which("nm") is None:
        print("readelf/nm not found (binutils): skipped")
        return 77
    errors = []
    check_library("engine", args.engine, errors)
    check_library("proto", args.proto, errors)
    for exe in args.static_engine:
        _, needed = dynamic_section(exe)
        loaded = [lib for lib in needed if lib.startswith(("libringnet.so", "libringnet_proto.so"))]
        if loaded:
            errors.append(f"{exe}: links the engine's objects and also loads {loaded}: "
                          "two copies of the engine's statics")
        else:
            print(f"{exe}: loads no ringnet library")
    for line in errors:
        print(line)
    print(f"abi: {len(errors)} problems" if errors else "abi: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
