#!/usr/bin/env bash
# Installs what qslim needs from Debian (only when missing), then configures and builds.
# Idempotent: a second run installs nothing and rebuilds only what changed (ccache).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ccache libeigen3-dev libstb-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
          libgtest-dev googletest dataset-fashion-mnist)
if [ "${QSLIM_WITH_TORCH:-0}" = 1 ]; then packages+=(python3-torch libopenblas0-openmp); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${QSLIM_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build_dir" -j "$(nproc)"
