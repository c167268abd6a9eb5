#!/bin/sh
# tests/targets/run.sh - every code-generation target, end to end.
#
#  1. Correctness per target: `fusec check` against the golden layers
#     (prefill 5 + decode one token at a time through the KV cache on 3
#     threads; llama_layer_prim all at once on 1 thread) and --random
#     against the float64 interpreter for T = 1, 7, 64 on odd.fdl, whose
#     sizes are multiples of no vector width (every masked tail runs) and
#     whose ops_odd block reaches every op of ops.def.  Targets: generic,
#     x86-64-avx2 and x86-64-avx512 when this CPU has them (else
#     compile-only with -Werror), and multi:x86-64-avx512,x86-64-avx2,generic
#     (one golden check: it runs the variant checked alone; section 4 runs
#     each variant the dispatcher picks).
#     The unit tests of the emitter (build/tests/test_emit) also run on each.
#  2. aarch64-neon: cross-compiled with aarch64-linux-gnu-gcc and run under
#     qemu-aarch64 (`fusec check --cc ... --run-with ...`), both installed
#     by scripts/install-deps.sh (make test runs it first);
#     without them, a failure (never a silent skip).
#  3. Instructions pinned (pin.py): the MLP of llama and gpt2 runs
#     _mm256_fmadd_ps (AVX2), _mm512_fmadd_ps (AVX-512), vfmaq_f32 (NEON) in
#     its innermost loops and has no scalar loop on the hot path; generic
#     fails both checks, each with its own message (the checks can fail).
#  4. The dispatcher of a multi-target block picks the right variant when
#     features are hidden with FUSEC_CPU_MASK (variant_main.c prints
#     NAME_variant()), and each variant it picks is correct.
#  4b. The rows with low-precision features (x86-64-avx2-vnni,
#     x86-64-avx512-bf16, x86-64-spr, aarch64-neon-dotprod): golden where
#     this CPU runs them (else compile-only with -Werror and no -m flags),
#     the dispatcher of multi:x86-64-spr,x86-64-avx512-bf16,x86-64-avx512,
#     x86-64-avx2-vnni,x86-64-avx2,generic under masks (the variant it must
#     pick worked out from the features), and multi:aarch64-neon-dotprod,
#     aarch64-neon,generic under qemu -cpu max and cortex-a53 (no dotprod).
#  5. ThreadSanitizer: a multi-threaded prefill + decode is race-free.
#
# Environment: FUSEC (default build/fusec), GOLDEN (default tests/golden/hf), CC,
# FUSEC_LIB_DIR (default build), SAN=1 for a sanitizer build (its runtime),
# TARGETS_QUICK=1 for a shorter run (the default with SAN=1, where every
# check runs sanitized code several times slower: each target keeps its
# golden prefill + decode checks and the odd blocks at T = 7; test_emit runs on
# x86-64-avx2 only (the unit stage runs it on generic); the multi-target files
# are checked for the variant they pick, not run against the goldens again;
# 2 and 5, whose builds are not ASan's, are left to the plain run).
# Prints "N passed, M failed, K skipped"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
# a runtime built with SAN=1 links only into programs built with the same sanitizers
san=""
[ "$SAN" = 1 ] && san="-fsanitize=address,undefined"
: "${TARGETS_QUICK:=$SAN}"
G=$GOLDEN
PY=/usr/bin/python3
pass=0
fail=0
skipped=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-targets.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh
skip() { skipped=$((skipped + 1)); echo "SKIP $1"; }

# run NAME CMD...: CMD must succeed; its last line (the measured error) is
# shown, or its whole output when it fails.
run() {
    name=$1
    shift
    if "$@" >"$tmp/log" 2>&1; then
        ok "$name: $(tail -n 1 "$tmp/log")"
    else
        bad "$name"
        tail -n 25 "$tmp/log" | sed 's/^/       /'
    fi
}

# The CPU's features as fusec's runtime sees them (cpuid + xgetbv).
printf 'const char *probe_variant(void);\nconst char *probe_variant(void) { return "probe"; }\n' >"$tmp/probe.c"
if ! $CC -std=c99 -O2 $san -Iruntime -DVARIANT=probe_variant -o "$tmp/probe" tests/targets/variant_main.c \
    "$tmp/probe.c" "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread >"$tmp/log" 2>&1
then
    bad "build the CPU feature probe"
    cat "$tmp/log"
    echo "$pass passed, $fail failed, $skipped skipped"
    exit 1
fi
features=$(FUSEC_CPU_MASK='' "$tmp/probe" | cut -d' ' -f2)
has() { case ",$features," in *",$1,"*) return 0 ;; esac; return 1; }
echo "CPU features: $features"
have_avx2=0; has avx2 && has fma && have_avx2=1
have_avx512=0; [ $have_avx2 = 1 ] && has avx512f && has avx512bw && has avx512vl && have_avx512=1
have_vnni2=0; [ $have_avx2 = 1 ] && has f16c && has avxvnni && have_vnni2=1
have_bf16=0; [ $have_avx512 = 1 ] && has avx512dq && has f16c && has avx512bf16 && has avx512vnni && have_bf16=1
have_amx=0; [ $have_bf16 = 1 ] && has amx-tile && has amx-bf16 && has amx-int8 && have_amx=1

MULTI=multi:x86-64-avx512,x86-64-avx2,generic
targets="generic"
[ $have_avx2 = 1 ] && targets="$targets x86-64-avx2"
[ $have_avx512 = 1 ] && targets="$targets x86-64-avx512"
targets="$targets $MULTI"
golden_of() { case $1 in llama_layer*) echo "$G/llama_layer.safetensors" ;; *) echo "$G/$1.safetensors" ;; esac; }

# ---- 1. correctness per target --------------------------------------------------

test_emit_on() { # the emitter's unit tests on target $1 (a failure when not built)
    # Quick (sanitized) runs keep one SIMD target: the unit stage runs test_emit
    # on generic, and each x86 variant's emitter runs sanitized in the golden and
    # odd-block checks above; sanitized, test_emit takes about 400 CPU-seconds a target.
    [ "$TARGETS_QUICK" = 1 ] && [ "$1" != x86-64-avx2 ] && return 0
    if [ -x "$FUSEC_LIB_DIR/tests/test_emit" ]; then
        run "$1 unit tests of the emitter (test_emit), 3 threads" \
            env FUSEC_TEST_TARGET="$1" FUSE_NUM_THREADS=3 "$FUSEC_LIB_DIR/tests/test_emit"
    else
        bad "$1 unit tests of the emitter: $FUSEC_LIB_DIR/tests/test_emit is not built (make unit-test)"
    fi
}

for t in $targets; do
    # The multi-target file runs the variant of the best target this CPU has,
    # which is checked alone above it: one golden check here, and the
    # dispatcher's checks (section 4) run each variant it picks.
    if [ "$t" = "$MULTI" ]; then
        # (quick: the variant it runs is checked alone above; sanitized, the file's three variants
        # cost as much as three targets)
        [ "$TARGETS_QUICK" = 1 ] ||
            run "$t llama_layer golden, prefill 5 + decode, 3 threads" env FUSE_NUM_THREADS=3 \
                "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$(golden_of llama_layer)" --split 5 --target "$t"
        test_emit_on "$t"
        continue
    fi
    for ex in llama_layer gpt2_block; do
        run "$t $ex golden, prefill 5 + decode, 3 threads" env FUSE_NUM_THREADS=3 \
            "$FUSEC" check "dsl-examples/$ex.fdl" --golden "$(golden_of $ex)" --split 5 --target "$t"
    done
    # (llama_layer_prim fuses into the same kernels as llama_layer: tests/fusion)
    [ "$TARGETS_QUICK" = 1 ] || run "$t llama_layer_prim golden, 1 thread" env FUSE_NUM_THREADS=1 \
        "$FUSEC" check dsl-examples/llama_layer_prim.fdl --golden "$(golden_of llama_layer)" --target "$t"
    Ts="1 7 64"
    [ "$TARGETS_QUICK" = 1 ] && Ts=7
    for blk in llama_odd gpt2_odd ops_odd; do
        for T in $Ts; do
            th=$((T % 5)); [ $th = 0 ] && th=1   # 1, 2 and 4 threads
            split=""
            [ $blk != ops_odd ] && [ $T -gt 2 ] && split="--split 3"
            # shellcheck disable=SC2086 # $split is empty or two words
            run "$t odd.fdl $blk random T=$T $split, $th threads" env FUSE_NUM_THREADS=$th \
                "$FUSEC" check tests/targets/odd.fdl --block $blk --random --dim T=$T $split --target "$t"
        done
    done
    # (x86-64-avx512 alone is skipped: on a CPU with AVX-512 the multi target runs that variant)
    [ "$t" != x86-64-avx512 ] && test_emit_on "$t"
done

# The SIMD code must not lean on the auto-vectorizer: correct without it.
if [ $have_avx2 = 1 ]; then
    run "x86-64-avx2 gpt2_block golden, prefill 5 + decode, built with -fno-tree-vectorize" \
        env CC="$CC -fno-tree-vectorize" FUSE_NUM_THREADS=2 "$FUSEC" check dsl-examples/gpt2_block.fdl \
        --golden "$(golden_of gpt2_block)" --split 5 --target x86-64-avx2
fi

# Byte-identical output for identical input, multi-target files too.
mkdir -p "$tmp/det1" "$tmp/det2"
if "$FUSEC" --target=$MULTI dsl-examples/gpt2_block.fdl -o "$tmp/det1/b.c" &&
    "$FUSEC" --target=$MULTI dsl-examples/gpt2_block.fdl -o "$tmp/det2/b.c" &&
    cmp -s "$tmp/det1/b.c" "$tmp/det2/b.c" && cmp -s "$tmp/det1/b.h" "$tmp/det2/b.h"; then
    ok "$MULTI: two runs give byte-identical .c and .h"
else
    bad "$MULTI: two runs give byte-identical .c and .h"
fi

# x86-64-avx512 on a CPU without it: it must still compile cleanly.
if [ $have_avx512 = 0 ]; then
    for ex in llama_layer gpt2_block llama_layer_prim; do
        if "$FUSEC" --target=x86-64-avx512 "dsl-examples/$ex.fdl" -o "$tmp/$ex.c" &&
            $CC -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iruntime -mavx512f -mavx512bw -mavx512vl \
                -mavx2 -mfma -c "$tmp/$ex.c" -o "$tmp/$ex.o" >"$tmp/log" 2>&1; then
            ok "x86-64-avx512 $ex compiles with -Werror (this CPU cannot run it)"
        else
            bad "x86-64-avx512 $ex compiles with -Werror"
            head -20 "$tmp/log" | sed 's/^/       /'
        fi
    done
fi

# ---- 2. aarch64-neon under qemu ------------------------------------------------------

XCC=aarch64-linux-gnu-gcc
QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# A cross build is not sanitized (fusec check --cc leaves the sanitizers
# out), so under SAN=1 these runs would repeat the plain run's exactly.
if [ "$SAN" = 1 ]; then
    echo "note: aarch64-neon under qemu: not rerun under SAN=1 (the cross harness is not sanitized; the plain run covers it)"
elif command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    for ex in llama_layer gpt2_block; do
        run "aarch64-neon $ex golden, prefill 5 + decode, 2 threads (qemu)" env FUSE_NUM_THREADS=2 \
            "$FUSEC" check "dsl-examples/$ex.fdl" --golden "$(golden_of $ex)" --split 5 --target aarch64-neon \
            --cc "$XCC" --run-with "$QEMU"
    done
    for blk in llama_odd gpt2_odd ops_odd; do
        run "aarch64-neon odd.fdl $blk random T=7, 2 threads (qemu)" env FUSE_NUM_THREADS=2 \
            "$FUSEC" check tests/targets/odd.fdl --block $blk --random --dim T=7 --target aarch64-neon \
            --cc "$XCC" --run-with "$QEMU"
    done
    run "multi:x86-64-avx2,aarch64-neon,generic llama_layer golden (qemu: the NEON variant)" \
        "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$(golden_of llama_layer)" \
        --target multi:x86-64-avx2,aarch64-neon,generic --cc "$XCC" --run-with "$QEMU"
else
    bad "aarch64-neon: no $XCC or qemu-aarch64, so no NEON test ran (scripts/install-deps.sh installs them)"
fi

# ---- 3. pinned instructions ---------------------------------------------------------------

pin() { # pin TARGET INTRINSIC EXAMPLE
    if ! "$FUSEC" --target="$1" "dsl-examples/$3.fdl" -o "$tmp/pin_$3.c" >"$tmp/log" 2>&1; then
        bad "pin $1 $3: fusec failed"
        cat "$tmp/log"
        return
    fi
    run "pin $1 $3: the MLP's inner loops use $2" $PY tests/targets/pin.py "$tmp/pin_$3.c" "$2"
}
pin_fails() { # pin_fails NAME REGEX PIN.PY-ARGS...: pin.py must exit 1 with a line matching REGEX
    name=$1 re=$2
    shift 2
    $PY tests/targets/pin.py "$@" >"$tmp/log" 2>&1
    got=$?
    if [ $got -eq 1 ] && grep -Eq -- "$re" "$tmp/log"; then
        ok "pin: $name ($(head -n 1 "$tmp/log" | sed 's/^pin: [^:]*: //'))"
    else
        bad "pin: $name (exit $got, expected 1 and '$re')"
        sed 's/^/       /' "$tmp/log"
    fi
}
for ex in llama_layer gpt2_block; do
    # each x86/NEON target runs no scalar loop on the MLP's hot path
    pin x86-64-avx2 _mm256_fmadd_ps $ex
    pin x86-64-avx512 _mm512_fmadd_ps $ex
    pin aarch64-neon vfmaq_f32 $ex
    # the checks can fail, each for its own reason (exit 1 and its message):
    # generic has no FMA loop, and its MLP multiply-accumulates in scalar C
    if ! "$FUSEC" --target=generic "dsl-examples/$ex.fdl" -o "$tmp/gen_$ex.c" >"$tmp/log" 2>&1; then
        bad "pin: fusec --target=generic $ex failed"
        cat "$tmp/log"
        continue
    fi
    pin_fails "generic $ex fails the AVX2 check" "no innermost loop of the MLP kernels .* calls _mm256_fmadd_ps" \
        "$tmp/gen_$ex.c" _mm256_fmadd_ps
    pin_fails "generic $ex fails the scalar-loop check" "a scalar multiply-accumulate loop on the MLP's hot path" \
        "$tmp/gen_$ex.c" - _mm256_
done

# ---- 4. the dispatcher under FUSEC_CPU_MASK ------------------------------------------------

if "$FUSEC" --target=$MULTI dsl-examples/llama_layer.fdl -o "$tmp/multi.c" >"$tmp/log" 2>&1 &&
    $CC -std=c99 -O2 $san -Wall -Wextra -Wpedantic -Werror -Iruntime -I"$tmp" -DVARIANT=llama_layer_variant \
        -o "$tmp/variant" "$tmp/multi.c" tests/targets/variant_main.c "$FUSEC_LIB_DIR/libfusec_rt.a" \
        -lm -lpthread >>"$tmp/log" 2>&1; then
    ok "$MULTI compiles with -Werror and no -m flags"
    # mask, and the variant that must run under it
    for case in ":x86-64-avx512" "avx512:x86-64-avx2" "avx512vl:x86-64-avx2" "avx512,avx2:generic" \
        "fma:generic" "all:generic"; do
        mask=${case%%:*}
        want=${case#*:}
        [ "$want" = x86-64-avx512 ] && [ $have_avx512 = 0 ] && want=x86-64-avx2
        [ "$want" = x86-64-avx2 ] && [ $have_avx2 = 0 ] && want=generic
        got=$(FUSEC_CPU_MASK=$mask "$tmp/variant" | cut -d' ' -f1)
        if [ "$got" = "$want" ]; then
            ok "dispatch with FUSEC_CPU_MASK='$mask': runs $got"
        else
            bad "dispatch with FUSEC_CPU_MASK='$mask': runs '$got', want $want"
        fi
        case $mask in avx512|all) ;; *) continue ;; esac
        [ "$TARGETS_QUICK" = 1 ] && continue   # quick: which variant runs, not each variant's golden again
        run "dispatch with FUSEC_CPU_MASK='$mask': $got is correct (golden, prefill + decode, 2 threads)" \
            env FUSEC_CPU_MASK="$mask" FUSE_NUM_THREADS=2 "$FUSEC" check dsl-examples/llama_layer.fdl \
            --golden "$(golden_of llama_layer)" --split 5 --target $MULTI
    done
else
    bad "$MULTI compiles with -Werror and no -m flags"
    head -30 "$tmp/log" | sed 's/^/       /'
fi

# ---- 4b. the rows with low-precision features ----------------------------------------------

for row in x86-64-avx2-vnni:$have_vnni2 x86-64-avx512-bf16:$have_bf16 x86-64-spr:$have_amx; do
    t=${row%:*}
    if [ "${row#*:}" = 1 ]; then
        run "$t llama_layer golden, prefill 5 + decode, 2 threads" env FUSE_NUM_THREADS=2 \
            "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$(golden_of llama_layer)" --split 5 --target $t
    elif "$FUSEC" --target=$t dsl-examples/llama_layer.fdl -o "$tmp/lp.c" >"$tmp/log" 2>&1 &&
        $CC -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iruntime -c "$tmp/lp.c" -o "$tmp/lp.o" >>"$tmp/log" 2>&1
    then
        ok "$t llama_layer compiles with -Werror and no -m flags (this CPU cannot run it)"
    else
        bad "$t llama_layer compiles with -Werror and no -m flags"
        head -20 "$tmp/log" | sed 's/^/       /'
    fi
done
LP=multi:x86-64-spr,x86-64-avx512-bf16,x86-64-avx512,x86-64-avx2-vnni,x86-64-avx2,generic
# hidden NAME: FUSEC_CPU_MASK=$mask hides feature NAME (by its name or a group)
hidden() {
    case ",$mask," in
    *",$1,"* | *",all,"*) return 0 ;;
    *",amx,"*) case $1 in amx-*) return 0 ;; esac ;;
    *",avx512,"*) case $1 in avx512f | avx512bw | avx512vl) return 0 ;; esac ;;
    esac
    return 1
}
usable() { has "$1" && ! hidden "$1"; }
if "$FUSEC" --target=$LP dsl-examples/llama_layer.fdl -o "$tmp/lp.c" >"$tmp/log" 2>&1 &&
    $CC -std=c99 -O2 $san -Wall -Wextra -Wpedantic -Werror -Iruntime -I"$tmp" -DVARIANT=llama_layer_variant \
        -o "$tmp/lpvariant" "$tmp/lp.c" tests/targets/variant_main.c "$FUSEC_LIB_DIR/libfusec_rt.a" \
        -lm -lpthread >>"$tmp/log" 2>&1; then
    ok "$LP compiles with -Werror and no -m flags"
    for mask in "" amx amx-tile amx-int8 avx512bf16 avx512vnni f16c avx512dq avx512 avx512,avxvnni avx512bw,amx fma all
    do
        want=generic
        usable avx2 && usable fma && want=x86-64-avx2
        [ $want = x86-64-avx2 ] && usable f16c && usable avxvnni && want=x86-64-avx2-vnni
        [ $want != generic ] && usable avx512f && usable avx512bw && usable avx512vl && {
            want=x86-64-avx512
            usable avx512dq && usable f16c && usable avx512bf16 && usable avx512vnni && want=x86-64-avx512-bf16
            [ $want = x86-64-avx512-bf16 ] && usable amx-tile && usable amx-bf16 && usable amx-int8 && want=x86-64-spr
        }
        got=$(FUSEC_CPU_MASK=$mask "$tmp/lpvariant" | cut -d' ' -f1)
        if [ "$got" = "$want" ]; then
            ok "dispatch with FUSEC_CPU_MASK='$mask': runs $got"
        else
            bad "dispatch with FUSEC_CPU_MASK='$mask': runs '$got', want $want"
        fi
    done
    [ $have_bf16 = 1 ] && [ "$TARGETS_QUICK" != 1 ] && run "$LP llama_layer golden under FUSEC_CPU_MASK=amx, 2 threads" \
        env FUSEC_CPU_MASK=amx FUSE_NUM_THREADS=2 "$FUSEC" check dsl-examples/llama_layer.fdl \
        --golden "$(golden_of llama_layer)" --split 5 --target $LP
else
    bad "$LP compiles with -Werror and no -m flags"
    head -30 "$tmp/log" | sed 's/^/       /'
fi
if [ "$SAN" = 1 ]; then
    echo "note: aarch64-neon-dotprod under qemu: not rerun under SAN=1"
elif command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    # qemu's -cpu max has the dot product; cortex-a53 (ARMv8.0) has not
    DP=multi:aarch64-neon-dotprod,aarch64-neon,generic
    if "$FUSEC" --target=$DP dsl-examples/llama_layer.fdl -o "$tmp/dp.c" >"$tmp/log" 2>&1 &&
        $XCC -std=c99 -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Iruntime -I"$tmp" \
            -DVARIANT=llama_layer_variant -o "$tmp/dpvariant" "$tmp/dp.c" tests/targets/variant_main.c \
            runtime/*.c -lm -lpthread >>"$tmp/log" 2>&1; then
        for cpu in max:aarch64-neon-dotprod cortex-a53:aarch64-neon; do
            got=$(qemu-aarch64 -cpu "${cpu%:*}" -L /usr/aarch64-linux-gnu "$tmp/dpvariant" | cut -d' ' -f1)
            if [ "$got" = "${cpu#*:}" ]; then
                ok "$DP on qemu -cpu ${cpu%:*}: runs $got"
            else
                bad "$DP on qemu -cpu ${cpu%:*}: runs '$got', want ${cpu#*:}"
            fi
        done
        run "aarch64-neon-dotprod llama_layer golden, prefill 5 + decode, 2 threads (qemu -cpu max)" \
            env FUSE_NUM_THREADS=2 "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$(golden_of llama_layer)" \
            --split 5 --target aarch64-neon-dotprod --cc $XCC --run-with "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu"
    else
        bad "$DP compiles for AArch64 with -Werror"
        head -20 "$tmp/log" | sed 's/^/       /'
    fi
else
    bad "aarch64-neon-dotprod: no $XCC or qemu-aarch64 (scripts/install-deps.sh installs them)"
fi

# ---- 5. ThreadSanitizer --------------------------------------------------------------------

# Under SAN=1 the --cc build below is ThreadSanitizer's, not ASan's: the
# plain run (and make tsan) already run it.
if [ "$SAN" = 1 ]; then
    echo "note: ThreadSanitizer: not rerun under SAN=1 (the plain run and make tsan cover it)"
elif echo 'int main(void){return 0;}' | $CC -fsanitize=thread -x c - -o "$tmp/tsan" >/dev/null 2>&1 &&
    "$tmp/tsan"; then
    t=generic
    [ $have_avx2 = 1 ] && t=x86-64-avx2
    run "ThreadSanitizer: $t llama_layer prefill 5 + decode on 4 threads" env FUSE_NUM_THREADS=4 \
        TSAN_OPTIONS="halt_on_error=1" "$FUSEC" check dsl-examples/llama_layer.fdl \
        --golden "$(golden_of llama_layer)" --split 5 --target $t --cc "$CC -fsanitize=thread -g"
else
    skip "ThreadSanitizer is not available here"
fi

echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
