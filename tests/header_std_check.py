#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Below C++20 every public header stops at once with one clear line.

  header_std_check.py SOURCE_ROOT GENERATED_INCLUDE_DIR -- COMPILER...

Compiles each public header (engine/include/ringnet/**, protocols/include/ringnet/proto/**,
and the generated version.h) alone with -std=c++17 -Wfatal-errors and expects it to fail
with "ringnet needs C++20 (-std=c++20)" as its first error, i.e. before anything else in
the header could fail. Also checks that tests/public_headers.cc (the strict-warnings
build) includes every public header. Exit 1 with each offender.
"""
import pathlib
import subprocess
import sys

MESSAGE = "ringnet needs C++20 (-std=c++20)"


def public_headers(root, generated):
    found = []
    for base in (root / "engine" / "include", root / "protocols" / "include", generated):
        found += [p.relative_to(base).as_posix() for p in sorted(base.rglob("*.h"))]
    return sorted(set(found))


def main():
    sep = sys.argv.index("--")
    root, generated = (pathlib.Path(a).resolve() for a in sys.argv[1:sep])
    compiler = sys.argv[sep + 1:]
    includes = ["-I" + str(root / "engine" / "include"), "-I" + str(generated),
                "-I" + str(root / "protocols" / "include")]
    errors = []
    headers = public_headers(root, generated)
    for header in headers:
        cmd = compiler + ["-std=c++17", "-fsyntax-only", "-Wfatal-errors", *includes,
                          "-x", "c++", "-"]
        r = subprocess.run(cmd, input=f"#include <{header}>\n", capture_output=True, text=True)
        first_error = next((l for l in r.stderr.splitlines() if "error" in l), "")
        if r.returncode == 0:
            errors.append(f"{header}: compiles with -std=c++17 (no C++20 check)")
        elif MESSAGE not in first_error:
            errors.append(f"{header}: with -std=c++17 the first error is not ours:\n"
                          f"    {first_error or r.stderr.strip()}")
    strict = (root / "tests" / "public_headers.cc").read_text()
    for header in headers:
        if f"#include <{header}>" not in strict:
            errors.append(f"tests/public_headers.cc does not include <{header}>")
    for line in errors:
        print(line)
    print(f"{len(headers)} public headers: " +
          (f"{len(errors)} problems" if errors else f"each fails below C++20 with \"{MESSAGE}\""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
