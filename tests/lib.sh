# tests/lib.sh - what the suites' run.sh scripts share; each sources it with
#   . tests/lib.sh   (from the repository root, where every suite runs)
# after setting pass=0, fail=0 and tmp (a scratch directory).  A suite may
# define its own expect/expect_msg after sourcing when it needs another form.

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# expect STATUS NAME CMD...: CMD must exit with STATUS.  A passing check
# shows its err= lines (the measured errors); a failing one its output.
expect() {
    want=$1 name=$2
    shift 2
    "$@" >"$tmp/log" 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then
        ok "$name"
        grep -E 'err=' "$tmp/log" | sed 's/^/       /'
    else
        bad "$name (exit $got, expected $want)"
        sed 's/^/       /' "$tmp/log" | head -40
    fi
}

# expect_msg STATUS NAME TEXT CMD...: as expect, and the output must contain TEXT.
expect_msg() {
    want=$1 name=$2 text=$3
    shift 3
    "$@" >"$tmp/log" 2>&1
    got=$?
    if [ "$got" -eq "$want" ] && grep -qF -- "$text" "$tmp/log"; then
        ok "$name"
    else
        bad "$name (exit $got, expected $want and '$text')"
        sed 's/^/       /' "$tmp/log" | head -40
    fi
}
