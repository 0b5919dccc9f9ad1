#!/usr/bin/env bash
# Installs the cross compilers and emulators the target proofs use (Debian packages,
# --no-install-recommends). Usage: install_toolchain.sh [all | arm avr riscv32 powerpc ...]
#   arm      Cortex-M0/M0+: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
#   avr      ATmega2560:    gcc-avr avr-libc simavr
#   riscv32  RV32IM:        gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-user
#   powerpc  big-endian:    gcc-powerpc-linux-gnu libc6-dev-powerpc-cross qemu-user
#   speech   espeak-ng (the synthetic spoken-command dataset, intquant.speech)
# Measured on Debian 12 (packages from the archive): arm ~100 MB download; avr 22 MB, ~10 s;
# riscv32 115 MB, ~20 s (picolibc is most of it); powerpc 37 MB + qemu-user 12 MB, ~10 s each.
# Idempotent: installs only what is missing. When installing is impossible it prints one line
# saying what to install by hand and exits 1 (never skips silently).
set -euo pipefail

# "command-or-file package..." per group: a group needs its packages when any check fails.
checks_for() {
    case "$1" in
        arm) echo "arm-none-eabi-gcc:gcc-arm-none-eabi" \
                  "/usr/lib/arm-none-eabi/include/string.h:libnewlib-arm-none-eabi" \
                  "qemu-system-arm:qemu-system-arm" ;;
        avr) echo "avr-gcc:gcc-avr" "/usr/lib/avr/include/avr/pgmspace.h:avr-libc" \
                  "simavr:simavr" ;;
        riscv32) echo "riscv64-unknown-elf-gcc:gcc-riscv64-unknown-elf" \
                      "/usr/lib/picolibc/riscv64-unknown-elf/include/string.h:picolibc-riscv64-unknown-elf" \
                      "qemu-riscv32:qemu-user" ;;
        powerpc) echo "powerpc-linux-gnu-gcc:gcc-powerpc-linux-gnu" \
                      "/usr/powerpc-linux-gnu/include/string.h:libc6-dev-powerpc-cross" \
                      "qemu-ppc:qemu-user" ;;
        speech) echo "espeak-ng:espeak-ng" ;;
    esac
}

groups=("$@")
if [ ${#groups[@]} -eq 0 ] || [ "${groups[0]}" = "all" ]; then
    groups=(arm avr riscv32 powerpc speech)
fi

for g in "${groups[@]}"; do
    case "$g" in
        arm|avr|riscv32|powerpc|speech) ;;
        *) echo "install_toolchain.sh: unknown group '$g' (use all, arm, avr, riscv32, powerpc," \
                "speech)" >&2
           exit 2 ;;
    esac
done

need=()
for g in "${groups[@]}"; do
    for check in $(checks_for "$g"); do
        what="${check%%:*}"
        pkg="${check#*:}"
        if [[ "$what" == /* ]]; then
            [ -e "$what" ] && continue
        else
            command -v "$what" >/dev/null 2>&1 && continue
        fi
        [[ " ${need[*]-} " == *" $pkg "* ]] || need+=("$pkg")
    done
done
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
[ "${EUID:-$(id -u)}" -ne 0 ] && SUDO="sudo"
echo "installing ${need[*]} (Debian packages, under a minute each)..."
if ! { $SUDO apt-get update -qq >/dev/null 2>&1 &&
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
           "${need[@]}" >/dev/null 2>&1; }; then
    echo "install_toolchain.sh: could not install ${need[*]} with apt-get; install them by hand" \
         "(apt-get install --no-install-recommends ${need[*]}) and rerun." >&2
    exit 1
fi
