#!/usr/bin/python3
"""names.py - every reserved identifier as every kind of DSL name.

    names.py FUSEC OUTDIR [--list]

For each name (the C keywords, names the C headers the generated code
includes define as macros, types or functions, the runtime's names, and
every identifier the generated C uses for its own locals and parameters)
and each place a name can stand in a .fdl (block, symbol, constant dim,
input, weight, cache, output, value, fn and fn parameter), writes a small
block using it there, compiles it with fusec and the C with
cc -std=c99 -Wall -Wextra -Werror (values and fns do not reach the C: fusec
alone).  Each must compile (exit 0): fusec may
rename what it writes, but a name the DSL accepts must never produce C
that does not compile (exit 70).  Prints one line per failure and
"N passed, M failed".
"""
import concurrent.futures
import os
import re
import shlex
import subprocess
import sys

C_KEYWORDS = """auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn
_Static_assert _Thread_local""".split()
# names the headers the generated C includes (math.h, stdint.h, stddef.h,
# string.h, stdlib.h, stdio.h, errno.h, assert.h, immintrin.h) define
LIBRARY = """NULL errno assert EOF stdin stdout stderr bool true false INFINITY NAN HUGE_VAL M_PI
SIZE_MAX INT64_MAX INT32_MAX UINT64_MAX INT64_C int64_t int32_t uint64_t uint32_t uint8_t size_t
ptrdiff_t intptr_t memcpy memset memmove malloc free calloc exit abort printf sizeof expf logf sqrtf
tanhf erff exp log sqrt tanh erf pow cos sin fabsf fmaxf fminf floorf isnan isinf main offsetof
__m256 __m512 _mm256_add_ps float32x4_t""".split()
RUNTIME = """fr_block fr_tensor fr_block_desc fr_pool_threads fr_scratch_reserve fr_parallel FR_EINVAL
FR_ENOMEM fu_off fu_total fu_layout fu_scratch fu_part fu_max_size fu_desc_run FU_SIMD
fr_pool_acquire fr_pool_run fr_last_error fr_strerror fr_cpu_check FR_ENULL FR_EDIM FR_ECAPACITY FR_ECPU
FR_EWORKSPACE fu_need fu_need1 fu_rc fu_n fu_fn fu_who""".split()
# identifiers the generated functions use for their own parameters and locals
GENERATED = """w cache workspace workspace_bytes uintptr_t ctx tid nth fa off ws at total capacity syms inputs outputs weights
caches cache_capacity c x y a b bias q k v pos i j kk m o r t h s d i0 i1 i2 i3 xr yr ar br wr am bm
ym av xv acc ss inv mu var e sum mx qh kb vb kr vr sc corr p l send ang cs sn x1 x2 xh yh i_end r0 r1
q0 q1 o0 o1 f f_end rem cnt t0 t1 p0 p1 pr vis dot vss vinv vx vd vmu vvar vmx vsum ve v1 v2 vc vs
k0_exp k12_add b0 T P D nseq fb fu_bargs fu_run_batch fu_desc_run_batch""".split()
# the DSL's own keywords are not names (a syntax error is right there)
DSL_KEYWORDS = set("block dim const input weight cache output fn return import true false f32 i32".split())
NAMES = sorted(set(C_KEYWORDS + LIBRARY + RUNTIME + GENERATED) - DSL_KEYWORDS)

# Each template uses NAME in one place; the rest of the block is fixed.
PLACES = {
    "block": "block NAME {\n    dim T;\n    input x: f32[T, 4];\n    output y = exp(x);\n}\n",
    "symbol": "block b {\n    dim NAME;\n    input x: f32[NAME, 4];\n    output y = exp(x) * 2.0;\n}\n",
    "const dim": "block b {\n    dim T;\n    dim NAME = 4;\n    input x: f32[T, NAME];\n    output y = exp(x);\n}\n",
    "input": "block b {\n    dim T;\n    input NAME: f32[T, 4];\n    output y = exp(NAME);\n}\n",
    "weight": "block b {\n    dim T;\n    input x: f32[T, 4];\n    weight NAME: f32[4, 4];\n"
              "    output y = linear(x, NAME);\n}\n",
    "cache": "block b {\n    dim T, P;\n    input x: f32[T, 4];\n    cache NAME: f32[P, 4];\n"
             "    output y = exp(append(NAME, x));\n}\n",
    "output": "block b {\n    dim T;\n    input x: f32[T, 4];\n    output NAME = exp(x);\n    output y = x * 2.0;\n}\n",
    "value": "block b {\n    dim T;\n    input x: f32[T, 4];\n    NAME = exp(x);\n    output y = NAME * NAME;\n}\n",
    "fn": "fn NAME(u) {\n    return u * 2.0;\n}\nblock b {\n    dim T;\n    input x: f32[T, 4];\n"
          "    output y = NAME(x);\n}\n",
    "fn parameter": "fn f(NAME) {\n    return exp(NAME);\n}\nblock b {\n    dim T;\n    input x: f32[T, 4];\n"
                    "    output y = f(x);\n}\n",
}


# places whose names never reach the C: fusec's exit status is the test
DSL_ONLY = {"value", "fn", "fn parameter"}


def one(fusec, out, inc, cc, place, text, name):
    """Compiles NAME in PLACE; returns None or why it failed."""
    src = text
    for fixed in ("x", "y", "b", "T", "P", "u", "f"):     # the template's own names step aside
        if name == fixed:
            src = re.sub(r"\b%s\b" % fixed, fixed + "9", src)
    src = src.replace("NAME", name)
    tag = "%s-%s" % (place.replace(" ", "_"), name)
    fdl, c, o = (os.path.join(out, tag + ext) for ext in (".fdl", ".c", ".o"))
    with open(fdl, "w") as f:
        f.write(src)
    r = subprocess.run([fusec, fdl, "-o", c], capture_output=True, text=True)
    why = None
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        why = "fusec exit %d: %s" % (r.returncode, lines[0] if lines else "")
    elif place not in DSL_ONLY:
        r = subprocess.run(cc + ["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", inc, "-c", c, "-o", o],
                           capture_output=True, text=True)
        if r.returncode != 0:
            err = [l for l in r.stderr.splitlines() if "error" in l]
            why = "the C does not compile: %s" % (err[0] if err else r.stderr[:200])
    if not why:
        for ext in (".fdl", ".c", ".h", ".o"):
            try:
                os.unlink(os.path.join(out, tag + ext))
            except OSError:
                pass
    return why


def main():
    fusec, out = sys.argv[1], sys.argv[2]
    names = NAMES if len(sys.argv) < 4 else sys.argv[3].split(",")
    os.makedirs(out, exist_ok=True)
    inc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "runtime")
    cc = shlex.split(os.environ.get("CC", "cc"))  # a command line: "cc --coverage"
    jobs = [(place, text, name) for place, text in PLACES.items() for name in names]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda j: one(fusec, out, inc, cc, *j), jobs))
    nfail = 0
    for (place, _, name), why in zip(jobs, results):
        if why:
            nfail += 1
            print("FAIL %s '%s': %s" % (place, name, why))
    print("%d passed, %d failed" % (len(jobs) - nfail, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
