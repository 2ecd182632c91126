#!/usr/bin/env bash
# Installs the Debian packages sluice needs, if any are missing.
# Idempotent and quiet when everything is already there.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap g++ liburing-dev libfmt-dev libspdlog-dev libgtest-dev
  libcli11-dev libbenchmark-dev libssl-dev zlib1g-dev netcat-openbsd socat procps libuv1-dev libboost-dev libevent-dev gnuplot-nox linux-perf libenet-dev libudt-dev prometheus
)
PACKAGES+=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "sluice: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
