#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The tree's dependency rules, checked from the #include lines.

engine/src/ is layered: each folder may include only itself and the folders below it
(base < net < core < {epoll, uring} < runtime), so nothing points back up to core and core
knows a backend only through core/poller.h. Public headers (engine/include, protocols/
include) include no engine/src header; the engine includes nothing of protocols/; samples
use public headers only. Exit status 1, with every offending line, when a rule is broken.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else __file__).resolve()
if ROOT.is_file():
    ROOT = ROOT.parent.parent
BELOW = {
    "base": set(),
    "net": {"base"},
    "core": {"base", "net"},
    "epoll": {"base", "net", "core"},
    "uring": {"base", "net", "core"},
    "runtime": {"base", "net", "core", "epoll", "uring"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def includes(path):
    return INCLUDE.findall(path.read_text(errors="replace"))


def sources(folder):
    return [p for p in (ROOT / folder).rglob("*") if p.suffix in (".h", ".cc", ".c")]


def main():
    errors = []
    src = ROOT / "engine" / "src"
    for path in sources("engine/src"):
        folder = path.relative_to(src).parts[0]
        if folder not in BELOW:
            errors.append(f"{path.relative_to(ROOT)}: engine/src/{folder}/ is not a known layer")
            continue
        for inc in includes(path):
            top = inc.split("/")[0]
            if top == "ringnet":
                continue  # the engine's public headers
            if top == "ringnet_proto" or top.startswith("protocols"):
                errors.append(f"{path.relative_to(ROOT)}: the engine includes a protocol: {inc}")
            elif top not in BELOW:
                errors.append(f"{path.relative_to(ROOT)}: include without its layer: {inc}")
            elif top != folder and top not in BELOW[folder]:
                errors.append(f"{path.relative_to(ROOT)}: {folder}/ includes {inc}, from a layer above")
    for public in ("engine/include", "protocols/include", "samples"):
        for path in sources(public):
            for inc in includes(path):
                if inc.split("/")[0] in BELOW:
                    errors.append(f"{path.relative_to(ROOT)}: includes engine internals: {inc}")
    for line in errors:
        print(line)
    print(f"layers: {len(errors)} violations" if errors else "layers: every include points down")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
