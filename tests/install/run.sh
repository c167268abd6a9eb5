#!/bin/sh
# make install into a fresh temporary prefix, then examples/downstream built
# and run against that installed copy only: fusec from PREFIX/bin on the
# PATH, the runtime through pkg-config (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig),
# every target ISA of this machine plus multi: and aarch64-neon (cross
# compiler and qemu), the golden test through the installed `fusec check`;
# then the .d dependencies, a moved prefix and make uninstall.
# The example is copied out of the tree first, so it cannot lean on it.
# Prints "N passed, M failed".
set -u
: "${GOLDEN:=tests/golden/hf}"
if [ "${SAN:-}" = 1 ]; then
    # The installed libfusec_rt.a would be the sanitized one, which a plain
    # downstream link cannot use; the plain make test runs this suite.
    echo "install: not run under SAN=1 (it installs and links the plain build)"
    exit 0
fi
root=$(pwd)
golden=$(cd "$GOLDEN" && pwd)/llama_layer.safetensors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
. tests/lib.sh
# check NAME CMD...: CMD's output goes to $tmp/log, shown when it fails.
check() {
    name=$1; shift
    if "$@" >"$tmp/log" 2>&1; then ok "$name"; else bad "$name (exit $?)"; tail -30 "$tmp/log"; fi
}
for tool in pkg-config aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || { echo "install: error: $tool missing: run sh scripts/install-deps.sh"; exit 1; }
done

P=$tmp/prefix
check "make install PREFIX=<fresh temporary directory>" \
    make --no-print-directory -s install PREFIX="$P" BUILD="${FUSEC_LIB_DIR:-build}" CC="${CC:-cc}"
missing=
for f in bin/fusec lib/libfusec_rt.a include/fusec_rt.h lib/pkgconfig/fusec-rt.pc share/man/man1/fusec.1 \
         share/fusec/runtime/fusec_rt.h share/fusec/runtime/harness/check_main.c share/fusec/runtime/harness/run_main.c; do
    [ -f "$P/$f" ] || missing="$missing $f"
done
for f in runtime/*.c; do [ -f "$P/share/fusec/runtime/${f#runtime/}" ] || missing="$missing share/fusec/$f"; done
[ -z "$missing" ] && ok "the prefix holds every installed file" || bad "the prefix lacks:$missing"

# From here on nothing of the source tree: the installed fusec finds its own
# runtime (no FUSEC_RUNTIME_DIR/FUSEC_LIB_DIR from make test), the example
# builds in a copy, only the golden file is read from the tree.
unset FUSEC_RUNTIME_DIR FUSEC_LIB_DIR FUSEC
use_prefix() {
    PATH=$1/bin:$saved_path PKG_CONFIG_PATH=$1/lib/pkgconfig
    export PATH PKG_CONFIG_PATH
}
saved_path=$PATH
use_prefix "$P"
[ "$(command -v fusec)" = "$P/bin/fusec" ] && ok "fusec on the PATH is the installed one" \
    || bad "fusec on the PATH is $(command -v fusec), not $P/bin/fusec"
check "installed fusec --version" fusec --version
# pc_ok PREFIX: pkg-config's -I and -L name PREFIX's include/ and lib/.
pc_ok() {
    flags=$(pkg-config --cflags --libs fusec-rt 2>&1) || { echo "$flags"; return 1; }
    inc=; lib=; l=
    for f in $flags; do
        case $f in -I*) inc=${f#-I} ;; -L*) lib=${f#-L} ;; -lfusec_rt) l=1 ;; esac
    done
    [ -n "$l" ] && [ -f "$inc/fusec_rt.h" ] && [ -f "$lib/libfusec_rt.a" ] &&
        [ "$(cd "$inc" && pwd -P)" = "$(cd "$1/include" && pwd -P)" ] &&
        [ "$(cd "$lib" && pwd -P)" = "$(cd "$1/lib" && pwd -P)" ] || { echo "pkg-config says: $flags"; return 1; }
}
check "pkg-config --cflags --libs fusec-rt names the prefix" pc_ok "$P"
if command -v man >/dev/null; then
    check "man -l fusec.1 renders" sh -c "MANWIDTH=80 man -l '$P/share/man/man1/fusec.1' | grep -q 'fusec check'"
fi

# docs/generated-api.md's example, as printed there, built the way it says:
# its output must be the one the page shows.
doc=$root/docs/generated-api.md
mkdir "$tmp/doc"
awk '/^## Example: prefill, then decode/ {f = 1} f && /^```c$/ {c = 1; next} c && /^```$/ {exit} c' "$doc" \
    >"$tmp/doc/example.c"
want=$(awk '/^## Example: prefill, then decode/ {f = 1} f && /^\$ \.\/example/ {getline; print; exit}' "$doc")
doc_example() (
    cd "$tmp/doc" && fusec "$root/dsl-examples/llama_layer.fdl" -o llama_layer.c &&
        ${CC:-cc} -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags fusec-rt) llama_layer.c example.c \
            $(pkg-config --libs fusec-rt) -o example && ./example "$golden"
)
check "docs/generated-api.md: the example compiles and runs" doc_example
[ -n "$want" ] && [ "$(cat "$tmp/log")" = "$want" ] && ok "docs/generated-api.md: it prints what the page shows" \
    || bad "docs/generated-api.md: it prints '$(cat "$tmp/log")', the page shows '$want'"
check "docs/generated-api.md: a file that does not open is an error" sh -c "! '$tmp/doc/example' '$tmp/none.safetensors'"

ex=$tmp/downstream
cp -R "$root/examples/downstream" "$ex"
rm -rf "$ex/out"
mk() { make --no-print-directory -C "$ex" CROSS=1 GOLDEN="$golden" CC="${CC:-cc}" "$@"; }
check "example builds: every target plus multi: and aarch64-neon" mk -j2
for t in generic x86-64-avx2 x86-64-avx512 multi aarch64-neon; do
    [ -x "$ex/out/$t/app" ] && [ -f "$ex/out/$t/layer.d" ] && ok "out/$t: app and layer.d" || bad "out/$t: app and layer.d"
done
grep -q "common.fdl" "$ex/out/generic/layer.d" && ok "layer.d names the imported common.fdl" \
    || bad "layer.d names the imported common.fdl"
check "make check: the apps and fusec check on the golden file" mk check
grep -q "^hidden_states: .* ok$" "$tmp/log" && ok "fusec check compared hidden_states" \
    || bad "fusec check compared hidden_states"
[ "$(grep -c 'rel_l2_err .* ok$' "$tmp/log")" -ge 3 ] && ok "the apps ran and passed" || bad "the apps ran and passed"

# The .d files: a touched import reruns fusec, which leaves layer.c as it was
# (same bytes), so nothing is recompiled; a changed import rebuilds.
check "an up-to-date build does nothing" mk -q
sleep 1
touch "$ex/blocks/common.fdl"
check "make after touching common.fdl" mk TARGETS=generic
grep -q "fusec --target=generic" "$tmp/log" && ok "touching an import reruns fusec" || bad "touching an import reruns fusec"
! grep -q -- "-c out/generic/layer.c" "$tmp/log" && ok "an unchanged layer.c is not recompiled" \
    || { bad "an unchanged layer.c is not recompiled"; cat "$tmp/log"; }
sed 's/rms_eps = 1e-5/rms_eps = 1e-6/' "$ex/blocks/common.fdl" >"$tmp/c" && cp "$tmp/c" "$ex/blocks/common.fdl"
check "make after editing common.fdl" mk TARGETS=generic
grep -q -- "-c out/generic/layer.c" "$tmp/log" && ok "a changed import recompiles" || bad "a changed import recompiles"

# A moved prefix: fusec check still finds its runtime beside its executable.
mv "$P" "$tmp/moved"
use_prefix "$tmp/moved"
check "moved prefix: fusec check" fusec check "$root/examples/downstream/blocks/layer.fdl" --golden "$golden" --target=generic
check "moved prefix: pkg-config names the new place" pc_ok "$tmp/moved"
check "make uninstall" make --no-print-directory -s -C "$root" uninstall PREFIX="$tmp/moved"
[ -z "$(find "$tmp/moved" -type f)" ] && ok "make uninstall removes every file" \
    || bad "make uninstall leaves: $(find "$tmp/moved" -type f | tr '\n' ' ')"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
