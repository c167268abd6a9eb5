#!/bin/sh
# tests/fuzz/install-deps.sh - what `make fuzz` needs beyond the main build:
# clang and its sanitizer and libFuzzer runtimes (libclang_rt.fuzzer*.a,
# Debian's libclang-rt-NN-dev for the installed clang NN).  Kept out of
# scripts/install-deps.sh: building and testing fusec does not need clang.
set -e
have_fuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        >"${TMPDIR:-/tmp}/fusec_fuzz_probe.c"
    clang -fsanitize=fuzzer,address,undefined "${TMPDIR:-/tmp}/fusec_fuzz_probe.c" \
        -o "${TMPDIR:-/tmp}/fusec_fuzz_probe" >/dev/null 2>&1
    rc=$?
    rm -f "${TMPDIR:-/tmp}/fusec_fuzz_probe.c" "${TMPDIR:-/tmp}/fusec_fuzz_probe"
    return $rc
}
have_fuzzer && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if ! command -v clang >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends clang
fi
ver=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
echo "fuzz install-deps: installing libclang-rt-$ver-dev"
$SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$ver-dev"
have_fuzzer || { echo "fuzz install-deps: clang still cannot link -fsanitize=fuzzer" >&2; exit 1; }
