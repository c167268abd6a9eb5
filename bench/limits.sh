# bench/limits.sh - sourced by bench/decode.sh and bench/types.sh: builds the
# machine-limit kernels (bench/limits*.c) into $tmp/limits.o,
# $tmp/limits_avx2.o and $tmp/limits_avx512.o with $CC, and sets f2 (the
# AVX2 flags, empty off x86-64) for the drivers.  $me names the caller in the
# error message.
f2="-mavx2 -mfma"
f512="-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma"
case $(uname -m) in x86_64) ;; *) f2="" f512="" ;; esac
$CC -O2 -Iruntime -Ibench -c bench/limits.c -o "$tmp/limits.o" &&
    $CC -O2 -Iruntime -Ibench $f2 -c bench/limits_avx2.c -o "$tmp/limits_avx2.o" &&
    $CC -O2 -Iruntime -Ibench $f512 -c bench/limits_avx512.c -o "$tmp/limits_avx512.o" ||
    { echo "$me: cannot build bench/limits*.c" >&2; exit 1; }
