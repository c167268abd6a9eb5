#!/bin/sh
# tests/badinput/run.sh - the bad-input corpus: every case of expect.txt
# must fail cleanly (exit status 1: no crash, no internal error), print the
# pinned message naming the location or the tensor, and leave no partial
# output behind:
#   - `fusec FILE -o OUT.c` creates neither OUT.c nor OUT.h nor a temporary
#     file, and an existing OUT.c/OUT.h stays byte for byte what it was;
#     the same for --emit=ir -o OUT.ir and for -MD (OUT.d);
#   - `fusec check` leaves nothing in $TMPDIR;
#   - the harness (generated code binding a weight file) writes no output.
# The corpus lives in fdl/ and st/ (written by make_corpus.py, which also
# writes the inputs too big to keep, at test time).
#
# Environment: FUSEC (default build/fusec).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}"
PY=/usr/bin/python3
B=tests/badinput
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-badinput.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$tmp/o" "$tmp/t" "$tmp/big"
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $1"
    shift
    for m in "$@"; do printf '%s\n' "$m" | sed 's/^/       /'; done
}

# expect_fail NAME WANT_MSG CMD...: exit 1 and WANT_MSG on stderr.
expect_fail() {
    ef_name=$1 ef_want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 1 ]; then
        bad "$ef_name" "exit status $rc, expected 1" "$(head -c 1500 "$tmp/err")"
        return 1
    fi
    if ! grep -a -q -F -e "$ef_want" "$tmp/err"; then
        bad "$ef_name" "missing message: $ef_want" "got:" "$(grep -a -v -E '^ *[0-9]* \| |^ *\| ' "$tmp/err" | head -c 1500)"
        return 1
    fi
    return 0
}

# empty_dir NAME DIR: nothing left in DIR.
empty_dir() {
    if [ -n "$(ls -A "$2")" ]; then
        bad "$1" "files left behind: $(ls -A "$2" | tr '\n' ' ')"
        rm -rf "${2:?}"/* "${2:?}"/.[!.]* 2>/dev/null
        return 1
    fi
    return 0
}

# check_fdl NAME FILE MSG STEPS: a bad source file; no output created,
# existing outputs untouched.  STEPS: all (every way of writing output),
# c (the error comes from writing C: --emit=ir works), one (fusec -o only).
check_fdl() {
    cf_name=$1 cf_file=$2 cf_want=$3 cf_steps=$4
    expect_fail "$cf_name: fusec -o" "$cf_want" "$FUSEC" "$cf_file" -o "$tmp/o/x.c" &&
        empty_dir "$cf_name: fusec -o" "$tmp/o" && ok
    [ "$cf_steps" = one ] && return 0
    printf 'previous x.c\n' >"$tmp/o/x.c"
    printf 'previous x.h\n' >"$tmp/o/x.h"
    if expect_fail "$cf_name: fusec -o over existing files" "$cf_want" "$FUSEC" "$cf_file" -o "$tmp/o/x.c"; then
        if [ "$(cat "$tmp/o/x.c")" = "previous x.c" ] && [ "$(cat "$tmp/o/x.h")" = "previous x.h" ] &&
            [ "$(ls -A "$tmp/o" | wc -l)" -eq 2 ]; then
            ok
        else
            bad "$cf_name: fusec -o over existing files" \
                "x.c/x.h changed or extra files: $(ls -A "$tmp/o" | tr '\n' ' ')"
        fi
    fi
    rm -f "$tmp/o/x.c" "$tmp/o/x.h"
    if [ "$cf_steps" = all ]; then
        expect_fail "$cf_name: --emit=ir -o" "$cf_want" "$FUSEC" --emit=ir "$cf_file" -o "$tmp/o/x.ir" &&
            empty_dir "$cf_name: --emit=ir -o" "$tmp/o" && ok
    fi
    expect_fail "$cf_name: -MD" "$cf_want" "$FUSEC" -MD "$cf_file" -o "$tmp/o/x.c" &&
        empty_dir "$cf_name: -MD" "$tmp/o" && ok
    # fusec check reports emission-stage limits itself, in its own words
    expect_fail "$cf_name: fusec check" "error: " env TMPDIR="$tmp/t" "$FUSEC" check "$cf_file" --random &&
        empty_dir "$cf_name: fusec check" "$tmp/t" && ok
}

if ! $PY $B/make_corpus.py --big "$tmp/big" >"$tmp/log" 2>&1; then
    bad "make_corpus.py --big" "$(cat "$tmp/log")"
fi
# The harness of block.fdl, built once by fusec check --keep.
harness=
if "$FUSEC" check $B/block.fdl --golden $B/st/ok.safetensors --keep "$tmp/keep" >"$tmp/log" 2>&1 &&
    [ -x "$tmp/keep/harness" ]; then
    harness=$tmp/keep/harness
else
    bad "build the harness of $B/block.fdl" "$(cat "$tmp/log")"
fi

ncases=0
while read -r kind file msg; do
    case $kind in '' | '#'*) continue ;; esac
    ncases=$((ncases + 1))
    case $kind in
    fdl | fdlc | fdlok) path=$B/fdl/$file ;;
    big | bigok) path=$tmp/big/$file.fdl ;;
    *) path=$B/st/$file ;;
    esac
    if [ ! -f "$path" ]; then
        bad "$kind $file" "no such file $path (run $B/make_corpus.py)"
        continue
    fi
    want=$(printf '%s' "$msg" | sed "s|@|$path|g")
    case $kind in
    fdl) check_fdl "$file" "$path" "$want" all ;;
    fdlc) check_fdl "$file" "$path" "$want" c ;;
    big) check_fdl "$file" "$path" "$want" one ;;
    fdlok | bigok)
        if timeout 120 "$FUSEC" "$path" -o "$tmp/o/x.c" >"$tmp/out" 2>"$tmp/err"; then
            ok
        else
            bad "$file must compile" "exit status $?" "$(head -c 1500 "$tmp/err")"
        fi
        rm -f "$tmp/o/x.c" "$tmp/o/x.h"
        ;;
    st)
        expect_fail "$file: fusec check --golden" "$want" env TMPDIR="$tmp/t" "$FUSEC" check $B/block.fdl \
            --golden "$path" && empty_dir "$file: fusec check --golden" "$tmp/t" && ok
        ;;
    stok)
        if env TMPDIR="$tmp/t" "$FUSEC" check $B/block.fdl --golden "$path" >"$tmp/out" 2>&1; then
            empty_dir "$file: fusec check --golden" "$tmp/t" && ok
        else
            bad "$file must pass fusec check --golden" "$(head -c 1500 "$tmp/out")"
        fi
        ;;
    bind)
        [ -n "$harness" ] || continue
        expect_fail "$file: harness" "$want" "$harness" "$path" "$tmp/o/out.safetensors" &&
            empty_dir "$file: harness" "$tmp/o" && ok
        ;;
    *) bad "expect.txt: unknown kind '$kind'" ;;
    esac
done <$B/expect.txt

# Every file of the corpus has at least one expectation.
for f in $B/fdl/*.fdl $B/st/*.safetensors; do
    grep -q -F " $(basename "$f") " $B/expect.txt || grep -q -E " $(basename "$f")\$" $B/expect.txt ||
        bad "$f has no line in expect.txt"
done
echo "$ncases cases"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
