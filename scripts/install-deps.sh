#!/bin/sh
# scripts/install-deps.sh [--build] - installs, with apt-get, what fusec needs
# and is missing; does nothing when everything is there.
#
#   (no argument)  everything any test of `make test` (and `make fuzz`) uses:
#                  the build tools; cmocka (unit tests); /usr/bin/python3 with
#                  numpy (reference data); the AArch64 cross compiler, its libc
#                  and qemu-user (the NEON tests run the generated C under
#                  qemu-aarch64); clang with its libFuzzer and sanitizer
#                  runtimes (fuzz harnesses); pkg-config (the install test
#                  builds examples/downstream through fusec-rt.pc).
#   --build        only what building fusec and `make demo` need: a C
#                  compiler, make, flex, bison.
#   --coverage     everything of the first, and gcovr (`make coverage`).
#
# Works as root or through sudo; waits up to 10 minutes for another apt or
# dpkg run to release its lock.  Every tool is probed again after the
# install: anything still missing is an error (exit 1) that names it, so no
# test later finds a tool absent and checks less than it should.
set -eu
mode=all
case "${1:-}" in
    "") ;;
    --build) mode=build ;;
    --coverage) mode=coverage ;;
    *) echo "usage: scripts/install-deps.sh [--build | --coverage]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# compiles TEXT with CC FLAGS... into a program; true when it links
links() {
    text=$1
    shift
    printf '%s\n' "$text" >"$tmp/probe.c"
    "$@" "$tmp/probe.c" -o "$tmp/probe" >/dev/null 2>&1
}
have() { command -v "$1" >/dev/null 2>&1; }
clang_version() { clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1; }

# missing: the Debian packages whose probe fails (one probe per package)
probe() {
    missing=""
    have cc || missing="$missing gcc"
    have make || missing="$missing make"
    have flex || missing="$missing flex"
    have bison || missing="$missing bison"
    [ $mode = build ] && return 0
    [ -f /usr/include/cmocka.h ] || missing="$missing libcmocka-dev"
    /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
    have pkg-config || missing="$missing pkg-config"
    have mpicc && have mpirun || missing="$missing openmpi-bin libopenmpi-dev"
    have aarch64-linux-gnu-gcc || missing="$missing gcc-aarch64-linux-gnu"
    [ -f /usr/aarch64-linux-gnu/include/stdio.h ] || missing="$missing libc6-dev-arm64-cross"
    have qemu-aarch64 || missing="$missing qemu-user"
    if [ $mode = coverage ]; then have gcovr || missing="$missing gcovr"; fi
    if ! have clang; then
        missing="$missing clang"
    elif ! links 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
        clang -fsanitize=fuzzer,address,undefined; then
        missing="$missing libclang-rt-$(clang_version)-dev"
    fi
}

# The sanitizers `make test SAN=1` and `make tsan` build with come with gcc
# (libasan, libubsan, libtsan): checked, not installed.
check_gcc_sanitizers() {
    [ $mode = build ] && return 0
    for s in address,undefined thread; do
        if ! links 'int main(void) { return 0; }' cc -fsanitize=$s; then
            echo "install-deps: error: cc cannot link -fsanitize=$s (gcc's sanitizer runtimes)" >&2
            exit 1
        fi
    done
}

probe
if [ -z "$missing" ]; then
    check_gcc_sanitizers
    exit 0
fi
echo "install-deps: installing:$missing"
if ! have apt-get; then
    echo "install-deps: error: no apt-get here; install the equivalents of these Debian packages:$missing" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif have sudo; then
    SUDO=sudo
else
    echo "install-deps: error: not root and no sudo: as root, run apt-get install$missing" >&2
    exit 1
fi
apt() {
    # shellcheck disable=SC2086 # $SUDO is empty or one word
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}
# DPkg::Lock::Timeout covers dpkg's lock, not the package lists' lock that
# `apt-get update` takes: wait for that one here (up to 10 minutes).
tries=0
until apt update -qq 2>"$tmp/update.log"; do
    tries=$((tries + 1))
    if ! grep -q 'Could not get lock' "$tmp/update.log" || [ $tries -ge 60 ]; then
        cat "$tmp/update.log" >&2
        echo "install-deps: error: apt-get update failed (see above)" >&2
        exit 1
    fi
    [ $tries = 1 ] && echo "install-deps: waiting for another apt-get to release the package lists"
    sleep 10
done
# shellcheck disable=SC2086
if ! apt install -y -qq --no-install-recommends $missing; then
    echo "install-deps: error: apt-get install$missing failed (see above)" >&2
    exit 1
fi
# clang came just now: its libFuzzer runtime is a package named after its version
probe
if [ -n "$missing" ] && [ "${missing# libclang-rt-}" != "$missing" ]; then
    echo "install-deps: installing:$missing"
    # shellcheck disable=SC2086
    apt install -y -qq --no-install-recommends $missing || true
    probe
fi
if [ -n "$missing" ]; then
    echo "install-deps: error: still missing after apt-get install:$missing" >&2
    exit 1
fi
check_gcc_sanitizers
echo "install-deps: done"
