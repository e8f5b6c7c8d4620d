#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages ringnet needs, only those missing. Usage: deps.sh [extra...]
# Sourced or run by scripts/test, scripts/demo and bench/ scripts.
set -euo pipefail

packages=(g++ meson ninja-build pkg-config liburing-dev libfmt-dev libgtest-dev
          libbenchmark-dev python3 doxygen libzstd-dev liblz4-dev libssl-dev openssl libxxhash-dev
          libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
          nlohmann-json3-dev libhiredis-dev redis-server  # samples/job_dispatcher
          "$@")
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
