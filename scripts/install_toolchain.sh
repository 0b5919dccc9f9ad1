#!/usr/bin/env bash
# Installs the ARM cross compiler and QEMU (Debian packages) used by the Cortex-M0 proofs.
# Idempotent; fails loudly (never silently skips) when the install is impossible.
set -euo pipefail
need=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing ${need[*]} (Debian packages, about a minute)..."
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "ERROR: could not install ${need[*]} with apt-get; the Cortex-M0 proofs need them." >&2
    echo "Install them by hand (apt-get install --no-install-recommends ${need[*]}) and rerun." >&2
    exit 1
fi
