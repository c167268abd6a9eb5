/*
 * blockrun.h - what the emitter tests (test_emit.c, test_gemm.c) share:
 * a driver that runs a generated block through its NAME_desc on binary
 * files, and the code that compiles an emitted block with it and runs the
 * program (natively, or under qemu-aarch64 for NEON).
 *
 * Driver protocol (native byte order), in.bin:
 *   int64 capacity; every cache's capacity rows (f32); every weight;
 *   int64 ncalls; per call: the symbols (int64 each), then every input.
 * out.bin: per call an int32 return code, then (if 0) every output;
 *   finally every cache's capacity rows.
 * Elements are 4 bytes: f32, or i32 for i32 tensors.  The driver fills the
 * workspace, the outputs and the caches' slack with 0xff bytes (NaN) and
 * checks a canary after each, so a kernel that reads memory before writing
 * it, or writes past its end, fails.
 *
 * Not a test program itself: the Makefile links it into every unit test.
 */
#ifndef FUSEC_TEST_BLOCKRUN_H
#define FUSEC_TEST_BLOCKRUN_H

#include "fusec.h"

#include <stdio.h>

/* How a target's programs run here, or whether they only compile (an x86
 * target on a CPU without its features; never NEON, whose tools are always
 * installed). */
typedef enum BrRun { BR_NATIVE, BR_QEMU, BR_COMPILE_ONLY } BrRun;
BrRun br_how_to_run(const Target *t);
/* Skips the running test, where t's program compiled but cannot run (this
 * CPU lacks t's features): prints "SKIPPED: this CPU has no FLAGS", the
 * reason tests/unit/run.sh checks against /proc/cpuinfo. */
void br_skip_compile_only(const Target *t);

/* Runs argv with FUSE_NUM_THREADS=threads (0: unchanged); its exit status,
 * -1 when it did not exit normally. */
int br_run_argv(char *const argv[], int threads);

/* Whether a program is on PATH. */
bool br_have_program(const char *name);

/* Compiles dir/STEM.c (emitted, with its header) and the driver for block
 * `block` (its desc is block_desc) and target t, with the strict flags
 * users compile with; returns the program's path (dir/STEM_prog), or NULL
 * when the target only compiles here (BR_COMPILE_ONLY).  A compile error
 * fails the test. */
const char *br_build(const char *dir, const char *stem, const char *block, const Target *t, BrRun run);

/* Runs the program on in.bin and out.bin with `threads`; its exit status. */
int br_run(const char *prog, BrRun run, const char *in, const char *out, int threads);

/* Uniform in [lo, hi) from the xorshift state *rng, rounded to float so
 * that C and the interpreter see the same value; floored when integer. */
double br_urand(uint64_t *rng, double lo, double hi);
/* n such values (at least one element is allocated). */
double *br_rand_data(uint64_t *rng, int64_t n, double lo, double hi, bool integer);

/* Writes / reads n elements as f32 or i32 (the driver's element format). */
void br_put(FILE *f, const double *v, int64_t n, DType dt);
void br_get(FILE *f, double *v, int64_t n, DType dt);

#endif
